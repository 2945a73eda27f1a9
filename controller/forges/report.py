"""Reporting a run's state to the forge: commit statuses and check runs, forge-neutral part.

The caller (an outbox) builds a `Status` per (commit, context) and hands it to the `Reporter` of
the repository's `Target`:

    handle = reporter(target).send(status, handle)   # handle: persist it with (sha, context)

- `send` does one attempt and no retries of its own: `Retry` says "try again later" (after
  `retry_after` seconds when the forge said so), `Rejected` says "this will never be accepted"
  (bad token, unknown repository or commit, validation). Messages carry the forge's own words and
  never a token or key.
- The handle is opaque. Commit-status reporters return None; the GitHub App reporter returns the
  check run id, and updates that check run when it is passed back. Pass None to start a new one
  (a re-run of the same commit and context wants a fresh check run).
- `Target.api_url`: `https://api.github.com` (GitHub Enterprise: `https://HOST/api/v3`); for
  GitLab the instance URL, `https://gitlab.example` (a trailing `/api/v4` is accepted and
  dropped); for Gitea `https://gitea.example/api/v1`.

State names differ per forge; the tables below follow `shared/fixtures/forge-api/SOURCES.md`.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Protocol, get_args

State = Literal["queued", "running", "success", "failure", "error", "canceled", "skipped"]
STATES: tuple[State, ...] = get_args(State)
ForgeKind = Literal["github", "gitlab", "gitea"]
FORGE_KINDS: tuple[ForgeKind, ...] = get_args(ForgeKind)

DESCRIPTION_LIMIT = 140  # GitHub's live limit (422 above it); used for every forge
CHECK_TEXT_LIMIT = 65535  # check run output.summary / output.text
SECONDARY_RATE_LIMIT_WAIT = 60.0  # GitHub: "wait at least one minute" when it gives no header


@dataclass(frozen=True)
class CheckDetails:
    """What a GitHub check run shows besides its state: a title and markdown text (both cut to
    65535 characters when sent)."""

    title: str
    summary: str
    text: str | None = None


@dataclass(frozen=True)
class Status:
    """One state of one (commit, context) to show on the forge.

    `repo` is the forge's path: `owner/name`, or for GitLab `group/sub/name` (a numeric project
    id as text works too). `description` is cut to 140 code points when sent. `check` is used
    only by GitHub check runs; `ref` only by GitLab (the branch or tag the status belongs to).
    """

    state: State
    context: str
    description: str
    target_url: str | None
    sha: str
    repo: str
    check: CheckDetails | None = None
    ref: str | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown state {self.state!r}: one of {', '.join(STATES)}")
        if not self.context:
            raise ValueError("a status needs a context (e.g. clarity/ci)")

    def where(self) -> str:
        return f"{self.context!r} on {self.repo}@{self.sha[:12]}"


@dataclass(frozen=True)
class Target:
    """Where and as whom to report. GitHub: a `token`, or a GitHub App (`app_id` + PEM
    `private_key`, with `installation_id` looked up from the repository when None) which
    reports check runs instead of commit statuses. GitLab and Gitea: a `token`."""

    forge: ForgeKind
    api_url: str
    token: str | None = field(default=None, repr=False)
    app_id: int | None = None
    private_key: str | None = field(default=None, repr=False)
    installation_id: int | None = None

    def __post_init__(self) -> None:
        if self.forge not in FORGE_KINDS:
            raise ValueError(f"unknown forge {self.forge!r}: one of {', '.join(FORGE_KINDS)}")
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"api_url must be an http(s) URL, not {self.api_url!r}")
        if (self.app_id is None) != (self.private_key is None):
            raise ValueError("a GitHub App needs both app_id and private_key")
        if self.app_id is not None and self.forge != "github":
            raise ValueError("app_id / private_key are for GitHub Apps only")
        if not self.token and not self.is_app:
            raise ValueError(f"a {self.forge} target needs a token" + (" or a GitHub App" if self.forge == "github" else ""))

    @property
    def is_app(self) -> bool:
        return self.app_id is not None


class ReportError(Exception):
    """Sending a status failed. `status` is the forge's HTTP status, None when none came."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Retry(ReportError):
    """A passing failure (connection, timeout, 5xx, 429, rate limit): send again later,
    not before `retry_after` seconds when it is not None."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class Rejected(ReportError):
    """The forge refuses this status for good (401, 403, 404, 422...): sending it again is useless."""


class Reporter(Protocol):
    """Sends statuses to one forge target. Safe to share between threads."""

    def send(self, status: Status, handle: str | None = None) -> str | None:
        """One attempt. Returns the handle to pass with the next status of the same
        (sha, context), or None when there is nothing to keep. Raises `Retry` or `Rejected`."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def reporter(target: Target, *, timeout: float = 10.0, write_interval: float | None = 1.0) -> Reporter:
    """The reporter for `target`: GitHub commit statuses (token) or check runs (App), GitLab
    commit statuses, Gitea commit statuses. `timeout` is per HTTP request; `write_interval`
    (GitHub only) spaces writes from one client, as GitHub asks (None: no spacing)."""
    # Imported here: the implementations import this module.
    if target.forge == "github":
        from controller.forges.github_status import GitHubChecks, GitHubStatuses
        cls = GitHubChecks if target.is_app else GitHubStatuses
        return cls(target, timeout=timeout, write_interval=write_interval)
    if target.forge == "gitlab":
        from controller.forges.gitlab_status import GitLabStatuses
        return GitLabStatuses(target, timeout=timeout)
    from controller.forges.gitea_status import GiteaStatuses
    return GiteaStatuses(target, timeout=timeout)


