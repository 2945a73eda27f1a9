"""GitLab webhooks: the `X-Gitlab-Token` secret, Push / Tag Push / Merge Request hooks.

GitLab does not sign: it sends the secret token itself, so "verify" is a constant-time
comparison of that header with the repository's secret (use HTTPS). The newer Standard-Webhooks
signing token (`webhook-signature`) is not read yet.

Delivery id: `Idempotency-Key` (kept by GitLab across retries and resends), else
`X-Gitlab-Event-UUID`, else a sha256 of the body (see `base.read_delivery`).

Merge request actions: open/reopen -> opened/reopened; update -> synchronize only when it
carries `oldrev` (new commits), an update without one (title, labels, assignee) is ignored;
close and merge -> closed. Ignored (None): other actions, and every other hook (Note, Issue,
Pipeline, System Hook...).
"""

from __future__ import annotations

from typing import Any, Mapping

from controller.forges.base import Unauthorized, header, read_delivery, require_secret, same
from controller.forges.payload import changed_files, commit_list, cut, get, head_commit, need_int, need_text, text
from controller.triggers.events import Delivery, Event, PullRequestAction, PullRequestEvent, PushEvent, is_zero_sha

TOKEN = "X-Gitlab-Token"
PUSH_HOOKS = ("Push Hook", "Tag Push Hook")

ACTIONS: dict[str, PullRequestAction] = {
    "open": "opened", "reopen": "reopened", "update": "synchronize", "close": "closed", "merge": "closed",
}


class GitLab:
    name = "gitlab"

    def delivery(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        return read_delivery(self.name, headers, body, event_headers=("X-Gitlab-Event",),
                             id_headers=("Idempotency-Key", "X-Gitlab-Event-UUID"),
                             repo_path=("project", "path_with_namespace"))

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> None:
        key = require_secret(secret, "GitLab")
        token = header(headers, TOKEN)
        if token is None:
            raise Unauthorized(f"missing {TOKEN} header: set the secret token on the GitLab webhook")
        if not same(token, key):
            raise Unauthorized(f"{TOKEN} does not match this repository's secret")

    def parse(self, delivery: Delivery) -> Event | None:
        if delivery.event_name in PUSH_HOOKS:
            return push_event(delivery.payload)
        if delivery.event_name == "Merge Request Hook":
            return merge_request_event(delivery.payload)
        return None


def push_event(payload: dict[str, Any]) -> PushEvent:
    before, after = need_text(payload, "before"), need_text(payload, "after")
    created, deleted = is_zero_sha(before), is_zero_sha(after)
    # No head_commit in GitLab pushes; checkout_sha is the commit when `after` is a tag object.
    head = head_commit(payload, text(payload, "checkout_sha"), after)
    partial = cut(payload, "total_commits_count")  # only the newest 20 commits are listed
    return PushEvent(
        repo=need_text(payload, "project", "path_with_namespace"),
        ref=need_text(payload, "ref"),
        before=before,
        after=after,
        created=created,
        deleted=deleted,
        message=text(head, "message"),
        author=text(head, "author", "name"),
        sender=text(payload, "user_username") or text(payload, "user_name"),
        changed_files=None if created or deleted else changed_files(commit_list(payload), partial=partial),
        clone_url=text(payload, "project", "git_http_url") or text(payload, "repository", "git_http_url"),
    )


def merge_request_event(payload: dict[str, Any]) -> PullRequestEvent | None:
    mr = get(payload, "object_attributes")
    action = ACTIONS.get(text(mr, "action"))
    if action is None or (action == "synchronize" and not text(mr, "oldrev")):
        return None
    clone_url = text(payload, "project", "git_http_url") or text(mr, "target", "git_http_url")
    return PullRequestEvent(
        repo=need_text(payload, "project", "path_with_namespace"),
        action=action,
        number=need_int(payload, "object_attributes", "iid"),
        title=text(mr, "title"),
        head_sha=need_text(payload, "object_attributes", "last_commit", "id"),
        head_ref=text(mr, "source_branch"),
        base_ref=need_text(payload, "object_attributes", "target_branch"),
        fork=_fork(mr),
        sender=text(payload, "user", "username"),
        clone_url=clone_url,
        head_clone_url=text(mr, "source", "git_http_url") or clone_url,
    )


def _fork(mr: Any) -> bool:
    source, target = get(mr, "source_project_id"), get(mr, "target_project_id")
    if isinstance(source, int) and isinstance(target, int):
        return source != target
    # Without ids, a fork on any doubt: fork code gets no secrets.
    names = text(mr, "source", "path_with_namespace"), text(mr, "target", "path_with_namespace")
    return not names[0] or names[0] != names[1]
