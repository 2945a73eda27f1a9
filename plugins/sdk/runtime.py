"""Inside a plugin task's container: read the task's config, load data, write the output.

A plugin task runs `python3 -m <its module>` in its image with these files and variables:

- `$CLARITY_PLUGIN_CONFIG` (default /clarity/plugin/config.json): the task's `config`, with every
  `${...}` resolved; a string that was exactly one expression of a JSON value (such as
  `${tasks.validate-input.output}`) is that value, not its text.
- `$CLARITY_PLUGIN_CONTEXT` (default /clarity/plugin/context.json): `{"run_id", "workflow",
  "task", "plugin", "version", "trigger": {...}}` (`trigger.payload` holds a webhook's or an
  event's JSON payload, when the run has one).
- the workspace (the commit's files) is the working directory (`$CLARITY_WORKSPACE`);
- `$CLARITY_OUTPUT`: where the task's output (JSON) goes; `${tasks.NAME.output}` reads it.

Only the standard library and PyYAML are used here: the module is copied into the container.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

CONFIG_ENV = "CLARITY_PLUGIN_CONFIG"
CONTEXT_ENV = "CLARITY_PLUGIN_CONTEXT"
CONFIG_PATH = "/clarity/plugin/config.json"
CONTEXT_PATH = "/clarity/plugin/context.json"
FILE_PREFIX = "./"  # a data value that is a string starting with this names a workspace file


class PluginError(Exception):
    """A mistake of the user's (bad data, a missing file, a refused destination): the message
    says what, where and how to fix it. The task fails with it, without a traceback."""


def config() -> dict[str, Any]:
    return _read_json(os.environ.get(CONFIG_ENV, CONFIG_PATH), "the task's config")


def context() -> dict[str, Any]:
    path = os.environ.get(CONTEXT_ENV, CONTEXT_PATH)
    return _read_json(path, "the task's context") if Path(path).exists() else {}


def _read_json(path: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PluginError(f"could not read {what} from {path}: {e}") from None
    if not isinstance(value, dict):
        raise PluginError(f"{what} in {path} is not a JSON object")
    return value


def workspace() -> Path:
    return Path(os.environ.get("CLARITY_WORKSPACE") or os.getcwd())


def inside(root: Path, relative: str, what: str) -> Path:
    """`relative` resolved under `root`; a path that leaves it (`..`, an absolute path, a symlink
    pointing out) is refused."""
    if "\x00" in relative:
        raise PluginError(f"{what}: the path holds a NUL byte")
    root = root.resolve()
    target = (root / relative.lstrip("/") if not Path(relative).is_absolute() else Path(relative)).resolve()
    if target != root and root not in target.parents:
        raise PluginError(f"{what}: '{relative}' is outside {root}; give a path inside it")
    return target


def workspace_file(path: str, what: str) -> Path:
    """A file of the workspace (`./schemas/input.json`); it must exist."""
    target = inside(workspace(), path, what)
    if not target.is_file():
        raise PluginError(f"{what}: no file '{path}' in the workspace (paths are relative to the repository root)")
    return target


def is_file_ref(value: Any) -> bool:
    return (isinstance(value, str) and value.startswith(FILE_PREFIX)) or (
        isinstance(value, Mapping) and set(value) == {"file"} and isinstance(value["file"], str))


def load_data(value: Any, what: str) -> Any:
    """A data source: a workspace file (`./data.json`, or `{file: data.json}`: JSON, YAML, CSV by
    extension), else the value itself (inline, or an upstream task's output)."""
    if is_file_ref(value):
        path = value["file"] if isinstance(value, Mapping) else value
        return read_file(workspace_file(path, what), what)
    return value


def data_source(config: Mapping[str, Any], key: str, context: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The data of `config[key]` (a workspace file or the value itself), else the trigger's
    payload; and how to name it in messages (the file, "the trigger's payload", or None)."""
    if key in config:
        value = config[key]
        label = (value["file"] if isinstance(value, Mapping) else value) if is_file_ref(value) else None
        return load_data(value, key), label
    trigger = context.get("trigger")
    if isinstance(trigger, Mapping) and trigger.get("payload") is not None:
        return trigger["payload"], "the trigger's payload"
    raise PluginError(f"no data to work on: set {key}: (a workspace file ./x.json, an inline value or "
                      "${tasks.NAME.output}), or start the run with a payload (a webhook or an event)")


def read_file(path: Path, what: str) -> Any:
    """JSON (.json), YAML (.yaml, .yml), CSV (.csv: a list of objects, one per row, keyed by the
    header) or, for any other extension, the text."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PluginError(f"{what}: could not read {path.name}: {e}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        if suffix == ".csv":
            return [dict(row) for row in csv.DictReader(io.StringIO(text))]
    except Exception as e:  # json.JSONDecodeError, yaml.YAMLError, csv.Error
        raise PluginError(f"{what}: {path.name} is not valid {suffix[1:].upper()}: {e}") from None
    return text


def dump(value: Any, fmt: str) -> str:
    """`value` as json, yaml or csv text (csv: a list of objects; the columns in first-seen order)."""
    if fmt == "json":
        return json.dumps(value, indent=2, sort_keys=False, default=str) + "\n"
    if fmt == "yaml":
        import yaml

        return str(yaml.safe_dump(value, sort_keys=False, allow_unicode=True))
    if fmt == "csv":
        rows = value if isinstance(value, list) else [value]
        if not all(isinstance(r, Mapping) for r in rows):
            raise PluginError("csv needs a list of objects (one per row)")
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v if isinstance(v, (str, int, float)) or v is None else json.dumps(v)
                             for k, v in row.items()})
        return out.getvalue()
    raise PluginError(f"unknown format '{fmt}'; known: json, yaml, csv")


def describe(value: Any) -> str:
    """'6 records', 'an object (orders: 6 records)', 'a string': data as a message names it."""
    if isinstance(value, list):
        return f"{len(value)} record{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        lists = [f"{k}: {describe(v)}" for k, v in value.items() if isinstance(v, list)][:3]
        return "an object" + (f" ({', '.join(lists)})" if lists else "")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, (int, float)) else "a string" if isinstance(value, str) \
        else type(value).__name__


def write_output(value: Any) -> None:
    """The task's output (JSON): what `${tasks.NAME.output}` reads downstream."""
    path = os.environ.get("CLARITY_OUTPUT")
    if path:
        Path(path).write_text(json.dumps(value, default=str), encoding="utf-8")


def main(work: Callable[[dict[str, Any], dict[str, Any]], Any]) -> None:
    """Run `work(config, context)`; its return value is the task's output. A PluginError ends
    the task with its message (exit 1); anything else is a bug of the plugin (exit 2)."""
    try:
        result = work(config(), context())
        write_output(result)
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as e:  # a bug of the plugin: say so, with the traceback
        traceback.print_exc()
        print(f"error: the plugin failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
