"""Finding and loading plugins: the `clarity.plugins` entry point group.

An entry point names a module (`validation = "plugins.validation.plugin"`); `manifest.yaml` is
read from that module's directory. The module may define

- `TASK_TYPES = {name: object with compile(config, base, ctx)}` (plugins.sdk.task.TaskType), and
- `TRIGGER_TYPES = {name: object with poll(config, state)}` (plugins.sdk.trigger.TriggerType);

a task type the module does not define but whose manifest entry names a `module` is run as that
Python module in the plugin's image (plugins.sdk.task.PythonTaskType). Every task and trigger
type the manifest lists must be provided, and nothing else.

A plugin that cannot be loaded (import error, bad manifest, a missing or wrong implementation, a
name taken already) is reported (`Registry.problems`, the controller's log, `clarity plugins
list`) and left out: it never takes the controller or a run down.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlparse

import structlog

from controller.plugins.manifest import Manifest, ManifestError, load
from controller.workflow.schema import CORE_TASK_TYPES
from controller.workflow.schema import TRIGGER_TYPES as CORE_TRIGGERS
from plugins.sdk.task import PythonTaskType, TaskType
from plugins.sdk.trigger import TriggerType

log = structlog.get_logger("clarity.plugins")

GROUP = "clarity.plugins"


@dataclass(frozen=True)
class Problem:
    plugin: str  # the entry point's name
    where: str  # the entry point's value, and the distribution that declares it
    message: str


@dataclass(frozen=True)
class LoadedPlugin:
    manifest: Manifest
    module: str
    distribution: str  # "name version" of the package that declares the entry point
    task_types: Mapping[str, TaskType]
    trigger_types: Mapping[str, TriggerType]
    # an installed copy's folder in the local source tree pip installed it from (its tests are there)
    source: Path | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def root(self) -> Path:
        """The plugin's folder (where manifest.yaml is)."""
        return self.manifest.path.parent


@dataclass
class Registry:
    plugins: dict[str, LoadedPlugin] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def task_type(self, name: str) -> tuple[LoadedPlugin, TaskType] | None:
        for plugin in self.plugins.values():
            if name in plugin.task_types:
                return plugin, plugin.task_types[name]
        return None

    def trigger_type(self, name: str) -> tuple[LoadedPlugin, TriggerType] | None:
        for plugin in self.plugins.values():
            if name in plugin.trigger_types:
                return plugin, plugin.trigger_types[name]
        return None

    def task_schemas(self) -> dict[str, dict[str, Any] | None]:
        """Task type -> config schema, `container` included (for the linter)."""
        found: dict[str, dict[str, Any] | None] = {"container": None}
        for plugin in self.plugins.values():
            for name, decl in plugin.manifest.task_types.items():
                found[name] = dict(decl.config)
        return found

    def trigger_schemas(self) -> dict[str, Mapping[str, Any]]:
        return {name: decl.config for plugin in self.plugins.values()
                for name, decl in plugin.manifest.trigger_types.items()}

    def versions(self) -> dict[str, tuple[str, str]]:
        """Task type -> (plugin, version)."""
        return {name: (p.name, p.version) for p in self.plugins.values() for name in p.task_types}


def discover(entry_points: Iterable[metadata.EntryPoint] | None = None) -> Registry:
    """Every plugin of the `clarity.plugins` entry points (installed distributions)."""
    registry = Registry()
    found = list(metadata.entry_points(group=GROUP) if entry_points is None else entry_points)
    seen: set[tuple[str, str]] = set()
    for ep in sorted(found, key=lambda e: (e.name, e.value)):
        if (ep.name, ep.value) in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "?"
        where = f"{ep.value} ({dist})"
        try:
            plugin = _load(ep, dist)
            _check_names(plugin, registry)
            plugin = dataclasses.replace(plugin, source=source_folder(plugin.root, ep.dist))
        except (ManifestError, PluginLoadError) as e:
            registry.problems.append(Problem(ep.name, where, str(e)))
            log.warning("plugin skipped", plugin=ep.name, where=where, error=str(e))
            continue
        except Exception as e:  # an import error, anything the module does when loaded
            registry.problems.append(Problem(ep.name, where, f"{type(e).__name__}: {e}"))
            log.warning("plugin skipped", plugin=ep.name, where=where, error=f"{type(e).__name__}: {e}")
            continue
        registry.plugins[plugin.name] = plugin
    return registry


class PluginLoadError(Exception):
    pass


