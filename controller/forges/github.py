"""GitHub webhooks: `X-Hub-Signature-256` HMAC, and the push / pull_request / ping events.

The payload readers here are shared with Gitea, whose payloads copy GitHub's shape.

Ignored on purpose (parse returns None):
- `create`: GitHub sends it *and* a `push` (created: true) for every new tag or branch; the
  push carries the SHA, `create` carries none. Acting on both would run twice.
- `delete`: the matching push has `deleted: true`, which is the event Clarity keeps.
- pull_request actions that bring no new code (labeled, edited, assigned, review_requested...).
- every other event (issues, comments, releases, check runs...).
"""

from __future__ import annotations

from typing import Any, Mapping

from controller.forges.base import check_hmac_sha256, header, read_delivery, require_secret
from controller.forges.payload import (
    GITHUB_MAX_COMMITS, changed_files, commit_list, flag, get, head_commit, need_int, need_text, text,
)
from controller.triggers.events import (
    Delivery, Event, PingEvent, PullRequestAction, PullRequestEvent, PushEvent, is_zero_sha,
)

SIGNATURE = "X-Hub-Signature-256"

# `closed` is kept (merged or not) so a later consumer can cancel the PR's runs.
ACTIONS: dict[str, PullRequestAction] = {
    "opened": "opened", "synchronize": "synchronize", "reopened": "reopened", "closed": "closed",
}


class GitHub:
    name = "github"

    def delivery(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        return read_delivery(self.name, headers, body, event_headers=("X-GitHub-Event",),
                             id_headers=("X-GitHub-Delivery",), repo_path=("repository", "full_name"))

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> None:
        key = require_secret(secret, "GitHub")
        # The legacy SHA-1 X-Hub-Signature is never accepted in its place.
        check_hmac_sha256(header(headers, SIGNATURE), body, key, header_name=SIGNATURE, prefix="sha256=")

    def parse(self, delivery: Delivery) -> Event | None:
        payload = delivery.payload
        if delivery.event_name == "push":
            # No total is sent; a full list may have been cut. A forced push may have dropped
            # commits that the list does not show.
            partial = flag(payload, "forced") or len(commit_list(payload)) >= GITHUB_MAX_COMMITS
            return push_event(payload, partial=partial)
        if delivery.event_name == "pull_request":
            return pull_request_event(payload, ACTIONS)
        if delivery.event_name == "ping":
            return PingEvent(repo=delivery.repo)
        return None


def push_event(payload: dict[str, Any], *, partial: bool) -> PushEvent:
    """A GitHub-shaped push: `repository.full_name`, `ref`, `before`/`after`, `commits`."""
    before, after = need_text(payload, "before"), need_text(payload, "after")
    created = flag(payload, "created") or is_zero_sha(before)
    deleted = flag(payload, "deleted") or is_zero_sha(after)
    head = head_commit(payload, after)
    commits = commit_list(payload)
    # A new ref has no "before" to diff with: its commits do not tell what changed.
    changed = None if created or deleted else changed_files(commits, partial=partial)
    return PushEvent(
        repo=need_text(payload, "repository", "full_name"),
        ref=need_text(payload, "ref"),
        before=before,
        after=after,
        created=created,
        deleted=deleted,
        message=text(head, "message"),
        author=text(head, "author", "name"),
        sender=text(payload, "sender", "login") or text(payload, "pusher", "name"),
        changed_files=changed,
        clone_url=text(payload, "repository", "clone_url"),
    )


def pull_request_event(payload: dict[str, Any], actions: Mapping[str, PullRequestAction]) -> PullRequestEvent | None:
    """A GitHub-shaped pull_request, or None for an action not in `actions`."""
    action = actions.get(text(payload, "action"))
    if action is None:
        return None
    pr = get(payload, "pull_request")
    number = get(payload, "number")
    clone_url = text(pr, "base", "repo", "clone_url") or text(payload, "repository", "clone_url")
    head_repo = get(pr, "head", "repo")
    return PullRequestEvent(
        repo=need_text(payload, "repository", "full_name"),
        action=action,
        number=number if isinstance(number, int) and not isinstance(number, bool)
        else need_int(payload, "pull_request", "number"),
        title=text(pr, "title"),
        head_sha=need_text(payload, "pull_request", "head", "sha"),
        head_ref=text(pr, "head", "ref"),
        base_ref=need_text(payload, "pull_request", "base", "ref"),
        fork=is_fork(head_repo, get(pr, "base", "repo") or get(payload, "repository")),
        sender=text(payload, "sender", "login"),
        clone_url=clone_url,
        # A deleted fork leaves head.repo null; the base keeps refs/pull/N/head to fetch from.
        head_clone_url=text(head_repo, "clone_url") or clone_url,
    )


def is_fork(head: Any, base: Any) -> bool:
    """Head and base differ by full name or id. On any doubt (head repo gone) it is a fork:
    fork code is untrusted, and treating a same-repo PR as a fork only withholds secrets."""
    if not isinstance(head, dict) or not isinstance(base, dict):
        return True
    if text(head, "full_name") != text(base, "full_name") or not text(head, "full_name"):
        return True
    head_id, base_id = head.get("id"), base.get("id")
    return isinstance(head_id, int) and isinstance(base_id, int) and head_id != base_id
