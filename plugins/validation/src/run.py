"""The validation task, in its container: check `data` against a JSON Schema.

    python3 -m plugins.validation.src.run

Output: the validated data itself (so `${tasks.NAME.output}` is the data); with
`fail_on_error: false`, `{"valid": bool, "errors": [{"path", "message"}], "data": ...}`.
Uses the standard library, PyYAML and jsonschema (with `referencing`, its dependency) only.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
from jsonschema import FormatChecker, SchemaError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT202012

from plugins.sdk.runtime import PluginError, data_source, describe, is_file_ref, load_data, main, workspace, workspace_file

_KEYS = ("schema", "data", "fail_on_error")
_SCHEMA_SUFFIXES = (".json", ".yaml", ".yml")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_MESSAGE = 400
_INLINE = "the inline schema"
# Formats the standard library can check (the same in every image); others are annotations.
_STDLIB_FORMATS = ("date", "email", "idn-email", "ipv4", "ipv6", "regex", "uuid")
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)\Z")
_TIME = re.compile(r"\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)\Z")


def work(config: dict[str, Any], context: dict[str, Any]) -> Any:
    unknown = sorted(set(config) - set(_KEYS))
    if unknown:
        raise PluginError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"known: {', '.join(_KEYS)}")
    if "schema" not in config:
        raise PluginError('give schema: a workspace file ("./schemas/input.json", JSON or YAML) or an inline '
                          "JSON Schema")
    fail_on_error = config.get("fail_on_error", True)
    if not isinstance(fail_on_error, bool):
        raise PluginError(f"fail_on_error must be true or false, not {json.dumps(fail_on_error)}")

    schema, schema_label, schema_dir = _schema(config["schema"])
    data, data_label = data_source(config, "data", context)
    validator = _validator(schema, schema_label, schema_dir)

    try:
        found = list(validator.iter_errors(data))
    except Unresolvable as e:
        raise PluginError(f"{_named(schema_label)}: {_unresolvable(e)}") from None
    errors = [{"path": json_path(e.absolute_path), "message": _short(e.message)}
              for e in sorted(found, key=lambda e: (_path_key(e.absolute_path), e.message))]

    subject = f"{describe(data)}{f' from {data_label}' if data_label else ''}"
    if not errors:
        print(f"valid: {subject} against {schema_label}", flush=True)
        return {"valid": True, "errors": [], "data": data} if not fail_on_error else data

    for error in errors:
        print(f"{error['path']}: {error['message']}", flush=True)
    summary = (f"{len(errors)} error{'s' if len(errors) > 1 else ''}: {data_label or 'the data'} does not match "
               f"{schema_label}")
    if fail_on_error:
        raise PluginError(summary)
    print(f"invalid: {summary} (fail_on_error is false: the task succeeds)", flush=True)
    return {"valid": False, "errors": errors, "data": data}


def _schema(value: Any) -> tuple[Any, str, Path | None]:
    """The schema, how to name it, and the directory its relative `$ref`s are read from."""
    if is_file_ref(value):
        path = value["file"] if isinstance(value, Mapping) else value
        target = workspace_file(path, "schema")
        if not path.lower().endswith(_SCHEMA_SUFFIXES):
            raise PluginError(f"schema: '{path}' is not a JSON or YAML file; a schema file ends in "
                              ".json, .yaml or .yml")
        return load_data(value, "schema"), path, target.parent
    if isinstance(value, str):
        raise PluginError(f"schema: '{_short(value, 80)}' is neither a workspace file (those start with ./, "
                          'e.g. "./schemas/input.json") nor a JSON Schema (an object)')
    return value, _INLINE, None


def _validator(schema: Any, label: str, base: Path | None) -> Any:
    if not isinstance(schema, (dict, bool)):
        raise PluginError(f"{_named(label)} is not a valid JSON Schema: it is {_kind(schema)}, "
                          "not an object")
    cls: Any = jsonschema.Draft202012Validator
    if isinstance(schema, dict) and "$schema" in schema:
        cls = jsonschema.validators.validator_for(schema, default=None)
        if cls is None:
            raise PluginError(f"{_named(label)}: unknown $schema {json.dumps(schema['$schema'])}; use "
                              '"https://json-schema.org/draft/2020-12/schema" (the default) or leave it out')
    try:
        cls.check_schema(schema)
    except SchemaError as e:
        raise PluginError(f"{_named(label)} is not a valid JSON Schema: {json_path(e.absolute_path)}: "
                          f"{_short(e.message)}") from None
    return cls(schema, format_checker=_format_checker(), registry=_registry(base))


def _named(label: str) -> str:
    """'the schema ./schemas/input.json', or 'the inline schema'."""
    return label if label == _INLINE else f"the schema {label}"


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=_STDLIB_FORMATS)

    @checker.checks("date-time", raises=ValueError)  # type: ignore[untyped-decorator]
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not _DATE_TIME.match(value):
            return False
        _dt.datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", value.replace("t", "T")))
        return True

    @checker.checks("time", raises=ValueError)  # type: ignore[untyped-decorator]
    def _time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not _TIME.match(value):
            return False
        _dt.time.fromisoformat(re.sub(r"[Zz]$", "+00:00", value))
        return True

    return checker


def _registry(base: Path | None) -> Registry[Any]:
    """`$ref`s to other files are read from the workspace, relative to the schema's file."""
    root = workspace().resolve()

    def retrieve(uri: str) -> Resource[Any]:
        if base is None or ":" in uri.split("/", 1)[0] or uri.startswith("/"):
            raise NoSuchResource(ref=uri)  # type: ignore[call-arg]
        target = (base / uri).resolve()
        if target != root and root not in target.parents:
            raise PluginError(f"'{uri}' is outside the workspace")
        contents = load_data("./" + os.path.relpath(target, root), f"$ref '{uri}'")
        return Resource.from_contents(contents, default_specification=DRAFT202012)

    return Registry(retrieve=retrieve)  # type: ignore[call-arg]


def _unresolvable(e: Unresolvable) -> str:
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, PluginError):
            return f"cannot resolve $ref '{e.ref}': {cause}"
        cause = cause.__cause__ or cause.__context__
    return (f"cannot resolve $ref '{e.ref}' (a $ref names a place in the same schema, \"#/$defs/NAME\", or "
            "a workspace file relative to the schema's file, \"common.json#/$defs/NAME\"; nothing is fetched)")


def json_path(parts: Iterable[Any]) -> str:
    """`$.items[2].price` (keys that are not identifiers: `$["first name"]`)."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(str(part)):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _path_key(parts: Iterable[Any]) -> tuple[tuple[int, int, str], ...]:
    """Sorts paths as they are read: indices by number, keys by name."""
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in parts)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return describe(value)


def _short(text: str, limit: int = _MAX_MESSAGE) -> str:
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[:limit - 3] + "..."


if __name__ == "__main__":
    main(work)
