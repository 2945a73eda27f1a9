"""Validation against the schema, with jsonschema errors turned into friendly diagnostics.

Also the YAML 1.1 value pitfalls that need the schema to judge: a plain `yes`
is fine where a boolean is wanted, worth a warning where any value goes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Iterator
from typing import Any, Mapping

import jsonschema
from jsonschema.exceptions import ValidationError

from .diagnostics import Diagnostic, error, suggest, warning
from .load import JsonPath, Located
from .schema import LABEL_PATTERN, TaskTypes, schema
from .units import parse_duration, parse_size

_KINDS = {"string": "a string", "array": "a list", "object": "a mapping", "integer": "an integer",
          "number": "a number", "boolean": "a boolean", "null": "nothing"}
_OCTAL = re.compile(r"[-+]?0[0-9_]+")


def validator(task_types: TaskTypes,
              trigger_types: Mapping[str, Mapping[str, Any]] | None = None) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(task_types, trigger_types))


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else type(value).__name__


def _where(path: JsonPath, data: Any) -> str:
    """' in task 'build'' for paths inside a task or trigger, to make messages self-explaining."""
    if len(path) >= 3 and path[0] == "workflow" and path[1] in ("tasks", "triggers") and isinstance(path[2], int):
        try:
            item = data["workflow"][path[1]][path[2]]
        except (KeyError, IndexError, TypeError):
            return ""
        if isinstance(item, dict):
            if path[1] == "tasks" and isinstance(item.get("name"), str):
                return f" in task '{item['name']}'"
            if path[1] == "triggers" and isinstance(item.get("type"), str):
                return f" in the {item['type']} trigger"
    return ""


def _key(path: JsonPath) -> str:
    named = [p for p in path if isinstance(p, str)]
    return named[-1] if named else "document"


def _type_error(e: ValidationError, doc: Located, path: JsonPath) -> Diagnostic:
    wanted = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
    kinds = sorted({_KINDS.get(str(w), str(w)) for w in wanted if not (w == "integer" and "number" in wanted)})
    message = f"'{_key(path)}': expected {' or '.join(kinds)}, got {_describe(e.instance)}"
    hint = None
    s = doc.scalar(path)
    if "string" in wanted and s is not None and s.plain and s.tag in ("bool", "int", "float"):
        message += f" (YAML reads unquoted {s.text} as {'a boolean' if s.tag == 'bool' else 'a number'})"
        hint = f'quote it: "{s.text}"'
    elif "string" in wanted and isinstance(e.instance, dict) and len(e.instance) == 1:
        # `- echo "a": b` is a one-key mapping: an unquoted ': ' splits the line
        hint = "an unquoted ': ' makes YAML read the line as a mapping; quote the whole value"
    elif "array" in wanted and isinstance(e.instance, str):
        hint = f'write a list: {_key(path)}: ["{e.instance.splitlines()[0] if e.instance else ""}"]'
    return error(doc.pos(path), message + _where(path, doc.data), hint)


def _pattern_hint(title: str, value: Any) -> str | None:
    """A fix for the usual slips in a runner label: upper case, several labels in one string."""
    if title != "runner label" or not isinstance(value, str):
        return None
    parts = [p.strip().lower() for p in re.split(r"[,\s]+", value) if p.strip()]
    if len(parts) > 1 and all(re.fullmatch(LABEL_PATTERN, p) for p in parts):
        return f"one label per list entry: [{', '.join(parts)}]"
    if re.fullmatch(LABEL_PATTERN, value.lower()):
        return f"labels are lower case: {value.lower()}"
    return None


def _type_hint(kind: str, value: Any, known: Any, broken: Collection[str]) -> str:
    """How to get a task or trigger type that is not known: it is a slip of the pen, or a plugin's."""
    close = suggest(str(value), known)
    if close is not None:
        return close
    if value in broken:
        return f"plugin '{value}' is installed but could not be loaded: `clarity plugins list` says why"
    hint = (f"{kind}s other than the built-in ones come from plugins: install the package that provides "
            f"'{value}' in Clarity's Python environment (pip install PACKAGE), then check that "
            "`clarity plugins list` shows it")
    if broken:
        hint += f"; plugins that could not be loaded: {', '.join(sorted(broken))}"
    return hint


