"""Typed inputs of `manual` triggers, validated before a run starts."""

from __future__ import annotations

from typing import Any, Mapping

from controller.workflow.model import Workflow

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


class InputError(Exception):
    pass


def declared_inputs(wf: Workflow) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for trigger in wf.triggers:
        if trigger.type == "manual":
            found.update(trigger.config.get("inputs") or {})
    return found


def _check(name: str, spec: Mapping[str, Any], raw: str, file: str) -> str:
    kind = spec.get("type", "string")
    if kind == "number":
        try:
            float(raw)
        except ValueError:
            raise InputError(f"{file}: input '{name}' must be a number, got '{raw}'") from None
    elif kind == "boolean":
        if raw.lower() not in _TRUE + _FALSE:
            raise InputError(f"{file}: input '{name}' must be true or false, got '{raw}'")
        raw = "true" if raw.lower() in _TRUE else "false"
    elif kind == "choice":
        options = [str(o) for o in spec.get("options", ())]
        if raw not in options:
            raise InputError(f"{file}: input '{name}' must be one of {', '.join(options)}, got '{raw}'")
    return raw


def check_input(name: str, spec: Mapping[str, Any], raw: str, file: str) -> str:
    """One given value checked against its declared input (`spec`): the value as the run sees it
    (a boolean spelled true/false). Raises InputError."""
    return _check(name, spec, raw, file)


def resolve_inputs(wf: Workflow, given: Mapping[str, str], *, strict: bool) -> dict[str, str]:
    """Given values checked against the declared types, defaults filled in.

    `strict` (a manual run): unknown names and missing required inputs are errors. Otherwise
    values are passed through as given, declared defaults added."""
    declared = declared_inputs(wf)
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in given:
            values[name] = _check(name, spec, given[name], wf.file)
        elif "default" in spec:
            default = spec["default"]
            values[name] = ("true" if default else "false") if isinstance(default, bool) else str(default)
        elif strict and spec.get("required", False):
            raise InputError(f"{wf.file}: input '{name}' is required (pass --input {name}=VALUE)")
    for name, value in given.items():
        if name not in declared:
            if strict and declared:
                raise InputError(f"{wf.file}: no input named '{name}' (declared: {', '.join(declared)})")
            values[name] = value
    return values
