"""Does a workflow's `triggers` list answer an event? Settled before anything is queued."""

from __future__ import annotations

from typing import Iterable

from controller.workflow import globs
from controller.workflow.model import Trigger, Workflow

DEFAULT_EVENTS = ("push", "pull_request")
SKIP_MARKERS = ("[skip ci]", "[ci skip]", "[no ci]", "[skip clarity]")


def skip_ci(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in SKIP_MARKERS)


def _any(value: str, patterns: Iterable[str]) -> bool:
    return any(globs.match(value, g) for g in patterns)


def _paths_match(trigger: Trigger, changed: tuple[str, ...] | None) -> bool:
    include = trigger.config.get("paths")
    exclude = trigger.config.get("paths_ignore") or ()
    if changed is None or (include is None and not exclude):
        return True
    left = [p for p in changed if not _any(p, exclude)]
    if include is not None:
        left = [p for p in left if _any(p, include)]
    return bool(left)


def trigger_matches(trigger: Trigger, event: str, branch: str, tag: str, changed: tuple[str, ...] | None) -> bool:
    cfg = trigger.config
    if trigger.type == "push" and event == "push":
        if tag:
            return "tags" in cfg and _any(tag, cfg["tags"])
        if "branches" in cfg and not _any(branch, cfg["branches"]):
            return False
        if "tags" in cfg and "branches" not in cfg:
            return False
        return _paths_match(trigger, changed)
    if trigger.type == "push" and event == "tag":
        return "tags" in cfg and _any(tag, cfg["tags"])
    if trigger.type == "tag" and event == "tag":
        return "tags" not in cfg or _any(tag, cfg["tags"])
    if trigger.type == "pull_request" and event == "pull_request":
        if "branches" in cfg and not _any(branch, cfg["branches"]):
            return False
        return _paths_match(trigger, changed)
    return trigger.type == event and event in ("manual", "schedule", "webhook", "event", "file_watch")


def why_not(workflow: Workflow, event: str, branch: str, tag: str, changed: tuple[str, ...] | None) -> str | None:
    """None if the workflow runs for this event, else the reason it does not."""
    if not workflow.triggers:  # `triggers: []` (absent means push + pull_request, filled in by the model)
        return f"it has no triggers (`triggers: []`), so no {event} starts it; name its file to run it"
    for trigger in workflow.triggers:
        if trigger_matches(trigger, event, branch, tag, changed):
            return None
    kinds = sorted({t.type for t in workflow.triggers})
    return f"no trigger matches this {event} (its triggers: {', '.join(kinds)})"
