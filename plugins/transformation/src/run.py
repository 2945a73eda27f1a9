"""The transformation task, in its container: apply declarative `rules` to the `input` data.

    python3 -m plugins.transformation.src.run

The rules are steps (select, filter, rename, compute, map, drop, sort, limit) applied in order;
expressions are JMESPath (with a few extra functions: add, subtract, multiply, divide, round,
lower, upper, trim). Output: the transformed data; with `output`, also written to that workspace
file (JSON, YAML or CSV by its extension). Uses the standard library, PyYAML and jmespath only.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import jmespath
from jmespath import exceptions as jexc
from jmespath import functions as jfunc

from plugins.sdk.runtime import (PluginError, data_source, describe, dump, inside, is_file_ref, load_data, main,
                                 workspace, workspace_file)

_KEYS = ("input", "rules", "output")
_RULES_SUFFIXES = (".json", ".yaml", ".yml")
_OUTPUT_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".csv": "csv"}
STEPS = ("select", "filter", "rename", "compute", "map", "drop", "sort", "limit")


class _Functions(jfunc.Functions):  # type: ignore[misc]
    """JMESPath has no arithmetic operators and few string functions: these fill the gap."""

    @jfunc.signature({"types": ["number"]}, {"types": ["number"]})  # type: ignore[untyped-decorator]
    def _func_add(self, a: float, b: float) -> float:
        return a + b

    @jfunc.signature({"types": ["number"]}, {"types": ["number"]})  # type: ignore[untyped-decorator]
    def _func_subtract(self, a: float, b: float) -> float:
        return a - b

    @jfunc.signature({"types": ["number"]}, {"types": ["number"]})  # type: ignore[untyped-decorator]
    def _func_multiply(self, a: float, b: float) -> float:
        return a * b

    @jfunc.signature({"types": ["number"]}, {"types": ["number"]})  # type: ignore[untyped-decorator]
    def _func_divide(self, a: float, b: float) -> float:
        if b == 0:
            raise jexc.JMESPathError("divide(): division by zero")
        return a / b

    @jfunc.signature({"types": ["number"]}, {"types": ["number"]})  # type: ignore[untyped-decorator]
    def _func_round(self, value: float, digits: float) -> float:
        if digits != int(digits):
            raise jexc.JMESPathError(f"round(): digits must be a whole number, not {digits}")
        return round(value) if int(digits) == 0 else round(value, int(digits))

    @jfunc.signature({"types": ["string"]})  # type: ignore[untyped-decorator]
    def _func_lower(self, s: str) -> str:
        return s.lower()

    @jfunc.signature({"types": ["string"]})  # type: ignore[untyped-decorator]
    def _func_upper(self, s: str) -> str:
        return s.upper()

    @jfunc.signature({"types": ["string"]})  # type: ignore[untyped-decorator]
    def _func_trim(self, s: str) -> str:
        return s.strip()


_OPTIONS = jmespath.Options(custom_functions=_Functions())
FUNCTIONS = tuple(sorted(_Functions.FUNCTION_TABLE))


@dataclass
class Step:
    number: int
    name: str
    where: str  # "rules ./rules/processing.yaml, step 3 (filter)"
    apply: Callable[[Any], Any]
    summary: str  # what the log line says about the step: "select orders"


def work(config: dict[str, Any], context: dict[str, Any]) -> Any:
    unknown = sorted(set(config) - set(_KEYS))
    if unknown:
        raise PluginError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"known: {', '.join(_KEYS)}")
    if "rules" not in config:
        raise PluginError('give rules: a workspace file ("./rules/processing.yaml") or an inline list of steps')
    steps = compile_rules(config["rules"])
    destination = _destination(config.get("output"))
    data, label = data_source(config, "input", context)
    print(f"input{f' {label}' if label else ''}: {describe(data)}", flush=True)

    for step in steps:
        before, data = data, step.apply(data)
        dropped = len(before) - len(data) if isinstance(before, list) and isinstance(data, list) else 0
        print(f"step {step.number} {step.summary}: {describe(data)}"
              f"{f' ({dropped} dropped)' if step.name in ('filter', 'limit') and dropped else ''}", flush=True)

    if destination is not None:
        path, target, fmt = destination
        try:
            text = dump(data, fmt)
        except PluginError as e:
            raise PluginError(f"output {path}: {e}; the rules produced {describe(data)}") from None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as e:
            raise PluginError(f"output {path}: could not write it: {e.strerror or e}") from None
        print(f"wrote {path} ({describe(data)}, {len(text.encode())} bytes)", flush=True)
    return data


def _destination(value: Any) -> tuple[str, Path, str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PluginError(f'output must be a workspace file path ("./out/result.json"), not {json.dumps(value)}')
    target = inside(workspace(), value, "output")
    fmt = _OUTPUT_FORMATS.get(os.path.splitext(value)[1].lower())
    if fmt is None:
        raise PluginError(f"output '{value}': the format comes from the extension: .json, .yaml, .yml or .csv")
    if target.is_dir():
        raise PluginError(f"output '{value}' is a directory; name a file")
    return value, target, fmt


# -- the rules ------------------------------------------------------------------------------------

def compile_rules(value: Any) -> list[Step]:
    """Every step checked and its expressions compiled, before any runs."""
    if is_file_ref(value):
        path = value["file"] if isinstance(value, Mapping) else value
        workspace_file(path, "rules")  # inside the workspace, and there
        if not path.lower().endswith(_RULES_SUFFIXES):
            raise PluginError(f"rules: '{path}' is not a JSON or YAML file; a rules file ends in .json, .yaml or .yml")
        label, rules = f"rules {path}", load_data(value, "rules")
        if isinstance(rules, Mapping):
            extra = sorted(set(rules) - {"steps"})
            if extra or "steps" not in rules:
                raise PluginError(f"{label}: the file holds a list of steps, or a mapping with only steps: [...]"
                                  f"{f'; unknown key {extra[0]!r}' if extra else ''}")
            rules = rules["steps"]
    elif isinstance(value, str):
        raise PluginError(f"rules: '{value[:80]}' is neither a workspace file (those start with ./, e.g. "
                          '"./rules/processing.yaml") nor a list of steps')
    else:
        label, rules = "rules", value
    if not isinstance(rules, list):
        raise PluginError(f"{label}: expected a list of steps, got {describe(rules)}")
    if not rules:
        raise PluginError(f"{label}: no steps; give at least one ({', '.join(STEPS)})")
    return [_step(label, i, raw) for i, raw in enumerate(rules, start=1)]


def _step(label: str, number: int, raw: Any) -> Step:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        got = (f"{len(raw)} keys ({', '.join(map(str, raw))}); write each as its own step"
               if isinstance(raw, Mapping) else describe(raw))
        raise PluginError(f"{label}, step {number}: a step is a mapping with one key, the step's name "
                          f"({', '.join(STEPS)}); got {got}")
    name, arg = next(iter(raw.items()))
    if name not in STEPS:
        close = difflib.get_close_matches(str(name), STEPS, n=1)
        raise PluginError(f"{label}, step {number}: unknown step '{name}'"
                          f"{f' (did you mean {close[0]}?)' if close else ''}; known: {', '.join(STEPS)}")
    where = f"{label}, step {number} ({name})"
    build: Callable[[str, Any], tuple[Callable[[Any], Any], str]] = _BUILDERS[name]
    apply, summary = build(where, arg)
    return Step(number, name, where, apply, f"{name} {summary}" if summary else name)


def _expression(where: str, text: Any, what: str = "") -> Any:
    """A compiled JMESPath expression; its functions must exist."""
    if not isinstance(text, str) or not text.strip():
        raise PluginError(f"{where}: {what or 'the expression'} must be a JMESPath expression (a string), "
                          f"not {json.dumps(text, default=str)}")
    try:
        parsed = jmespath.compile(text)
    except jexc.JMESPathError as e:
        raise PluginError(f"{where}: invalid JMESPath expression {json.dumps(text)}: {_parse_error(e, text)}") \
            from None
    for fn in _functions_in(parsed.parsed):
        if fn not in _Functions.FUNCTION_TABLE:
            close = difflib.get_close_matches(fn, FUNCTIONS, n=1)
            raise PluginError(f"{where}: unknown function {fn}() in {json.dumps(text)}"
                              f"{f' (did you mean {close[0]}?)' if close else ''}; known: {', '.join(FUNCTIONS)}")
    return parsed


def _parse_error(e: Exception, text: str) -> str:
    first = str(e).split("\n", 1)[0]
    for prefix in ("Invalid jmespath expression: ", "Bad jmespath expression: "):
        first = first.removeprefix(prefix)
    first = first.removesuffix(", for expression:").rstrip(":")
    if isinstance(e, jexc.IncompleteExpressionError):
        first = "the expression is incomplete"
    if any(op in text for op in (" + ", " - ", " * ", " / ")):
        first += " (JMESPath has no arithmetic operators: use add(a, b), subtract(a, b), multiply(a, b), divide(a, b))"
    return first


def _functions_in(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "function_expression":
            found.append(str(node.get("value")))
        for child in node.get("children") or ():
            found.extend(_functions_in(child))
    elif isinstance(node, list):
        for child in node:
            found.extend(_functions_in(child))
    return found


def _search(where: str, expr: Any, value: Any, at: str = "") -> Any:
    try:
        return expr.search(value, options=_OPTIONS)
    except jexc.JMESPathError as e:
        raise PluginError(f"{where}: {expr.expression}{f' at {at}' if at else ''}: {str(e).splitlines()[0]}") \
            from None
    except TypeError as e:  # jmespath.py compares a string with a number so: "12.5" > `10`
        hint = ("cannot compare a string with a number" if "not supported between" in str(e) else "a type error")
        raise PluginError(f"{where}: {expr.expression}{f' at {at}' if at else ''}: {hint} ({e}); values read "
                          'from CSV are strings: convert them first, e.g. compute: {price: "to_number(price)"}') \
            from None


def _truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, "", [] and {} are false; everything else (0 too) is true."""
    return not (value is None or value is False or value == "" or value == [] or value == {})


