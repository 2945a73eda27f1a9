"""GitLab: commit statuses through python-gitlab.

`POST {instance}/api/v4/projects/{id}/statuses/{sha}`, where python-gitlab URL-encodes the
project path (`group/sub/name` -> `group%2Fsub%2Fname`), with `PRIVATE-TOKEN` and a JSON body
`{state, name, description, target_url?, ref?}`.

- A 400 "Cannot transition status via :run from :running" (GitLab refuses to enter the state a
  status is already in, e.g. `running` twice, or `pending` after `running`) means the status
  already shows as much: sent. The one refusal that would leave a status running for good,
  `skipped` after `running`, is sent again as `success`.
- `skipped` refused by an older GitLab (400 "state does not have a valid value") is sent again
  as `success`, as GitHub and Gitea show it.
- `target_url` over GitLab's 255 characters is left out: a cut URL is a broken link.
- No retries inside python-gitlab (`obey_rate_limit=False`, `retry_transient_errors=False`).
  Its exceptions drop the response headers, so a session hook keeps them for `Retry-After` and
  `RateLimit-Reset`.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import gitlab
import requests
from gitlab.exceptions import GitlabError

from controller.forges.report import (
    Rejected, Status, Target, describe, forge_message, gitlab_state, http_error, scrub, transport_error,
)

FORGE = "GitLab"
URL_LIMIT = 255  # target_url and ref, per the API documentation


def instance_url(api_url: str) -> str:
    """`https://gitlab.example` from itself or from `https://gitlab.example/api/v4`."""
    url = api_url.rstrip("/")
    return url[: -len("/api/v4")] if url.endswith("/api/v4") else url


def payload(status: Status) -> dict[str, Any]:
    data: dict[str, Any] = {"state": gitlab_state(status.state), "name": status.context,
                            "description": describe(status.description)}
    if status.target_url and len(status.target_url) <= URL_LIMIT:
        data["target_url"] = status.target_url
    if status.ref:
        data["ref"] = status.ref
    return data


class GitLabStatuses:
    """Commit statuses on one GitLab instance. `handle` is unused (always None)."""

    def __init__(self, target: Target, *, timeout: float = 10.0) -> None:
        if not target.token:
            raise ValueError("GitLab commit statuses need a token")
        self._token = target.token
        self._last = threading.local()  # the headers of this thread's last response
        session = requests.Session()
        session.hooks["response"].append(self._keep_headers)
        self._gl = gitlab.Gitlab(instance_url(target.api_url), private_token=target.token, timeout=timeout,
                                 session=session, retry_transient_errors=False)

    def send(self, status: Status, handle: str | None = None) -> None:
        data = payload(status)
        try:
            taken = self._post(status, data)
        except Rejected as exc:
            if data["state"] != "skipped" or "does not have a valid value" not in exc.message:
                raise
            taken = False
        if not taken and data["state"] == "skipped":
            self._post(status, {**data, "state": "success"})
        return None

    def close(self) -> None:
        self._gl.session.close()

    def _post(self, status: Status, data: dict[str, Any]) -> bool:
        """True when GitLab took the state, False when it refused the transition."""
        self._last.headers = {}
        try:
            commit = self._gl.projects.get(status.repo, lazy=True).commits.get(status.sha, lazy=True)
            commit.statuses.create(data, obey_rate_limit=False, max_retries=0)
        except GitlabError as exc:
            message = error_text(exc)
            if exc.response_code is None:  # a redirect of the POST, or a body that is not JSON
                raise Rejected(scrub(f"GitLab did not take the status {status.where()}: {message} "
                                     f"(is {self._gl.url} the GitLab API?)", self._token)) from exc
            if exc.response_code == 400 and "cannot transition status" in message.lower():
                return False
            raise http_error(FORGE, status, exc.response_code, self._last.headers, message, self._token) from exc
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise transport_error(FORGE, status, exc, self._token) from exc
        except requests.RequestException as exc:
            raise Rejected(scrub(f"cannot send to GitLab for {status.where()}: {exc}", self._token)) from exc
        return True

    def _keep_headers(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last.headers = dict(response.headers)


def error_text(exc: GitlabError) -> str:
    """GitLab's message: `message` or `error` of the JSON body, else python-gitlab's text."""
    body = exc.response_body
    if body:
        try:
            return forge_message(json.loads(body))
        except (ValueError, TypeError):
            pass
    return forge_message(exc.error_message)
