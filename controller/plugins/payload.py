"""Lint warnings for plugin tasks that read the trigger's payload in runs that have none.

A task type may mark, in its manifest, the config key whose data it reads and that falls back to
the trigger's payload when the task does not set it (`x-defaults-to-payload: true` on that key of
its config schema, controller.plugins.manifest.payload_key; on the container side,
plugins.sdk.runtime.data_source). A task without that key works on a webhook's or a custom
event's payload, but fails with `no data to work on` in a run of a push, a schedule, a manual
start... , which brings none. When the workflow has such a trigger, the task gets a warning at
its position, naming the triggers; not an error: the workflow may only ever be run with one
(`clarity run --payload`), and its payload runs still work.

Which runs carry a payload: `webhook` (the POST's body), `event` with a `name` (a custom event's
body; not `event` with a `workflow`, a finished run), and the trigger types of plugins (each poll
returns payloads). The others of Clarity's own types (controller.workflow.schema.TRIGGER_TYPES)
carry none; a workflow without `triggers:` runs on push and pull_request.
"""

from __future__ import annotations

from typing import Any, Mapping

from controller.plugins.registry import Registry
from controller.workflow.diagnostics import Diagnostic, warning
from controller.workflow.load import Located
from controller.workflow.model import DEFAULT_TRIGGERS
from controller.workflow.schema import TRIGGER_TYPES

PAYLOAD_TRIGGERS = frozenset({"webhook", "event"})  # of Clarity's own types; `event` only with a `name`

# the events a trigger's runs have, for a task's `when: {event: [...]}` (controller.triggers.match)
_EVENTS = {"push": ("push", "tag"), "file_watch": ("file_watch", "push")}


def carries_payload(trigger: Mapping[str, Any]) -> bool:
    """Whether the runs this trigger starts have a payload (`${trigger.payload}`)."""
    kind = trigger.get("type")
    if kind == "event":
        return "name" in trigger
    if kind in TRIGGER_TYPES:
        return kind in PAYLOAD_TRIGGERS
    return True  # a plugin's trigger type: its polls return the payloads of its runs


def warnings(doc: Located, registry: Registry) -> list[Diagnostic]:
    """A warning for each plugin task that leaves out its type's payload key in a workflow with
    a trigger whose runs have no payload (and that the task's `when: {event}` lets it run on)."""
    wf = doc.data.get("workflow") if isinstance(doc.data, dict) else None
    if not isinstance(wf, dict) or not isinstance(wf.get("tasks"), list):
        return []
    default = "triggers" not in wf
    triggers = [{"type": t} for t in DEFAULT_TRIGGERS] if default else wf.get("triggers")
    if not isinstance(triggers, list):
        return []
    found: list[Diagnostic] = []
    for i, task in enumerate(wf["tasks"]):
        key = _payload_key(task, registry)
        if key is None:
            continue
        runs_on = _when_events(task)
        without = _labels(t for t in triggers if isinstance(t, dict) and not carries_payload(t)
                          and (runs_on is None or not runs_on.isdisjoint(_events(t))))
        if not without:
            continue
        with_payload = [str(t.get("type")) for t in triggers if isinstance(t, dict) and carries_payload(t)]
        found.append(warning(doc.pos(("workflow", "tasks", i)), _message(task["name"], key, without, default),
                             _hint(key, without, with_payload)))
    return found


def _payload_key(task: Any, registry: Registry) -> str | None:
    """The payload key of the task's type, when the task does not set it."""
    if not isinstance(task, dict) or not isinstance(task.get("type"), str) or not isinstance(task.get("name"), str):
        return None
    kind = task["type"].partition("@")[0]
    found = registry.task_type(kind)
    if found is None:
        return None
    decl = found[0].manifest.task_types.get(kind)
    config = task.get("config")
    if decl is None or decl.payload_key is None or not isinstance(config, dict) or decl.payload_key in config:
        return None
    return decl.payload_key


def _events(trigger: Mapping[str, Any]) -> tuple[str, ...]:
    kind = str(trigger.get("type"))
    return _EVENTS.get(kind, (kind,))


def _when_events(task: Mapping[str, Any]) -> frozenset[str] | None:
    """The events a task's `when` lets it run on (None: any)."""
    when = task.get("when")
    events = when.get("event") if isinstance(when, dict) else None
    if isinstance(events, str):
        return frozenset({events})
    return frozenset(str(e) for e in events) if isinstance(events, list) else None


def _labels(triggers: Any) -> list[str]:
    """Trigger types as a reader knows them, each once, in the file's order."""
    labels = [f"{t['type']} (on workflow '{t['workflow']}' finishing)" if t.get("type") == "event" and "workflow" in t
              else str(t.get("type")) for t in triggers]
    return list(dict.fromkeys(labels))


def _message(task: str, key: str, without: list[str], default: bool) -> str:
    if len(without) == 1:
        runs = f"{'an' if without[0][0] in 'aeiou' else 'a'} {without[0]} run has none"
    else:
        runs = f"{', '.join(without[:-1])} and {without[-1]} runs have none"
    if default:
        runs += " (a workflow without triggers: runs on push and pull_request)"
    return f"'{task}' reads the trigger's payload (no {key}:), but {runs} and this task will fail then"


def _hint(key: str, without: list[str], with_payload: list[str]) -> str:
    data = f"set {key}: (a workspace file ./data.json, an inline value or ${{tasks.NAME.output}})"
    if not with_payload:
        return f"{data}, or give the workflow a trigger that brings a payload (webhook, or event with a name)"
    events = ", ".join(dict.fromkeys(with_payload))
    drop = f"drop the {' and '.join(t.split(' ')[0] for t in without)} trigger{'s' if len(without) > 1 else ''}"
    return f"{data}; or {drop}; or add when: {{event: [{events}]}} to this task and to the tasks that use its output"