def _diagnose(e: ValidationError, doc: Located, broken: Collection[str] = ()) -> Iterator[Diagnostic]:
    path: JsonPath = tuple(e.absolute_path)
    kind, value = e.validator, e.instance
    # the item's own name/type would only repeat the value being reported
    where = "" if path[-1:] in (("name",), ("type",)) else _where(path, doc.data)
    title = e.schema.get("title", _key(path)) if isinstance(e.schema, dict) else _key(path)
    if kind == "additionalProperties" and isinstance(value, dict):
        known = e.schema.get("properties", {})
        for extra in (k for k in value if k not in known):
            yield error(doc.key_pos(path + (extra,)), f"unknown key '{extra}'{where}",
                        suggest(extra, known) or f"allowed keys: {', '.join(known)}")
    elif kind == "required" and isinstance(value, dict):
        for missing in (k for k in e.validator_value if k not in value):
            hint = "a workflow file starts with 'workflow:'" if path == () else None
            yield error(doc.pos(path), f"missing required key '{missing}'{where}", hint)
    elif kind == "type":
        yield _type_error(e, doc, path)
    elif kind == "enum":
        choices = ", ".join(str(c) for c in e.validator_value)
        what = _key(path)
        hint = suggest(str(value), e.validator_value)
        if what == "type" and len(path) > 1 and path[1] in ("tasks", "triggers"):
            what = "task type" if path[1] == "tasks" else "trigger type"
            hint = _type_hint(what, value, e.validator_value, broken)
        yield error(doc.pos(path), f"unknown {what} {value!r}{where}; known: {choices}", hint)
    elif kind == "pattern" and "propertyNames" in e.schema_path:
        yield error(doc.key_pos(path + (value,)), f"invalid {title} '{value}'{where}", e.schema.get("description"))
    elif kind == "pattern":
        parser = {"duration": parse_duration, "size": parse_size}.get(title)
        message = f"invalid {title} {value!r}{where}"
        if parser is not None:
            try:
                parser(value)
            except ValueError as exc:
                message = f"{exc}{where}"
        yield error(doc.pos(path), message, _pattern_hint(title, value) or e.schema.get("description"))
    elif kind in ("minItems", "minLength"):
        yield error(doc.pos(path), f"'{_key(path)}' must not be empty{where}")
    elif kind == "uniqueItems":
        yield error(doc.pos(path), f"'{_key(path)}' has duplicate entries{where}")
    elif kind in ("minimum", "maximum", "exclusiveMinimum"):
        bound = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than"}[kind]
        yield error(doc.pos(path), f"'{_key(path)}' must be {bound} {e.validator_value}, got {value!r}{where}")
    elif kind == "oneOf":
        keys = [f"'{k}'" for branch in e.validator_value for k in branch.get("required", [])]
        yield error(doc.pos(path), f"give exactly one of {' or '.join(keys)}{where}")
    elif kind == "dependentRequired":
        for key, needs in e.validator_value.items():
            if key in value:
                yield error(doc.key_pos(path + (key,)), f"'{key}' needs {', '.join(repr(n) for n in needs)}{where}")
    else:
        yield error(doc.pos(path), f"{e.message}{where}")


def _errors_at(v: jsonschema.Draft202012Validator, data: Any, path: JsonPath) -> bool:
    return any(tuple(e.absolute_path) == path for e in v.iter_errors(data))


def _accepts(v: jsonschema.Draft202012Validator, doc: Located, path: JsonPath, replacement: Any) -> bool:
    """Whether the schema would accept `replacement` in place of the value at `path`."""
    data = copy.deepcopy(doc.data)
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = replacement
    return not _errors_at(v, data, path)


def _as_duration(text: str) -> str:
    """'1:30' -> '1m30s', '1:02:03' -> '1h2m3s' (how a clock-style time is meant)."""
    parts = [int(p) for p in text.split(":") if p.isdigit()]
    units = ("h", "m", "s")[-len(parts):] if 0 < len(parts) <= 3 else ()
    written = "".join(f"{n}{u}" for n, u in zip(parts, units) if n)
    return written or "90s"


def _pitfalls(v: jsonschema.Draft202012Validator, doc: Located, bad: set[JsonPath]) -> Iterator[Diagnostic]:
    for path, s in doc.scalars.items():
        if not s.plain or path in bad or not path:
            continue
        try:
            value = doc.get(path)
        except (KeyError, IndexError, TypeError):
            continue  # a merged (<<) value: its path is not in the data
        if s.tag == "bool" and s.text.lower() not in ("true", "false"):
            if _accepts(v, doc, path, s.text):  # a string would do as well: the boolean is a guess
                yield warning(doc.pos(path), f"'{s.text}' is read by YAML as the boolean {str(value).lower()}",
                              f'quote it: "{s.text}", or write {str(value).lower()}')
        elif s.tag in ("int", "float") and not isinstance(value, bool):
            if ":" in s.text:
                if path[-1] == "timeout":  # "1:30" quoted is no duration either
                    hint = f"write the duration with units, e.g. {_as_duration(s.text)}"
                else:
                    hint = f'quote it: "{s.text}"'
                yield warning(doc.pos(path), f"{s.text} is read by YAML 1.1 as the base-60 number {value}", hint)
            elif _OCTAL.fullmatch(s.text) and s.tag == "int":
                yield warning(doc.pos(path), f"{s.text} is read by YAML 1.1 as the octal number {value}",
                              f'quote it: "{s.text}"')
            elif str(value) != s.text and _accepts(v, doc, path, s.text):
                yield warning(doc.pos(path), f"{s.text} is read by YAML as the number {value}",
                              f'quote it: "{s.text}"')


def validate(doc: Located, task_types: TaskTypes,
             trigger_types: Mapping[str, Mapping[str, Any]] | None = None, *,
             broken: Collection[str] = ()) -> list[Diagnostic]:
    """All schema errors of `doc`, then the YAML value warnings where no error stands.
    `broken`: the plugins installed that could not be loaded (what an unknown type may be)."""
    v = validator(task_types, trigger_types)
    found = list(v.iter_errors(doc.data))
    diags = [d for e in found for d in _diagnose(e, doc, broken)]
    diags.extend(_pitfalls(v, doc, {tuple(e.absolute_path) for e in found}))
    return diags
