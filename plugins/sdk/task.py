"""The compile side of the plugin SDK: how a task type turns its `config` into a TaskSpec.

A task type is any object with

    def compile(self, config: Mapping[str, Any], base: TaskSpec, ctx: CompileContext) -> TaskSpec

`config` is the task's config with every `${...}` resolved (and checked against the manifest's
schema); `base` is the TaskSpec Clarity made for the task (run, workspace, environment, limits,
network, secrets to mask); the task type returns it with its own image, argv and files
(`dataclasses.replace`). It may ask for more only through what its manifest declares and the
repository grants (`ctx.granted`): a network other than the task's, mounts, secrets. Clarity
checks the returned spec against that.

`PythonTaskType` is the usual one: the work is a Python module, copied into the container with
its package and the SDK's runtime (`plugins.sdk.runtime`), run as `python3 -m MODULE`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import util
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable

from runner.spec import CLARITY_DIR, File, Mount, TaskSpec

PLUGIN_DIR = f"{CLARITY_DIR}/plugin"
CONFIG_PATH = f"{PLUGIN_DIR}/config.json"
CONTEXT_PATH = f"{PLUGIN_DIR}/context.json"
CODE_DIR = f"{PLUGIN_DIR}/code"
STORAGE_TARGET = "/clarity-storage"
_SDK_FILES = ("plugins/__init__.py", "plugins/sdk/__init__.py", "plugins/sdk/runtime.py", "plugins/sdk/trigger.py")
_SKIP_DIRS = {"tests", "__pycache__", "docs"}


@dataclass(frozen=True)
class CompileContext:
    """What a task type may know besides its config."""

    plugin: str  # the plugin's name
    version: str  # its version
    task_type: str
    granted: frozenset[str] = frozenset()  # permissions this task's plugin has here: network, secrets, host_paths
    storage_root: str | None = None  # the controller's storage root (a directory on the runners), if any
    trigger: Mapping[str, Any] = field(default_factory=dict)  # what started the run (payload included)
    image: str | None = None  # the manifest's image


@runtime_checkable
class TaskType(Protocol):
    def compile(self, config: Mapping[str, Any], base: TaskSpec, ctx: CompileContext) -> TaskSpec: ...


class CompileError(Exception):
    """The config cannot become a task (a sentence for the user)."""


def package_files(package: str, dest: str = CODE_DIR) -> tuple[File, ...]:
    """Every .py file of an importable package (tests, docs and caches left out), as files under
    `dest`, keeping the package's import path (`plugins/validation/src/run.py`)."""
    spec = util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CompileError(f"package {package} cannot be found")
    root = Path(next(iter(spec.submodule_search_locations)))
    prefix = package.replace(".", "/")
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _SKIP_DIRS.intersection(rel.parts[:-1]):
            continue
        found.append(File(f"{dest}/{prefix}/{rel.as_posix()}", path.read_bytes(), 0o644))
    # The parent packages' __init__ files (for `plugins.validation`: plugins/__init__.py).
    parts = package.split(".")
    for i in range(1, len(parts)):
        parent = util.find_spec(".".join(parts[:i]))
        origin = parent.origin if parent is not None else None
        body = Path(origin).read_bytes() if origin and origin.endswith("__init__.py") else b""
        found.append(File(f"{dest}/{'/'.join(parts[:i])}/__init__.py", body, 0o644))
    return tuple(found)


def sdk_files(dest: str = CODE_DIR) -> tuple[File, ...]:
    here = Path(__file__).resolve().parents[2]  # the directory holding the `plugins` package
    return tuple(File(f"{dest}/{rel}", (here / rel).read_bytes(), 0o644) for rel in _SDK_FILES)


class PythonTaskType:
    """A task type whose work is `python3 -m module` in the plugin's image."""

    def __init__(self, package: str, module: str, *, image: str | None = None,
                 storage: bool = False) -> None:
        self.package, self.module, self.image, self.storage = package, module, image, storage

    def compile(self, config: Mapping[str, Any], base: TaskSpec, ctx: CompileContext) -> TaskSpec:
        image = self.image or ctx.image
        if not image:
            raise CompileError(f"plugin {ctx.plugin} names no image for task type {ctx.task_type}")
        context = {"run_id": base.run_id, "workflow": base.env.get("CLARITY_WORKFLOW", ""), "task": base.task,
                   "plugin": ctx.plugin, "version": ctx.version, "trigger": dict(ctx.trigger)}
        files = {f.path: f for f in (*base.files, *sdk_files(), *package_files(self.package))}
        files[CONFIG_PATH] = File(CONFIG_PATH, json.dumps(config).encode(), 0o644)
        files[CONTEXT_PATH] = File(CONTEXT_PATH, json.dumps(context, default=str).encode(), 0o644)
        env = {**base.env, "PYTHONPATH": CODE_DIR, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
               "CLARITY_PLUGIN_CONFIG": CONFIG_PATH, "CLARITY_PLUGIN_CONTEXT": CONTEXT_PATH}
        mounts = base.mounts
        if self.storage and ctx.storage_root and "host_paths" in ctx.granted:
            mounts = (*mounts, Mount(ctx.storage_root, STORAGE_TARGET))
            env["CLARITY_STORAGE_ROOT"] = STORAGE_TARGET
        return replace(base, image=image, argv=("python3", "-m", self.module), env=env,
                       files=tuple(files.values()), mounts=mounts)