def _records(where: str, data: Any, *, objects: bool = True) -> tuple[list[Any], bool]:
    """The records of `data`: a list's items, or the single object (then `True`)."""
    if isinstance(data, list):
        if objects:
            for i, item in enumerate(data):
                if not isinstance(item, dict):
                    raise PluginError(f"{where}: expects records (objects), got {describe(item)} at $[{i}]")
        return data, False
    if objects and not isinstance(data, dict):
        raise PluginError(f"{where}: expects records (objects), got {describe(data)}")
    return [data], True


def _each(where: str, data: Any, fn: Callable[[Any, str], Any], *, objects: bool = True) -> Any:
    items, single = _records(where, data, objects=objects)
    out = [fn(item, "$" if single else f"$[{i}]") for i, item in enumerate(items)]
    return out[0] if single else out


def _list(where: str, data: Any) -> list[Any]:
    if not isinstance(data, list):
        hint = "; select the list first (e.g. select: orders)" if isinstance(data, dict) else ""
        raise PluginError(f"{where}: expects a list of records, got {describe(data)}{hint}")
    return data


def _mapping_of_strings(where: str, arg: Any, example: str) -> dict[str, str]:
    if not isinstance(arg, Mapping) or not arg:
        raise PluginError(f"{where}: expects a mapping ({example}), got {describe(arg)}")
    for key, value in arg.items():
        if not isinstance(key, str) or not isinstance(value, str) or not value:
            raise PluginError(f"{where}: {key!r}: {json.dumps(value, default=str)} must be a non-empty string "
                              f"({example})")
    return dict(arg)


