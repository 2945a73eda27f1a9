"""Neutral trigger events: what every trigger source produces, whatever noticed the change.

Forge webhooks produce them today; git polling and schedules will produce the same types, so
the one write path that creates runs never learns which forge (or poller) spoke. Nothing here
names a forge: forge payloads are read in `controller.forges` and end as one of these.

Values are plain text as the forge sent it (a branch name is untrusted data, never shell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Union

HEADS = "refs/heads/"
TAGS = "refs/tags/"

PullRequestAction = Literal["opened", "synchronize", "reopened", "closed", "other"]
# Actions that put commits on the head CI has not seen: the only ones that start runs.
CODE_ACTIONS: frozenset[str] = frozenset({"opened", "synchronize", "reopened"})


def is_zero_sha(sha: str) -> bool:
    """The all-zero id git and the forges use for 'no commit' (SHA-1 or SHA-256 length)."""
    return bool(sha) and set(sha) == {"0"}


@dataclass(frozen=True)
class PushEvent:
    repo: str  # forge owner/repo (GitLab: group/subgroup/project)
    ref: str  # refs/heads/x | refs/tags/v1
    before: str  # all zeros when the ref was created
    after: str  # all zeros when the ref was deleted
    created: bool
    deleted: bool  # nothing to check out: must not start a run
    message: str  # head commit message ("" when the payload has no head commit)
    author: str  # head commit author name
    sender: str  # forge login of whoever pushed
    changed_files: tuple[str, ...] | None  # None when the payload does not say (all of it)
    clone_url: str

    @property
    def branch(self) -> str:
        """The branch name, "" for a tag (as `controller.triggers.match` expects)."""
        return self.ref[len(HEADS):] if self.ref.startswith(HEADS) else ""

    @property
    def tag(self) -> str:
        return self.ref[len(TAGS):] if self.ref.startswith(TAGS) else ""

    @property
    def is_tag(self) -> bool:
        return self.ref.startswith(TAGS)


@dataclass(frozen=True)
class PullRequestEvent:
    repo: str  # the base (target) repository
    action: PullRequestAction  # normalized across forges; see CODE_ACTIONS
    number: int  # GitHub/Gitea number, GitLab iid: what the forge shows as #N / !N
    title: str
    head_sha: str  # the commit to build
    head_ref: str  # source branch name (in the head repository)
    base_ref: str  # target branch name
    fork: bool  # head repository differs from base: treat as untrusted (no secrets)
    sender: str
    clone_url: str  # base repository
    head_clone_url: str  # where head_sha lives (equals clone_url unless fork)

    @property
    def updates_code(self) -> bool:
        return self.action in CODE_ACTIONS


@dataclass(frozen=True)
class PingEvent:
    """A forge checking the hook works (GitHub `ping`): answered, starts nothing."""

    repo: str | None  # None for organisation-wide hooks


Event = Union[PushEvent, PullRequestEvent, PingEvent]


@dataclass(frozen=True)
class Delivery:
    """One raw webhook delivery, its headers read; `payload` is untrusted until verified.

    `delivery_id` is the forge's id for this delivery, stable across the forge's retries and
    redeliveries: the key that makes a delivery seen twice create one run.
    """

    forge: str  # key of controller.forges.FORGES
    delivery_id: str
    event_name: str  # the forge's event header, verbatim ("push", "Merge Request Hook")
    repo: str | None  # owner/repo named by the payload, to look up the repo's secret
    payload: dict[str, Any]
