"""The workflow as frozen values, built from a document that passed lint.

Nothing here validates: `build` trusts its input (lint_text only calls it
when there are no errors) and only normalises (defaults, durations, sizes,
env values as strings).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import Pos
from .load import Located
from .sources import FileRef
from .units import parse_duration, parse_size

__all__ = ["Task", "Trigger", "When", "Workflow", "build", "env_value", "parse_duration", "parse_size"]

DEFAULT_TRIGGERS = ("push", "pull_request")
# Defaults made explicit so the trigger services need not know them.
TRIGGER_DEFAULTS: dict[str, dict[str, Any]] = {
    "schedule": {"timezone": "UTC", "catchup": "latest"},
    "event": {"state": "success"},
    "webhook": {"signature": "none"},
}


@dataclass(frozen=True)
class When:
    """Task conditions; None means "not constrained"; all given must match."""

    branches: tuple[str, ...] | None = None
    events: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None
    paths_ignore: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Trigger:
    type: str
    config: dict[str, Any]  # every key but `type`, with defaults filled in
    pos: Pos


@dataclass(frozen=True)
class Task:
    name: str
    type: str
    image: str | None
    commands: tuple[str, ...]  # empty: the image's default command
    env: dict[str, str]  # the task's own; see Workflow.env_for
    workdir: str | None
    timeout_s: float | None
    retries: int
    needs: tuple[str, ...] | None  # None: not declared
    when: When | None
    secrets: tuple[str, ...]
    artifacts: tuple[str, ...]
    network: str
    labels: tuple[str, ...]  # a runner must have all of them; empty: any runner
    memory_bytes: int | None
    cpus: float | None
    pids: int | None
    config: dict[str, Any]
    pos: Pos
    version_range: str | None = None  # `type: NAME@RANGE`: the plugin versions this task accepts
    # `type: workflow` (controller.workflow.compose): the workflow it runs as a sub-run, the inputs
    # given to it (values as written: strings may hold ${...}), and whether the task waits for it
    workflow: FileRef | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    wait: bool = True


@dataclass(frozen=True)
class Workflow:
    name: str
    version: str | None
    description: str | None
    env: dict[str, str]
    triggers: tuple[Trigger, ...]
    tasks: tuple[Task, ...]
    file: str
    pos: Pos
    source: Located = field(repr=False, compare=False)
    outputs: dict[str, str] = field(default_factory=dict)  # name -> expression, evaluated when the run succeeds

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def env_for(self, task: Task) -> dict[str, str]:
        """Workflow env overlaid with the task's env (unrendered)."""
        return {**self.env, **task.env}

    @property
    def uses_needs(self) -> bool:
        return any(task.needs is not None for task in self.tasks)


def env_value(value: Any) -> str:
    """YAML scalars as env strings: true/false in lower case, numbers as Python prints them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(value or ())


def _maybe(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _task(raw: dict[str, Any], pos: Pos) -> Task:
    when = raw.get("when")
    resources = raw.get("resources") or {}
    return Task(
        name=raw["name"],
        type=raw.get("type", "container"),
        image=raw.get("image"),
        commands=_strings(raw.get("commands")),
        env={k: env_value(v) for k, v in (raw.get("env") or {}).items()},
        workdir=raw.get("workdir"),
        timeout_s=parse_duration(raw["timeout"]) if "timeout" in raw else None,
        retries=raw.get("retries", 0),
        needs=_maybe(raw.get("needs")),
        when=None if when is None else When(_maybe(when.get("branch")), _maybe(when.get("event")),
                                            _maybe(when.get("path")), _maybe(when.get("path_ignore"))),
        secrets=_strings(raw.get("secrets")),
        artifacts=_strings(raw.get("artifacts")),
        network=raw.get("network", "none"),
        labels=_strings(raw.get("labels")),
        memory_bytes=parse_size(resources["memory"]) if "memory" in resources else None,
        cpus=float(resources["cpus"]) if "cpus" in resources else None,
        pids=resources.get("pids"),
        config=copy.deepcopy(raw.get("config") or {}),
        pos=pos,
        workflow=FileRef.parse(raw["workflow"]) if raw.get("type") == "workflow" else None,
        inputs=copy.deepcopy(raw.get("inputs") or {}),
        wait=raw.get("wait", True),
    )


def _trigger(raw: dict[str, Any], pos: Pos) -> Trigger:
    config = {**TRIGGER_DEFAULTS.get(raw["type"], {}), **{k: v for k, v in raw.items() if k != "type"}}
    return Trigger(raw["type"], copy.deepcopy(config), pos)


def build(doc: Located) -> Workflow:
    """The model of a linted document (no errors). Raises on data lint would reject."""
    wf = doc.data["workflow"]
    base = ("workflow",)
    if "triggers" in wf:
        triggers = tuple(_trigger(t, doc.pos(base + ("triggers", i))) for i, t in enumerate(wf["triggers"]))
    else:
        here = doc.key_pos(base)
        triggers = tuple(Trigger(t, {}, here) for t in DEFAULT_TRIGGERS)
    return Workflow(
        name=wf["name"],
        version=wf.get("version"),
        description=wf.get("description"),
        env={k: env_value(v) for k, v in (wf.get("env") or {}).items()},
        triggers=triggers,
        tasks=tuple(_task(t, doc.pos(base + ("tasks", i))) for i, t in enumerate(wf["tasks"])),
        file=doc.file,
        pos=doc.key_pos(base),
        source=doc,
        outputs={k: env_value(v) for k, v in (wf.get("outputs") or {}).items()},
    )
