"""Does a workflow's `triggers` list answer an event? Settled before anything is queued."""

from __future__ import annotations

from typing import Any, Iterable

from controller.workflow import globs
from controller.workflow.model import Trigger, Workflow

DEFAULT_EVENTS = ("push", "pull_request")
SKIP_MARKERS = ("[skip ci]", "[ci skip]", "[no ci]", "[skip clarity]")


def skip_ci(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in SKIP_MARKERS)


def _any(value: str, patterns: Iterable[str]) -> bool:
    return any(globs.match(value, g) for g in patterns)


def _paths_miss(trigger: Trigger, changed: tuple[str, ...] | None) -> str | None:
    include = trigger.config.get("paths")
    exclude = trigger.config.get("paths_ignore") or ()
    if changed is None or (include is None and not exclude):
        return None
    left = [p for p in changed if not _any(p, exclude)]
    if include is not None:
        left = [p for p in left if _any(p, include)]
    if left:
        return None
    return f"no changed file matches paths {_list(include or ['**'])}" + (
        f" outside paths_ignore {_list(exclude)}" if exclude else "")


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(values) + "]"


def _branch_miss(cfg: dict[str, Any], branch: str) -> str | None:
    if "branches" in cfg and not _any(branch, cfg["branches"]):
        return f"branch '{branch}' is not in branches {_list(cfg['branches'])}"
    return None


def _tag_miss(cfg: dict[str, Any], tag: str, required: bool) -> str | None:
    if "tags" not in cfg:
        return "its push trigger lists no `tags`" if required else None
    if not tag:
        return "the commit has no tag"
    if not _any(tag, cfg["tags"]):
        return f"tag '{tag}' is not in tags {_list(cfg['tags'])}"
    return None


def trigger_miss(trigger: Trigger, event: str, branch: str, tag: str, changed: tuple[str, ...] | None) -> str | None:
    """None when the trigger answers the event, else why not (a phrase for the user)."""
    cfg = trigger.config
    if trigger.type == "push" and event == "push":
        if tag:
            return _tag_miss(cfg, tag, required=True)
        if "tags" in cfg and "branches" not in cfg:
            return "it runs on tags only"
        return _branch_miss(cfg, branch) or _paths_miss(trigger, changed)
    if trigger.type == "push" and event == "tag":
        return _tag_miss(cfg, tag, required=True)
    if trigger.type == "tag" and event == "tag":
        return _tag_miss(cfg, tag, required=False)
    if trigger.type == "pull_request" and event == "pull_request":
        return _branch_miss(cfg, branch) or _paths_miss(trigger, changed)
    if trigger.type == "file_watch" and event == "push" and "paths" in cfg:
        # watched repository files: a push (on any branch) that changes one of them
        if _paths_miss(trigger, changed) is None:
            return None
        return f"no changed file matches the watched paths {_list(cfg['paths'])}"
    if trigger.type == event and event in ("manual", "schedule", "webhook", "event", "file_watch"):
        return None
    return f"it is a {trigger.type} trigger"


def trigger_matches(trigger: Trigger, event: str, branch: str, tag: str, changed: tuple[str, ...] | None) -> bool:
    return trigger_miss(trigger, event, branch, tag, changed) is None


def why_not(workflow: Workflow, event: str, branch: str, tag: str, changed: tuple[str, ...] | None) -> str | None:
    """None if the workflow runs for this event, else the reason it does not."""
    if not workflow.triggers:  # `triggers: []` (absent means push + pull_request, filled in by the model)
        return f"it has no triggers (`triggers: []`), so no {event} starts it; name its file to run it"
    misses = [trigger_miss(t, event, branch, tag, changed) for t in workflow.triggers]
    if any(m is None for m in misses):
        return None
    relevant = [m for t, m in zip(workflow.triggers, misses)
                if t.type == event or (t.type == "push" and event == "tag")]
    if relevant:
        return f"no trigger answers this {event}: " + "; ".join(dict.fromkeys(str(m) for m in relevant))
    kinds = sorted({t.type for t in workflow.triggers})
    return f"it has no {event} trigger (its triggers: {', '.join(kinds)})"