def _select(where: str, arg: Any) -> tuple[Callable[[Any], Any], str]:
    expr = _expression(where, arg)
    return (lambda data: _search(where, expr, data)), _clip(arg)


def _filter(where: str, arg: Any) -> tuple[Callable[[Any], Any], str]:
    expr = _expression(where, arg)

    def apply(data: Any) -> Any:
        return [r for i, r in enumerate(_list(where, data)) if _truthy(_search(where, expr, r, f"$[{i}]"))]
    return apply, _clip(arg)


def _rename(where: str, arg: Any) -> tuple[Callable[[Any], Any], str]:
    names = _mapping_of_strings(where, arg, "old: new")

    def one(record: dict[str, Any], _at: str) -> dict[str, Any]:
        taken = {names[k] for k in record if k in names}  # a renamed key replaces one of that name
        return {names.get(k, k): v for k, v in record.items() if k in names or k not in taken}
    return (lambda data: _each(where, data, one)), ", ".join(f"{a} -> {b}" for a, b in names.items())


def _compute(where: str, arg: Any) -> tuple[Callable[[Any], Any], str]:
    fields = _mapping_of_strings(where, arg, 'field: "JMESPath expression"')
    exprs = {field: _expression(where, text, f"{field}'s expression") for field, text in fields.items()}

    def one(record: dict[str, Any], at: str) -> dict[str, Any]:
        record = dict(record)
        for field, expr in exprs.items():  # in order: a later field sees the earlier ones
            record[field] = _search(f"{where} {field}", expr, record, at)
        return record
    return (lambda data: _each(where, data, one)), ", ".join(fields)


