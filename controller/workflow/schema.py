"""The workflow format as a JSON Schema (draft 2020-12): the single source of truth.

The same document validates files (see validate.py) and is published for
editors (`clarity schema > docs/schema.json`). Task types are a registry:
name -> JSON Schema of that type's `config` (None: the type takes no config).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from controller.triggers.webhook import FILTER_PATH_PATTERN as WEBHOOK_FILTER_PATH
from controller.triggers.webhook import SIGNATURES as WEBHOOK_SIGNATURES

from .units import DURATION_PATTERN, SIZE_PATTERN

Schema = dict[str, Any]
TaskTypes = Mapping[str, "Schema | None"]

SCHEMA_ID = "https://clarity-ci.dev/schema/workflow.json"
DEFAULT_TASK_TYPES: TaskTypes = MappingProxyType({"container": None})
CORE_TASK_TYPES = ("container", "workflow")  # not plugins: the schema has their shapes
TRIGGER_TYPES = ("push", "pull_request", "tag", "schedule", "webhook", "manual", "event", "file_watch")
TASK_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
SECRET_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
LABEL_PATTERN = r"^[a-z0-9_.-]+$"


def _s(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _list(description: str, items: Schema | None = None, **extra: Any) -> Schema:
    return {"type": "array", "description": description,
            "items": items or {"type": "string", "description": "One entry."}, **extra}


def _obj(description: str, properties: Mapping[str, Schema], required: tuple[str, ...] = (),
         **extra: Any) -> Schema:
    out: Schema = {"type": "object", "description": description, "properties": dict(properties),
                   "additionalProperties": False, **extra}
    if required:
        out["required"] = list(required)
    return out


def _globs(what: str) -> Schema:
    return _list(f"Glob patterns ({what}); '*' stays within a path segment, '**' crosses them, "
                 "a leading '!' excludes.")


def _env(description: str) -> Schema:
    return {"type": "object", "description": description,
            "propertyNames": {"pattern": ENV_NAME_PATTERN, "title": "environment variable name",
                              "description": "Letters, digits and '_', not starting with a digit."},
            "additionalProperties": {"type": ["string", "number", "boolean"],
                                     "description": "The value; numbers and booleans become strings. "
                                                    "May contain ${...} expressions."}}


def _trigger(type_: str, description: str, properties: Mapping[str, Schema],
             required: tuple[str, ...] = (), **extra: Any) -> Schema:
    props = {"type": {"const": type_, "description": "The trigger type."}, **properties}
    return _obj(description, props, ("type", *required), **extra)


def _input() -> Schema:
    return _obj("A typed input of a manual run.", {
        "type": {"enum": ["string", "number", "boolean", "choice"], "description": "The value type (default string)."},
        "default": {"type": ["string", "number", "boolean"], "description": "Value used when none is given."},
        "options": _list("Allowed values of a choice input.", {"type": ["string", "number"], "description": "One option."},
                         minItems=1),
        "required": {"type": "boolean", "description": "Whether a value must be given (default false)."},
        "description": _s("Shown to the person starting the run."),
    }, allOf=[
        {"if": {"properties": {"type": {"const": "choice"}}, "required": ["type"]}, "then": {"required": ["options"]}},
        # the default has the input's type (string when no type is given)
        {"if": {"properties": {"type": {"const": "boolean"}}, "required": ["type"]},
         "then": {"properties": {"default": {"type": "boolean"}}}},
        {"if": {"properties": {"type": {"const": "number"}}, "required": ["type"]},
         "then": {"properties": {"default": {"type": "number"}}}},
        {"if": {"properties": {"type": {"const": "string"}}},
         "then": {"properties": {"default": {"type": "string"}}}},
    ])


def trigger_schemas() -> dict[str, Schema]:
    branches = _globs("branch names")
    paths, ignore = _globs("changed files that must match"), _globs("changed files to ignore")
    return {
        "push": _trigger("push", "Runs on pushed commits.", {
            "branches": branches, "tags": _globs("tag names"), "paths": paths, "paths_ignore": ignore}),
        "pull_request": _trigger("pull_request", "Runs on pull requests opened or updated.", {
            "branches": _globs("target branch names"), "paths": paths, "paths_ignore": ignore}),
        "tag": _trigger("tag", "Runs when a tag is pushed.", {"tags": _globs("tag names")}),
        "schedule": _trigger("schedule", "Runs on a cron schedule.", {
            "cron": _s("Five-field cron expression or @hourly/@daily/@weekly/@monthly/@yearly."),
            "timezone": _s("IANA time zone of the cron expression (default UTC)."),
            "catchup": {"enum": ["none", "latest", "all"],
                        "description": "Missed ticks after downtime: none, latest (default: one run) or all."},
        }, ("cron",)),
        "webhook": _trigger("webhook", "Runs when a POST with a webhook key of this workflow file reaches the "
                            "controller at `path` (keys: `clarity webhook-key create REPO FILE`).", {
            "path": _s("URL path served by the controller, under /api/v1/webhook (e.g. /api/v1/webhook, "
                       "/api/v1/webhooks/deploy).", pattern="^/", title="webhook path"),
            "signature": {"enum": list(WEBHOOK_SIGNATURES), "default": "none",
                          "description": "sha256: the request must also carry X-Clarity-Signature: sha256=<hex "
                                         "HMAC-SHA256 of the body with the key> (default none)."},
            "filter": {"type": "object", "description": "Run only when the JSON payload matches: dotted paths "
                                                        "into the payload -> the expected value, or a list of "
                                                        "accepted values; all entries must match.",
                       "propertyNames": {"pattern": WEBHOOK_FILTER_PATH, "title": "filter path",
                                         "description": "Keys separated by '.', e.g. repository.private "
                                                        "(a number indexes a list)."},
                       "additionalProperties": {
                           "type": ["string", "number", "boolean", "null", "array"], "minItems": 1,
                           "items": {"type": ["string", "number", "boolean", "null"], "description": "A value."},
                           "description": "The expected value, or a list of accepted values."}},
        }, ("path",)),
        "manual": _trigger("manual", "Runs when started by hand (CLI, API), with typed inputs.", {
            "inputs": {"type": "object", "description": "Inputs by name, read as ${inputs.NAME}.",
                       "propertyNames": {"pattern": ENV_NAME_PATTERN, "title": "input name",
                                         "description": "Letters, digits and '_'."},
                       "additionalProperties": _input()},
        }),
        "event": _trigger("event", "Runs when another workflow finishes, or on a custom event posted to the API.", {
            "workflow": _s("Name of the workflow whose runs are watched."),
            "state": {"enum": ["success", "failure", "any"], "description": "Which outcome fires (default success)."},
            "repo": _s("The registered repository (owner/name) whose workflow is watched (default: this one).",
                       pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", title="repository name"),
            "name": _s("Name of a custom event (POST /api/v1/events/NAME)."),
        }, oneOf=[{"required": ["workflow"]}, {"required": ["name"]}],
            dependentRequired={"state": ["workflow"], "repo": ["workflow"]}),
        "file_watch": _trigger("file_watch", "Runs when watched files change.", {
            "paths": _globs("repository files"),
            "directory": _s("A directory on the controller to watch."),
        }, oneOf=[{"required": ["paths"]}, {"required": ["directory"]}]),
    }


def _dispatch(base: Schema, branches: Mapping[str, Schema], default: str | None = None) -> Schema:
    """if/then per `type`, so errors point at the right keys of the right shape."""
    rules = []
    for name, shape in branches.items():
        cond: Schema = {"properties": {"type": {"const": name}}}
        if name != default:  # a missing `type` selects the default shape
            cond["required"] = ["type"]
        rules.append({"if": cond, "then": shape})
    return {**base, "allOf": rules}


def _task_common(trigger_names: tuple[str, ...] = TRIGGER_TYPES) -> dict[str, Schema]:
    return {
        "name": _s("Unique task name: letters, digits, '_' and '-' (no dots: they separate the parts "
                   "of ${tasks.NAME.output}).", pattern=TASK_NAME_PATTERN,
                   title="task name", minLength=1),
        "needs": _list("Tasks that must finish before this one.",
                       {"type": "string", "pattern": TASK_NAME_PATTERN, "title": "task name",
                        "description": "A task name: letters, digits, '_' and '-'."}, uniqueItems=True),
        "when": _obj("Conditions; the task runs only if all given ones match.", {
            "branch": _globs("branch names"),
            "event": _list("Trigger types.", {"enum": list(trigger_names), "description": "A trigger type."}),
            "path": _globs("changed files, any of which must match"),
            "path_ignore": _globs("changed files to ignore"),
        }),
        "env": _env("Environment variables of this task (over the workflow's)."),
        "workdir": _s("Working directory, relative to the workspace."),
        "timeout": {"type": ["string", "integer", "number"], "pattern": DURATION_PATTERN, "title": "duration",
                    "description": "Time limit: 30s, 5m, 1h30m, 1.5h, or a number of seconds."},
        "retries": {"type": "integer", "minimum": 0, "maximum": 10,
                    "description": "Automatic retries after an infrastructure error (0-10, default 0)."},
        "secrets": _list("Secrets exposed as env vars of the same name, masked in logs.",
                         {"type": "string", "pattern": SECRET_NAME_PATTERN, "title": "secret name",
                          "description": "Upper-case letters, digits and '_', not starting with a digit."},
                         uniqueItems=True),
        "artifacts": _list("Paths or globs kept after the task and given to the tasks that need it."),
        "network": {"enum": ["none", "host", "bridge"], "description": "Container network (default none)."},
        "labels": _list("Labels a runner must all have to take this task, e.g. [gpu, arm64] "
                        "(default: any runner).",
                        {"type": "string", "pattern": LABEL_PATTERN, "title": "runner label",
                         "description": "Lower-case letters, digits, '_', '.' and '-', e.g. gpu or linux-arm64."},
                        uniqueItems=True),
        "resources": _obj("Container resource limits.", {
            "memory": {"type": ["string", "integer"], "pattern": SIZE_PATTERN, "title": "size",
                       "description": "Memory limit: 512m, 1g, 256MiB, or bytes."},
            "cpus": {"type": "number", "exclusiveMinimum": 0, "description": "CPU limit, e.g. 1.5."},
            "pids": {"type": "integer", "minimum": 1, "description": "Process count limit."},
        }),
    }


def workflow_task(common: Mapping[str, Schema]) -> Schema:
    """`type: workflow`: another workflow run as a sub-run (controller.workflow.compose)."""
    return _obj("A task running another workflow as a sub-run; the sub-run's declared outputs become "
                "the task's outputs.", {
        **{k: common[k] for k in ("name", "needs", "when")},
        "type": {"const": "workflow", "description": "Task type."},
        "workflow": {"type": ["string", "object"], "minLength": 1, "title": "workflow file",
                     "description": "The workflow to run: a file of this repository at the run's commit "
                                    "(a bare name is in .clarity/), or {repo, ref, path} of another "
                                    "repository at a pinned ref.",
                     "properties": {"repo": _s("The repository (its registered name, URL or path).", minLength=1),
                                    "ref": _s("A tag, branch or commit of the repository.", minLength=1),
                                    "path": _s("The workflow file (a bare name is in .clarity/).", minLength=1)},
                     "required": ["path"], "additionalProperties": False,
                     "dependentRequired": {"repo": ["ref"], "ref": ["repo"]}},
        "inputs": {"type": "object", "description": "Inputs of the sub-workflow (its manual trigger's), "
                                                     "checked against their declared types. May contain ${...} "
                                                     "expressions.",
                   "propertyNames": {"pattern": ENV_NAME_PATTERN, "title": "input name",
                                     "description": "Letters, digits and '_'."},
                   "additionalProperties": {"type": ["string", "number", "boolean"], "description": "The value."}},
        "wait": {"type": "boolean", "default": True,
                 "description": "Wait for the sub-run and end with its result (default true); false: the task "
                                "ends once the sub-run has started (its output: the run id)."},
    }, ("name", "type", "workflow"))


def _task(task_types: TaskTypes | None, trigger_names: tuple[str, ...] = TRIGGER_TYPES) -> Schema:
    common = _task_common(trigger_names)
    container = _obj("A task running commands in a container image.", {
        **common,
        "type": {"const": "container", "description": "Task type."},
        "image": _s("Container image.", minLength=1),
        "commands": _list("Shell commands run in order; the first failure ends the task. "
                          "Without commands the image's default command runs."),
    }, ("name", "image"))

    workflow = workflow_task(common)

    def plugin(name: str, config: Schema | None) -> Schema:
        props = {**common, "type": {"const": name, "description": "Task type."}}
        if config is not None:
            props["config"] = {**config, "description": config.get("description", f"Configuration of '{name}'.")}
        return _obj(f"A '{name}' task.", props, ("name",))

    type_schema: Schema = {"type": "string", "description": "Task type (default container)."}
    branches: dict[str, Schema] = {"container": container, "workflow": workflow}
    if task_types is None:  # editors: any type name, any config object
        type_schema["pattern"] = TASK_NAME_PATTERN
        other = plugin("", {"type": "object", "description": "Configuration of the plugin task type."})
        other["properties"]["type"] = {"type": "string", "description": "Task type provided by a plugin."}
        other["description"] = "A task of a type provided by a plugin."
        base: Schema = {"type": "object", "description": "A task.", "required": ["name"],
                        "properties": {"type": type_schema}}
        return {**_dispatch(base, branches, "container"),
                "else": other, "if": {"properties": {"type": {"enum": list(CORE_TASK_TYPES)}}}}
    type_schema["enum"] = sorted({*task_types, *CORE_TASK_TYPES})
    for name, config in task_types.items():
        if name not in CORE_TASK_TYPES:
            branches[name] = plugin(name, config)
    base = {"type": "object", "description": "A task.", "required": ["name"], "properties": {"type": type_schema}}
    return _dispatch(base, branches, "container")


def plugin_trigger(name: str, config: Mapping[str, Any]) -> Schema:
    """A trigger type of a plugin: its config schema's properties are the trigger's own keys."""
    shape: Schema = {**config, "type": "object",
                     "properties": {"type": {"const": name, "description": "The trigger type."},
                                    **dict(config.get("properties") or {})}}
    shape.setdefault("description", f"A '{name}' trigger (a plugin's).")
    shape.setdefault("additionalProperties", False)
    shape["required"] = ["type", *[r for r in config.get("required") or () if r != "type"]]
    return shape


def schema(task_types: TaskTypes | None = DEFAULT_TASK_TYPES,
           trigger_types: Mapping[str, Mapping[str, Any]] | None = None) -> Schema:
    """The schema for files using `task_types` (None means any type name, for editors) and the
    plugins' `trigger_types` (name -> config schema)."""
    triggers = trigger_schemas()
    for name, config in (trigger_types or {}).items():
        triggers[name] = plugin_trigger(name, config)
    names = tuple(triggers)
    trigger_base: Schema = {"type": "object", "description": "An event that starts the workflow.",
                            "required": ["type"],
                            "properties": {"type": {"enum": list(names), "description": "Trigger type."}}}
    workflow = _obj("A Clarity workflow.", {
        "name": _s("Workflow name.", minLength=1),
        "version": _s("Version of this workflow definition (quote it: \"1.10\")."),
        "description": _s("What the workflow does."),
        "extends": {"type": ["string", "object"], "minLength": 1, "title": "base workflow",
                    "description": "A base workflow this one is merged over (docs/workflow-format.md, Inheritance): "
                                   "a file of this repository at the same commit (a bare name is in .clarity/), "
                                   "or {repo, ref, path} of another repository at a pinned ref. Maps merge, tasks "
                                   "merge by name (`{name: X, remove: true}` drops one), other lists are replaced.",
                    "properties": {"repo": _s("The repository (a registered name, or on clarity run a URL, path or "
                                              "a name of the setting repositories).", minLength=1),
                                   "ref": _s("A tag, branch or commit of the repository.", minLength=1),
                                   "path": _s("The base's file (a bare name is in .clarity/).", minLength=1)},
                    "required": ["path"], "additionalProperties": False,
                    "dependentRequired": {"repo": ["ref"], "ref": ["repo"]}},
        "env": _env("Environment variables of every task."),
        "outputs": {"type": "object", "description": "Outputs of a run that succeeded, from its tasks' results "
                                                      "(e.g. ${tasks.deploy.outputs.url}): the outputs of a "
                                                      "`type: workflow` task that runs this workflow.",
                    "propertyNames": {"pattern": ENV_NAME_PATTERN, "title": "output name",
                                      "description": "Letters, digits and '_', not starting with a digit."},
                    "additionalProperties": {"type": ["string", "number", "boolean"],
                                             "description": "The value; may contain ${...} expressions."}},
        "triggers": _list("When the workflow runs; absent means push and pull_request.",
                          _dispatch(trigger_base, triggers)),
        "tasks": _list("The tasks, in list order unless some task declares needs.", _task(task_types, names),
                       minItems=1),
    }, ("name", "tasks"))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Clarity workflow",
        "description": "A Clarity CI workflow file (.clarity/*.yaml).",
        "type": "object",
        "properties": {"workflow": workflow},
        "required": ["workflow"],
        "additionalProperties": False,
    }


def json_schema(task_types: TaskTypes | None = None) -> Schema:
    """The published schema; by default open to any plugin task type."""
    return schema(task_types)


def dumps(task_types: TaskTypes | None = None) -> str:
    """Exactly the text of docs/schema.json."""
    return json.dumps(json_schema(task_types), indent=2) + "\n"


if __name__ == "__main__":
    print(dumps(), end="")
