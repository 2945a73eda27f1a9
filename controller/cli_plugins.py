"""`clarity plugins list | info NAME | test NAME`: the installed plugins."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from controller.errors import UserError


def _registry() -> Any:
    from controller.plugins import installed

    return installed()


def _plugin(name: str) -> Any:
    registry = _registry()
    plugin = registry.plugins.get(name)
    if plugin is None:
        broken = [p for p in registry.problems if p.plugin == name]
        if broken:
            raise UserError(f"plugin {name} is installed but cannot be loaded: {broken[0].message}")
        known = ", ".join(sorted(registry.plugins)) or "none"
        raise UserError(f"no plugin named {name} is installed (installed: {known})")
    return plugin


def _cmd_list(args: argparse.Namespace) -> int:
    registry = _registry()
    if args.json:
        print(json.dumps({"plugins": [_public(p) for p in registry.plugins.values()],
                          "problems": [p.__dict__ for p in registry.problems]}, indent=2))
        return 0
    print(f"{'NAME':<16}  {'VERSION':<9}  {'TASK TYPES':<22}  {'TRIGGER TYPES':<16}  {'PERMISSIONS':<24}  FROM")
    for p in sorted(registry.plugins.values(), key=lambda p: p.name):
        print(f"{p.name:<16}  {p.version:<9}  {', '.join(p.task_types) or '-':<22}  "
              f"{', '.join(p.trigger_types) or '-':<16}  {', '.join(sorted(p.manifest.permissions)) or '-':<24}  "
              f"{p.distribution}")
    for problem in registry.problems:
        print(f"clarity: plugin {problem.plugin} ({problem.where}) is not loaded: {problem.message}", file=sys.stderr)
    return 0


def _public(p: Any) -> dict[str, Any]:
    m = p.manifest
    return {"name": p.name, "version": p.version, "description": m.description, "module": p.module,
            "distribution": p.distribution, "folder": str(p.root), "image": m.image,
            "permissions": sorted(m.permissions),
            "task_types": {n: {"description": d.description, "config": d.config} for n, d in m.task_types.items()},
            "trigger_types": {n: {"description": d.description, "config": d.config}
                              for n, d in m.trigger_types.items()}}


def _cmd_info(args: argparse.Namespace) -> int:
    p = _plugin(args.name)
    if args.json:
        print(json.dumps(_public(p), indent=2))
        return 0
    m = p.manifest
    print(f"{p.name} {p.version}: {m.description}")
    print(f"  from:        {p.distribution} (module {p.module}, folder {p.root})")
    print(f"  image:       {m.image or '-'}")
    print(f"  permissions: {', '.join(sorted(m.permissions)) or 'none'}")
    for kind, decls in (("task type", m.task_types), ("trigger type", m.trigger_types)):
        for name, decl in decls.items():
            print(f"  {kind} {name}: {decl.description}")
            props = decl.config.get("properties") or {}
            required = set(decl.config.get("required") or ())
            for key, spec in props.items():
                kind_of = spec.get("type") or ("one of " + ", ".join(map(str, spec["enum"])) if "enum" in spec else "any")
                flag = " (required)" if key in required else ""
                print(f"    {key}: {kind_of}{flag}  {spec.get('description', '')}".rstrip())
    docs = p.root / "docs" / "README.md"
    if docs.exists():
        print(f"  docs:        {docs}")
    return 0


def tests_of(root: Path) -> Path | None:
    """The plugin's tests: `tests/` in its folder, or beside its source tree (a `src/` layout)."""
    for candidate in (root / "tests", root.parent.parent / "tests"):
        if candidate.is_dir() and any(candidate.rglob("test_*.py")):
            return candidate
    return None


def _cmd_test(args: argparse.Namespace) -> int:
    p = _plugin(args.name)
    tests = tests_of(p.root)
    if tests is None:
        raise UserError(f"plugin {p.name} ships no tests (looked in {p.root / 'tests'} and "
                        f"{p.root.parent.parent / 'tests'})")
    print(f"clarity: testing plugin {p.name} {p.version}: {tests}", file=sys.stderr)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests), *args.pytest_args]
    return subprocess.call(cmd)


def add_commands(sub: Any) -> None:
    plugins = sub.add_parser("plugins", help="the installed plugins: list, info NAME, test NAME")
    actions = plugins.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="installed plugins, their task and trigger types, permissions")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_cmd_list)
    info = actions.add_parser("info", help="one plugin: its types, config keys, permissions")
    info.add_argument("name", metavar="NAME")
    info.add_argument("--json", action="store_true", help="the manifest, config schemas included")
    info.set_defaults(func=_cmd_info)
    test = actions.add_parser("test", help="run the plugin's own tests (pytest)")
    test.add_argument("name", metavar="NAME")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS",
                      help="passed on to pytest (e.g. -k storage)")
    test.set_defaults(func=_cmd_test)