# --- text ---------------------------------------------------------------------------------


def describe(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """`text` cut to at most `limit` Unicode code points, ending with "…" when cut."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every non-empty secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# --- state names (SOURCES.md, "State names side by side") -----------------------------------

GITHUB_STATUS: dict[State, str] = {
    "queued": "pending", "running": "pending", "success": "success", "failure": "failure",
    "error": "error", "canceled": "error", "skipped": "success",
}
# (status, conclusion); conclusion only with "completed".
GITHUB_CHECK: dict[State, tuple[str, str | None]] = {
    "queued": ("queued", None), "running": ("in_progress", None),
    "success": ("completed", "success"), "failure": ("completed", "failure"),
    "error": ("completed", "failure"), "canceled": ("completed", "cancelled"),
    "skipped": ("completed", "skipped"),
}
# `skipped` exists since GitLab 15-ish; older servers answer 400 and get `success` instead.
GITLAB_STATE: dict[State, str] = {
    "queued": "pending", "running": "running", "success": "success", "failure": "failed",
    "error": "failed", "canceled": "canceled", "skipped": "skipped",
}
# Gitea's `skipped` is recent (not in the swagger of the fixtures): `success`, as on GitHub.
GITEA_STATE: dict[State, str] = {
    "queued": "pending", "running": "pending", "success": "success", "failure": "failure",
    "error": "error", "canceled": "error", "skipped": "success",
}


def github_status_state(state: State) -> str:
    return GITHUB_STATUS[state]


def github_check_state(state: State) -> tuple[str, str | None]:
    return GITHUB_CHECK[state]


def gitlab_state(state: State) -> str:
    return GITLAB_STATE[state]


def gitea_state(state: State) -> str:
    return GITEA_STATE[state]


# --- HTTP answers to errors -----------------------------------------------------------------

HINTS = {
    401: "the token (or App key) is wrong, expired or revoked",
    403: "the token may not write statuses to this repository",
    404: "unknown repository or commit, or the token cannot see it",
}


def forge_message(data: Any, limit: int = 500) -> str:
    """The readable part of an error body: `message` (GitHub, GitLab, Gitea) or `error`
    (GitLab parameter errors), plus GitHub's `errors[].message`."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8", "replace")
    if not isinstance(data, dict):
        return describe(" ".join(str(data or "").split()), limit)
    parts: list[str] = []
    for key in ("message", "error"):
        value = data.get(key)
        if value:
            parts.append(value if isinstance(value, str) else _flatten(value))
    for item in data.get("errors") or ():
        if isinstance(item, dict):
            text = item.get("message") or " ".join(str(item[k]) for k in ("field", "code") if item.get(k))
            if text:
                parts.append(str(text))
        elif item:
            parts.append(str(item))
    return describe("; ".join(parts) or "(no message)", limit)


def _flatten(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} {_flatten(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flatten(v) for v in value)
    return str(value)


def retry_after(headers: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date), else from an exhausted
    `X-RateLimit-Reset` / `RateLimit-Reset` (epoch seconds); None when neither says."""
    h = {k.lower(): str(v).strip() for k, v in headers.items()}
    now = time.time() if now is None else now
    value = h.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    for prefix in ("x-ratelimit-", "ratelimit-"):
        reset = h.get(prefix + "reset")
        if reset and h.get(prefix + "remaining") == "0":
            try:
                return max(0.0, float(reset) - now)
            except ValueError:
                pass
    return None


def http_error(forge: str, status: Status, code: int, headers: Mapping[str, Any], message: str,
               *secrets: str | None) -> ReportError:
    """The `Retry` or `Rejected` for an HTTP error answer of `forge` to `status`."""
    h = {k.lower(): str(v) for k, v in headers.items()}
    wait = retry_after(h)
    text = scrub(f"{forge} answered {code} to the status {status.where()}: {message}", *secrets)
    rate_limited = code == 403 and (h.get("x-ratelimit-remaining") == "0" or "retry-after" in h
                                    or "rate limit" in message.lower())
    if rate_limited:
        return Retry(text, SECONDARY_RATE_LIMIT_WAIT if wait is None else wait, code)
    if code in (408, 425, 429) or code >= 500:
        return Retry(text, wait, code)
    hint = HINTS.get(code)
    return Rejected(text + (f" ({hint})" if hint else ""), code)


def transport_error(forge: str, status: Status, exc: BaseException, *secrets: str | None) -> Retry:
    """A connection error or timeout: worth another try."""
    detail = scrub(f"{type(exc).__name__}: {exc}", *secrets)
    return Retry(f"could not reach {forge} for the status {status.where()}: {describe(detail, 300)}")
