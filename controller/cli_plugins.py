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
    rows = [["NAME", "VERSION", "TASK TYPES", "TRIGGER TYPES", "PERMISSIONS", "FROM"]]
    for p in sorted(registry.plugins.values(), key=lambda p: p.name):
        rows.append([p.name, p.version, ", ".join(p.task_types) or "-", ", ".join(p.trigger_types) or "-",
                     ", ".join(sorted(p.manifest.permissions)) or "-", p.distribution])
    for line in table(rows):
        print(line)
    for problem in registry.problems:
        print(f"clarity: plugin {problem.plugin} ({problem.where}) is not loaded: {problem.message}", file=sys.stderr)
    return 0


def table(rows: list[list[str]]) -> list[str]:
    """Rows as lines, each column as wide as its widest cell (the last one unpadded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]) for row in rows]


def _public(p: Any) -> dict[str, Any]:
    m = p.manifest
    return {"name": p.name, "version": p.version, "description": m.description, "module": p.module,
            "distribution": p.distribution, "folder": str(p.root),
            "source": str(p.source) if p.source is not None else None, "image": m.image,
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
    if p.source is not None:
        print(f"  sources:     {p.source} (installed from there)")
    print(f"  image:       {m.image or '-'}")
    print(f"  permissions: {', '.join(sorted(m.permissions)) or 'none'}")
    for kind, decls in (("task type", m.task_types), ("trigger type", m.trigger_types)):
        for name, decl in decls.items():
            print(f"  {kind} {name}: {decl.description}")
            props = decl.config.get("properties") or {}
            required = set(decl.config.get("required") or ())
            for key, spec in props.items():
                flag = " (required)" if key in required else ""
                fallback = ", default the trigger's payload" if key == getattr(decl, "payload_key", None) else ""
                print(f"    {key}: {kind_of(spec)}{fallback}{flag}  {spec.get('description', '')}".rstrip())
    docs = p.root / "docs" / "README.md"
    if docs.exists():
        print(f"  docs:        {docs}")
    return 0


def _value(value: Any) -> str:
    """A schema value as the manifest would write it: text as is, the rest as JSON (true, null)."""
    return value if isinstance(value, str) else json.dumps(value)


def kind_of(spec: Any) -> str:
    """A config key's JSON Schema in words: `string or object`, `one of json, yaml`, `any`."""
    if not isinstance(spec, dict):
        return "any"
    if "const" in spec:
        kind = f"exactly {_value(spec['const'])}"
    elif isinstance(spec.get("enum"), list):
        kind = "one of " + ", ".join(_value(v) for v in spec["enum"])
    elif isinstance(spec.get("type"), list):
        names = [str(t) for t in spec["type"]]
        kind = " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]
    else:
        kind = str(spec.get("type") or "any")
    return kind + (f", default {_value(spec['default'])}" if "default" in spec else "")


def folders_for_tests(plugin: Any) -> list[Path]:
    """Where a plugin's tests may be: `tests/` in its folder, or beside the source tree when the
    folder is a `src/` layout's package; the same in the sources pip installed it from, when it
    runs from an installed copy (site-packages holds no tests)."""
    folders: list[Path] = []
    for root in (plugin.root, plugin.source):
        if root is None:
            continue
        folders.append(root / "tests")
        if root.parent.name == "src":
            folders.append(root.parent.parent / "tests")
    return list(dict.fromkeys(folders))


def tests_of(plugin: Any) -> Path | None:
    """The first of the plugin's test folders that holds tests."""
    for candidate in folders_for_tests(plugin):
        if candidate.is_dir() and any(candidate.rglob("test_*.py")):
            return candidate
    return None


def no_tests(plugin: Any) -> str:
    looked = " and ".join(str(f) for f in folders_for_tests(plugin))
    message = f"plugin {plugin.name} ships no tests (looked in {looked})"
    if plugin.source is None and "site-packages" in plugin.root.parts:
        message += ("; it is installed from a wheel or a package index, which holds no tests: install it from its "
                    "source folder (pip install FOLDER, or pip install -e FOLDER) to run them")
    return message


def _cmd_test(args: argparse.Namespace) -> int:
    p = _plugin(args.name)
    tests = tests_of(p)
    if tests is None:
        raise UserError(no_tests(p))
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
