"""Lint checks of plugin tasks that need the plugins themselves: version pins and permissions.

`type: validation@^1` pins a version range (controller.plugins.versions); the pin is taken off
the type before the schema sees it (`strip_pins`) and checked here against the installed plugin
(`versions`, which needs no valid document: its errors come with the schema's).

Permissions: a task of a plugin may use the network (`network:` other than none), secrets
(`secrets:` or `${secrets.*}` in its config), or host paths (the plugin's manifest asks for them:
the storage root) only if the plugin's manifest asks for that permission AND it is granted here
(`grants`: plugin -> permissions, from the repository or the controller's settings). Each missing
one is an error at the line that needs it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from controller.plugins.registry import Registry
from controller.plugins.versions import RangeError, matches, parse
from controller.workflow.diagnostics import Diagnostic, Pos, error
from controller.workflow.load import Located

GRANT_HINT = ("grant it on the controller: clarity repo set REPO --allow-plugin {plugin}={perm} (or the setting "
              "plugin_permissions); for clarity run: CLARITY_PLUGIN_PERMISSIONS='{plugin}={perm}'")


@dataclass(frozen=True)
class Pin:
    range: str
    pos: Pos


def strip_pins(doc: Located) -> tuple[dict[int, Pin], list[Diagnostic]]:
    """Take `@RANGE` off every task's `type` (in place); the pins by task index, and errors for
    ranges that do not parse."""
    pins: dict[int, Pin] = {}
    diags: list[Diagnostic] = []
    tasks = doc.data.get("workflow", {}).get("tasks") if isinstance(doc.data, dict) and isinstance(
        doc.data.get("workflow"), dict) else None
    if not isinstance(tasks, list):
        return pins, diags
    for i, task in enumerate(tasks):
        kind = task.get("type") if isinstance(task, dict) else None
        if not isinstance(kind, str) or "@" not in kind:
            continue
        name, _, rng = kind.partition("@")
        pos = doc.pos(("workflow", "tasks", i, "type"))
        task["type"] = name
        try:
            parse(rng)
        except RangeError as e:
            diags.append(error(pos, f"task type '{kind}': {e}"))
            continue
        pins[i] = Pin(rng, pos)
    return pins, diags


def _uses_secrets(task: Mapping[str, Any]) -> bool:
    return bool(task.get("secrets")) or "${secrets." in json.dumps(task.get("config"), default=str)


def versions(doc: Located, pins: Mapping[int, Pin], registry: Registry) -> list[Diagnostic]:
    """An error for each pinned task whose plugin is installed in a version outside the range.
    Reads the document defensively: it runs before the document is known to be valid."""
    diags: list[Diagnostic] = []
    wf = doc.data.get("workflow") if isinstance(doc.data, dict) else None
    tasks = wf.get("tasks") if isinstance(wf, dict) else None
    for i, pin in pins.items():
        task = tasks[i] if isinstance(tasks, list) and i < len(tasks) else None
        if not isinstance(task, dict) or not isinstance(task.get("type"), str):
            continue
        kind = task["type"]
        found = registry.task_type(kind)
        if found is None or matches(found[0].version, pin.range):
            continue  # an unknown type is the schema's error
        plugin = found[0]
        diags.append(error(pin.pos, f"task '{task.get('name')}' asks for {kind}@{pin.range}, "
                                    f"but plugin {plugin.name} {plugin.version} is installed",
                           _version_hint(kind, pin.range, plugin.name, plugin.version)))
    return diags


def _version_hint(kind: str, wanted: str, plugin: str, version: str) -> str:
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    fits = f"^{major}" if major != "0" or not minor else f"^0.{minor}"
    return (f"change the range (e.g. {kind}@{fits}) to include the installed version, {version}, or install a "
            f"version of the {plugin} plugin that {wanted} allows (pip install, then `clarity plugins list`)")


def check(doc: Located, registry: Registry, grants: Mapping[str, frozenset[str]] | None) -> list[Diagnostic]:
    """The permission errors of the plugin tasks of a valid document."""
    diags: list[Diagnostic] = []
    tasks = doc.data["workflow"]["tasks"]
    for i, task in enumerate(tasks):
        kind = task.get("type", "container")
        found = registry.task_type(kind) if kind != "container" else None
        if found is None:
            continue
        plugin = found[0]
        name = task.get("name")
        base = ("workflow", "tasks", i)
        needs: dict[str, Pos] = {}
        if task.get("network", "none") != "none":
            needs["network"] = doc.pos(base + ("network",))
        if _uses_secrets(task):
            needs["secrets"] = doc.pos(base + (("secrets",) if task.get("secrets") else ("config",)))
        if "host_paths" in plugin.manifest.permissions:
            needs["host_paths"] = doc.pos(base + ("type",))
        for perm, pos in needs.items():
            if perm not in plugin.manifest.permissions:
                diags.append(error(pos, f"task '{name}': plugin {plugin.name} does not ask for the {perm} permission, "
                                        f"so its tasks cannot have it",
                                   "take it out of the task" if perm != "secrets" else
                                   "take the secrets out of the task's config"))
            elif grants is not None and perm not in grants.get(plugin.name, frozenset()):
                diags.append(error(pos, f"task '{name}': plugin {plugin.name} needs the {perm} permission here, "
                                        "which is not granted",
                                   GRANT_HINT.format(plugin=plugin.name, perm=perm)))
    return diags