def _load(ep: metadata.EntryPoint, dist: str) -> LoadedPlugin:
    module = importlib.import_module(ep.value.split(":")[0])
    folder = _folder(module)
    manifest = load(folder / "manifest.yaml")
    if manifest.name != ep.name:
        raise PluginLoadError(f"the entry point is named '{ep.name}' but the manifest's name is '{manifest.name}'")
    package = module.__name__.rpartition(".")[0] if not hasattr(module, "__path__") else module.__name__
    given_tasks: Mapping[str, Any] = getattr(module, "TASK_TYPES", {}) or {}
    given_triggers: Mapping[str, Any] = getattr(module, "TRIGGER_TYPES", {}) or {}
    tasks: dict[str, TaskType] = {}
    for name, decl in manifest.task_types.items():
        impl = given_tasks.get(name)
        if impl is None and decl.module is not None:
            impl = PythonTaskType(package or decl.module.rpartition(".")[0], decl.module,
                                  storage="host_paths" in manifest.permissions)
        if impl is None:
            raise PluginLoadError(f"task type '{name}' is in the manifest, but {module.__name__} has no "
                                  f"TASK_TYPES['{name}'] and the manifest names no module for it")
        if not isinstance(impl, TaskType):
            raise PluginLoadError(f"TASK_TYPES['{name}'] of {module.__name__} has no compile(config, base, ctx)")
        tasks[name] = impl
    triggers: dict[str, TriggerType] = {}
    for name in manifest.trigger_types:
        impl = given_triggers.get(name)
        if impl is None or not isinstance(impl, TriggerType):
            raise PluginLoadError(f"trigger type '{name}' is in the manifest, but {module.__name__} has no "
                                  f"TRIGGER_TYPES['{name}'] with poll(config, state)")
        triggers[name] = impl
    extra = (set(given_tasks) - set(manifest.task_types)) | (set(given_triggers) - set(manifest.trigger_types))
    if extra:
        raise PluginLoadError(f"{module.__name__} provides {', '.join(sorted(extra))}, which the manifest does not "
                              "declare (add them to task_types / trigger_types with their config schema)")
    return LoadedPlugin(manifest, module.__name__, dist, tasks, triggers)


def _folder(module: ModuleType) -> Path:
    origin = getattr(module, "__file__", None)
    if origin:
        return Path(origin).resolve().parent
    locations = list(getattr(module, "__path__", None) or ())  # a namespace package (no __init__.py)
    if len(locations) == 1:
        return Path(locations[0]).resolve()
    raise PluginLoadError(f"module {module.__name__} has no single folder: the manifest cannot be found beside it")


def source_folder(root: Path, dist: metadata.Distribution | None) -> Path | None:
    """Where `root`, a plugin folder pip installed into site-packages, is in the local folder it was
    installed from (pip records that folder in the distribution's direct_url.json, PEP 610): None
    for a plugin that runs from its sources already (an editable install, Clarity's own plugins),
    one installed from a wheel or an index, or a source folder that is gone."""
    if dist is None:
        return None
    try:
        recorded = json.loads(dist.read_text("direct_url.json") or "null")
        installed_in = Path(str(dist.locate_file(""))).resolve()
        inside = root.resolve().relative_to(installed_in)
    except (OSError, ValueError):  # no record, not JSON, or the plugin does not run from the installed copy
        return None
    if not isinstance(recorded, dict) or "dir_info" not in recorded or not str(recorded.get("url")).startswith("file:"):
        return None
    folder = Path(unquote(urlparse(str(recorded["url"])).path))
    for candidate in (folder / "src" / inside, folder / inside):  # a src/ layout, or the package at the top
        if candidate.is_dir() and candidate.resolve() != root.resolve():
            return candidate
    return None


def _check_names(plugin: LoadedPlugin, registry: Registry) -> None:
    if plugin.name in registry.plugins:
        other = registry.plugins[plugin.name]
        raise PluginLoadError(f"a plugin named '{plugin.name}' is loaded already (from {other.distribution})")
    for name in plugin.task_types:
        if name in CORE_TASK_TYPES:
            raise PluginLoadError(f"task type '{name}' is Clarity's own")
        taken = registry.task_type(name)
        if taken is not None:
            raise PluginLoadError(f"task type '{name}' is provided by plugin '{taken[0].name}' already")
    for name in plugin.trigger_types:
        if name in CORE_TRIGGERS:
            raise PluginLoadError(f"trigger type '{name}' is Clarity's own")
        taken_t = registry.trigger_type(name)
        if taken_t is not None:
            raise PluginLoadError(f"trigger type '{name}' is provided by plugin '{taken_t[0].name}' already")
