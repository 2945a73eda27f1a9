"""`manifest.yaml` of a plugin: read, checked against its schema, as a `Manifest`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml
from packaging.version import InvalidVersion, Version

from controller.settings import PERMISSIONS

NAME = r"^[a-z][a-z0-9_-]{0,62}$"

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name", "version", "description"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME},
        "version": {"type": "string", "minLength": 1},
        "description": {"type": "string", "minLength": 1},
        "image": {"type": "string", "minLength": 1},
        "task_types": {"type": "object", "propertyNames": {"pattern": NAME}, "additionalProperties": {
            "type": "object", "required": ["description", "config"], "additionalProperties": False,
            "properties": {"description": {"type": "string"}, "module": {"type": "string"},
                           "config": {"type": "object"}}}},
        "trigger_types": {"type": "object", "propertyNames": {"pattern": NAME}, "additionalProperties": {
            "type": "object", "required": ["description", "config"], "additionalProperties": False,
            "properties": {"description": {"type": "string"}, "config": {"type": "object"},
                           "interval_s": {"type": "number", "minimum": 1}}}},
        "permissions": {"type": "object", "additionalProperties": False,
                        "properties": {p: {"type": "boolean"} for p in PERMISSIONS}},
    },
}


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class TaskTypeDecl:
    name: str
    description: str
    config: Mapping[str, Any]
    module: str | None
    # the config key whose data the task reads, falling back to the trigger's payload when the key
    # is not set (plugins.sdk.runtime.data_source): lint warns when a run may come without one
    payload_key: str | None = None


PAYLOAD_MARK = "x-defaults-to-payload"  # on a key of a task type's config schema: see payload_key()


@dataclass(frozen=True)
class TriggerTypeDecl:
    name: str
    description: str
    config: Mapping[str, Any]
    interval_s: float | None


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    description: str
    image: str | None
    task_types: Mapping[str, TaskTypeDecl]
    trigger_types: Mapping[str, TriggerTypeDecl]
    permissions: frozenset[str]
    path: Path


def load(path: Path) -> Manifest:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the manifest: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ManifestError(f"{path}: not valid YAML: {e}") from None
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        shown = "; ".join(f"{'.'.join(map(str, e.path)) or 'the manifest'}: {e.message}" for e in errors[:5])
        raise ManifestError(f"{path}: {shown}")
    try:
        Version(data["version"])
    except InvalidVersion:
        raise ManifestError(f"{path}: version '{data['version']}' is not a version like 1.0.0") from None
    tasks = data.get("task_types") or {}
    triggers = data.get("trigger_types") or {}
    if not tasks and not triggers:
        raise ManifestError(f"{path}: the plugin provides no task_types and no trigger_types")
    for kind, decls in (("task type", tasks), ("trigger type", triggers)):
        for name, decl in decls.items():
            try:
                jsonschema.Draft202012Validator.check_schema(decl["config"])
            except jsonschema.SchemaError as e:
                raise ManifestError(f"{path}: {kind} {name}: config is not a valid JSON Schema: {e.message}") from None
    for name, decl in tasks.items():
        if decl.get("module") is not None and not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", decl["module"]):
            raise ManifestError(f"{path}: task type {name}: module '{decl['module']}' is not a module name")
    return Manifest(
        name=data["name"], version=str(data["version"]), description=data["description"], image=data.get("image"),
        task_types={n: TaskTypeDecl(n, d["description"], d["config"], d.get("module"),
                                    payload_key(path, n, d["config"])) for n, d in tasks.items()},
        trigger_types={n: TriggerTypeDecl(n, d["description"], d["config"], d.get("interval_s"))
                       for n, d in triggers.items()},
        permissions=frozenset(p for p, on in (data.get("permissions") or {}).items() if on),
        path=path,
    )


def payload_key(path: Path, name: str, config: Mapping[str, Any]) -> str | None:
    """The key of a task type's config marked `x-defaults-to-payload: true`: the task reads that
    key's data, or the trigger's payload when the task does not set it. An annotation of the
    schema (JSON Schema ignores keywords it does not know), beside the key it describes. At most
    one key, and not a required one (a required key never falls back to the payload)."""
    props = config.get("properties")
    if not isinstance(props, Mapping):
        return None
    marked = [k for k, spec in props.items() if isinstance(spec, Mapping) and PAYLOAD_MARK in spec]
    for key in marked:
        if not isinstance(props[key][PAYLOAD_MARK], bool):
            raise ManifestError(f"{path}: task type {name}: config key '{key}': {PAYLOAD_MARK} is true or false, "
                                f"not '{props[key][PAYLOAD_MARK]}'")
    marked = [k for k in marked if props[k][PAYLOAD_MARK]]
    if len(marked) > 1:
        raise ManifestError(f"{path}: task type {name}: {PAYLOAD_MARK} is on {', '.join(marked)}: a task reads the "
                            "trigger's payload in place of one key only")
    if marked and marked[0] in (config.get("required") or ()):
        raise ManifestError(f"{path}: task type {name}: config key '{marked[0]}' is required, so it never falls back "
                            f"to the trigger's payload: take it out of `required`, or drop {PAYLOAD_MARK}")
    return marked[0] if marked else None
