"""Typed reads from a forge's JSON payload, shared by the forge modules.

Payload shapes drift between forge versions, so optional fields read as "" / None rather than
raising, and only the fields an event cannot do without raise `BadDelivery(422)`.
"""

from __future__ import annotations

from typing import Any, Iterable

from controller.forges.base import BadDelivery

UNPROCESSABLE = 422
# GitHub puts at most 2048 commits in a push payload and sends no total to compare with.
GITHUB_MAX_COMMITS = 2048


def get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def text(data: Any, *path: str) -> str:
    value = get(data, *path)
    return value if isinstance(value, str) else ""


def flag(data: Any, *path: str) -> bool:
    return get(data, *path) is True


def need_text(data: Any, *path: str) -> str:
    value = get(data, *path)
    if not isinstance(value, str) or not value:
        raise BadDelivery(f"payload has no {'.'.join(path)}", UNPROCESSABLE)
    return value


def need_int(data: Any, *path: str) -> int:
    value = get(data, *path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadDelivery(f"payload has no number {'.'.join(path)}", UNPROCESSABLE)
    return value


def commit_list(payload: Any) -> list[dict[str, Any]]:
    commits = get(payload, "commits")
    return [c for c in commits if isinstance(c, dict)] if isinstance(commits, list) else []


def head_commit(payload: Any, *shas: str) -> dict[str, Any]:
    """`head_commit` when sent (GitHub, Gitea), else the listed commit with one of `shas`
    (GitLab sends none), else the last listed commit, else {}."""
    head = get(payload, "head_commit")
    if isinstance(head, dict):
        return head
    commits = commit_list(payload)
    for commit in commits:
        if commit.get("id") in shas:
            return commit
    return commits[-1] if commits else {}


def changed_files(commits: list[dict[str, Any]], *, partial: bool) -> tuple[str, ...] | None:
    """Union of added/modified/removed over the listed commits; None when the list may not be
    the whole push: `partial` (the forge cut the list), no commits listed (ref created or
    rewound), a commit without file lists. None means "unknown", so path filters let the run
    through instead of skipping it on partial data."""
    if partial or not commits:
        return None
    files: set[str] = set()
    for commit in commits:
        for key in ("added", "modified", "removed"):
            listed = commit.get(key)
            if not isinstance(listed, list):
                return None
            files.update(_paths(listed))
    return tuple(sorted(files))


def _paths(values: Iterable[Any]) -> Iterable[str]:
    return (v for v in values if isinstance(v, str) and v)


def cut(payload: Any, total_key: str) -> bool:
    """More commits were pushed than listed (GitLab keeps the newest 20 of `total_commits_count`)."""
    total = get(payload, total_key)
    return isinstance(total, int) and total > len(commit_list(payload))
