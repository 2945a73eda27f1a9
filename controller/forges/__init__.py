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

__all__ = ["FORGES", "BadDelivery", "Forge", "HookError", "Unauthorized", "GitHub", "GitLab", "Gitea"]
