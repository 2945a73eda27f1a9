"""Gitea (and Forgejo): commit statuses through httpx.

`POST {api_url}/repos/{owner}/{repo}/statuses/{sha}` (api_url ends in `/api/v1`) with
`Authorization: token <token>` and `{state, context, description, target_url?}`; 201 on success.
Redirects are not followed: a POST redirected becomes a GET elsewhere, so it is refused with
the URL to configure instead.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from controller.forges.report import (
    Rejected, Status, Target, describe, forge_message, gitea_state, http_error, scrub, transport_error,
)

FORGE = "Gitea"


class GiteaStatuses:
    """Commit statuses on one Gitea instance. `handle` is unused (always None)."""

    def __init__(self, target: Target, *, timeout: float = 10.0) -> None:
        if not target.token:
            raise ValueError("Gitea commit statuses need a token")
        self._token = target.token
        self._client = httpx.Client(base_url=target.api_url.rstrip("/"), timeout=timeout, follow_redirects=False,
                                    headers={"Authorization": f"token {target.token}", "Accept": "application/json"})

    def send(self, status: Status, handle: str | None = None) -> None:
        owner, _, name = status.repo.partition("/")
        if not owner or not name or "/" in name:
            raise Rejected(f"{status.repo!r} is not a Gitea repository (owner/name)")
        body = {"state": gitea_state(status.state), "context": status.context,
                "description": describe(status.description)}
        if status.target_url:
            body["target_url"] = status.target_url
        url = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}/statuses/{quote(status.sha, safe='')}"
        try:
            answer = self._client.post(url, json=body)
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.UnsupportedProtocol):
                raise Rejected(scrub(f"cannot send to Gitea for {status.where()}: {exc}", self._token)) from exc
            raise transport_error(FORGE, status, exc, self._token) from exc
        if answer.is_success:
            return None
        if answer.is_redirect:
            raise Rejected(f"Gitea redirected the status {status.where()} to {answer.headers.get('location')}: "
                           f"set the target's api_url to the final address", answer.status_code)
        try:
            message = forge_message(answer.json())
        except ValueError:
            message = forge_message(answer.text)
        raise http_error(FORGE, status, answer.status_code, answer.headers, message, self._token)

    def close(self) -> None:
        self._client.close()