def _map(where: str, arg: Any) -> tuple[Callable[[Any], Any], str]:
    expr = _expression(where, arg)
    return (lambda data: _each(where, data, lambda r, at: _search(where, expr, r, at), objects=False)), _clip(arg)


def _drop(where: str, arg: Any) -> tuple[Callable[[Any], Any], str]:
    fields = [arg] if isinstance(arg, str) else arg
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
        raise PluginError(f"{where}: expects a list of field names ([password, internal_id]), got {describe(arg)}")
    gone = set(fields)
    return (lambda data: _each(where, data, lambda r, _at: {k: v for k, v in r.items() if k not in gone})), \
        ", ".join(fields)


def _sort(where: str, arg: Any) -> tuple[Callable[[Any], Any], str]:
    spec = {"by": arg} if isinstance(arg, str) else arg
    if not isinstance(spec, Mapping) or "by" not in spec or set(spec) - {"by", "reverse"}:
        raise PluginError(f"{where}: expects a field or expression (sort: price), or {{by: price, reverse: true}}, "
                          f"got {json.dumps(arg, default=str)}")
    reverse = spec.get("reverse", False)
    if not isinstance(reverse, bool):
        raise PluginError(f"{where}: reverse must be true or false, not {json.dumps(reverse, default=str)}")
    expr = _expression(where, spec["by"], "by")

    def apply(data: Any) -> Any:
        records = _list(where, data)
        keys = [_search(where, expr, r, f"$[{i}]") for i, r in enumerate(records)]
        present = [(k, r) for k, r in zip(keys, records) if k is not None]
        missing = [r for k, r in zip(keys, records) if k is None]  # null keys go last, in their order
        kinds = {_kind(k) for k, _ in present}
        if len(kinds) > 1 or kinds - {"number", "string"}:
            raise PluginError(f"{where}: cannot sort by {spec['by']}: its values are {', '.join(sorted(kinds))}; "
                              "they must be all numbers or all strings (to_number() or to_string() can help)")
        ordered = [r for _, r in sorted(present, key=lambda kr: kr[0], reverse=reverse)]
        return ordered + missing
    return apply, f"by {spec['by']}{' (reverse)' if reverse else ''}"


def _limit(where: str, arg: Any) -> tuple[Callable[[Any], Any], str]:
    if not isinstance(arg, int) or isinstance(arg, bool) or arg < 0:
        raise PluginError(f"{where}: expects a number of records (0 or more), got {json.dumps(arg, default=str)}")
    return (lambda data: _list(where, data)[:arg]), str(arg)


_BUILDERS: dict[str, Callable[[str, Any], tuple[Callable[[Any], Any], str]]] = {
    "select": _select, "filter": _filter, "rename": _rename, "compute": _compute, "map": _map, "drop": _drop,
    "sort": _sort, "limit": _limit,
}


def _kind(value: Any) -> str:
    """The JMESPath type name of a value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


if __name__ == "__main__":
    main(work)
