"""Forges: their webhooks read, authenticated and turned into neutral trigger events.

`FORGES` maps the name in `POST /api/v1/hooks/{name}` to the forge that reads it. The forge
objects are stateless, so one shared instance each is safe.
"""

from __future__ import annotations

from controller.forges.base import BadDelivery, Forge, HookError, Unauthorized
from controller.forges.gitea import Gitea
from controller.forges.github import GitHub
from controller.forges.gitlab import GitLab

FORGES: dict[str, Forge] = {forge.name: forge for forge in (GitHub(), GitLab(), Gitea())}


def not_acted_on(event_name: str, payload: object) -> str:
    """Why an authentic delivery starts nothing: its event, and its action when it has one (a pull
    request `labeled` brings no new code; `opened`, `synchronize`, `reopened` do)."""
    action = None
    if isinstance(payload, dict):
        action = payload.get("action")
        attributes = payload.get("object_attributes")  # GitLab's merge requests
        if action is None and isinstance(attributes, dict):
            action = attributes.get("action")
    if isinstance(action, str) and action:
        return f"Clarity does not act on {event_name!r} events with action {action!r}"
    return f"Clarity does not act on {event_name!r} events"


__all__ = ["FORGES", "not_acted_on", "BadDelivery", "Forge", "HookError", "Unauthorized", "GitHub", "GitLab", "Gitea"]
