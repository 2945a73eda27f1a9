"""GitHub: commit statuses with a token, check runs as a GitHub App (through PyGithub).

- `GitHubStatuses` (token): `POST /repos/{owner}/{repo}/statuses/{sha}`, one request per status.
- `GitHubChecks` (App): `POST /repos/{owner}/{repo}/check-runs` the first time for a (sha,
  context), then `PATCH .../check-runs/{id}` with the id `send` returned. `conclusion` is sent
  only with `status: completed`. A check run that is gone (404 on PATCH) is created anew.
  Authentication: a JWT signed with the App key buys an installation token
  (`POST /app/installations/{id}/access_tokens`, cached by PyGithub until near expiry); with no
  `installation_id` in the target, it is looked up once per repository
  (`GET /repos/{owner}/{repo}/installation`).

PyGithub runs lazy (`Github(lazy=True)`): `get_repo`, `get_commit` and `get_check_run` make no
request, so no GET precedes a write. Its retries are off (`retry=None`): the caller retries.
A PyGithub client is not thread-safe, and GitHub asks for one request at a time per client
anyway: each reporter sends one status at a time (a lock).
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import requests
from github import Auth, Github, GithubException, GithubIntegration, UnknownObjectException
from github.GithubObject import NotSet

from controller.forges.report import (
    CHECK_TEXT_LIMIT, CheckDetails, Rejected, Status, Target, describe, forge_message, github_check_state,
    github_status_state, http_error, scrub, transport_error,
)

FORGE = "GitHub"


def client_options(target: Target, timeout: float, write_interval: float | None) -> dict[str, Any]:
    """PyGithub settings: no retries, no GET before a write, short timeouts (whole seconds)."""
    return dict(base_url=target.api_url.rstrip("/"), timeout=max(1, math.ceil(timeout)), retry=None, lazy=True,
                seconds_between_requests=None, seconds_between_writes=write_interval or None)


@contextmanager
def mapped(status: Status, *secrets: str | None) -> Iterator[None]:
    """PyGithub's and requests' exceptions as `Retry` / `Rejected`."""
    try:
        yield
    except GithubException as exc:
        raise http_error(FORGE, status, exc.status, exc.headers or {}, forge_message(exc.data), *secrets) from exc
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise transport_error(FORGE, status, exc, *secrets) from exc
    except requests.RequestException as exc:  # invalid URL and the like: configuration
        raise Rejected(scrub(f"cannot send to GitHub for {status.where()}: {exc}", *secrets)) from exc


class GitHubStatuses:
    """Commit statuses with a personal, fine-grained or installation token. `check` is ignored."""

    def __init__(self, target: Target, *, timeout: float = 10.0, write_interval: float | None = 1.0) -> None:
        if not target.token:
            raise ValueError("GitHub commit statuses need a token")
        self._token = target.token
        self._gh = Github(auth=Auth.Token(target.token), **client_options(target, timeout, write_interval))
        self._lock = threading.Lock()

    def send(self, status: Status, handle: str | None = None) -> None:
        with self._lock, mapped(status, self._token):
            commit = self._gh.get_repo(status.repo).get_commit(status.sha)
            commit.create_status(state=github_status_state(status.state),
                                 target_url=status.target_url or NotSet,
                                 description=describe(status.description), context=status.context)
        return None

    def close(self) -> None:
        with self._lock:
            self._gh.close()


class GitHubChecks:
    """Check runs as a GitHub App. `send` returns the check run id (the handle to keep)."""

    def __init__(self, target: Target, *, timeout: float = 10.0, write_interval: float | None = 1.0) -> None:
        if target.app_id is None or not target.private_key:
            raise ValueError("GitHub check runs need a GitHub App (app_id and private_key)")
        self._key = target.private_key
        self._app_auth = Auth.AppAuth(target.app_id, target.private_key)
        try:
            self._app_auth.create_jwt()
        except Exception as exc:  # jwt / cryptography errors vary by version
            raise ValueError(f"the private key of GitHub App {target.app_id} cannot sign a JWT "
                             f"({type(exc).__name__}): is it the App's PEM key?") from None
        self._app_id = target.app_id
        self._integration = GithubIntegration(auth=self._app_auth, **client_options(target, timeout, write_interval))
        self._installation_id = target.installation_id
        self._installations: dict[str, int] = {}  # repo -> installation id, when looked up
        self._clients: dict[int, Github] = {}  # installation id -> client holding its token
        self._lock = threading.Lock()  # one send at a time; guards the caches too

    def send(self, status: Status, handle: str | None = None) -> str:
        run_id = parse_handle(status, handle)
        with self._lock, mapped(status, self._key):
            installation = self._installation(status)
            try:
                repo = self._client(installation).get_repo(status.repo)
                state, conclusion = github_check_state(status.state)
                output = check_output(status)
                details_url = status.target_url or NotSet
                if run_id is not None:
                    try:
                        repo.get_check_run(run_id).edit(status=state, conclusion=conclusion or NotSet,
                                                        output=output, details_url=details_url)
                        return str(run_id)
                    except UnknownObjectException:
                        pass  # deleted (GitHub keeps 1000 runs per name): start a new one
                run = repo.create_check_run(name=status.context, head_sha=status.sha, status=state,
                                            conclusion=conclusion or NotSet, output=output, details_url=details_url)
                return str(run.id)
            except GithubException as exc:
                if exc.status == 401:  # a revoked installation token: get a new one next time
                    self._clients.pop(installation, None)
                raise

    def close(self) -> None:
        with self._lock:
            for gh in self._clients.values():
                gh.close()
            self._clients = {}
            self._integration.close()

    def _installation(self, status: Status) -> int:
        if self._installation_id is not None:
            return self._installation_id
        known = self._installations.get(status.repo)
        if known is not None:
            return known
        owner, _, name = status.repo.partition("/")
        try:
            found = self._integration.get_repo_installation(owner, name).id
        except UnknownObjectException:
            raise Rejected(f"GitHub App {self._app_id} is not installed on {status.repo} (or the repository "
                           f"does not exist): install it there to report {status.where()}", 404) from None
        self._installations[status.repo] = found
        return found

    def _client(self, installation: int) -> Github:
        gh = self._clients.get(installation)
        if gh is None:
            gh = self._clients[installation] = self._integration.get_github_for_installation(installation)
        return gh


def parse_handle(status: Status, handle: str | None) -> int | None:
    if handle is None:
        return None
    if not handle.isdigit():
        raise Rejected(f"{handle!r} is not a GitHub check run id (the handle of {status.where()})")
    return int(handle)


def check_output(status: Status) -> dict[str, str | list[dict[str, str | int]]]:
    """`output` of a check run: the caller's details, or the description as title and summary."""
    check = status.check or CheckDetails(title=describe(status.description), summary=status.description)
    output: dict[str, str | list[dict[str, str | int]]] = {
        "title": describe(check.title, CHECK_TEXT_LIMIT),
        "summary": describe(check.summary, CHECK_TEXT_LIMIT),
    }
    if check.text:
        output["text"] = describe(check.text, CHECK_TEXT_LIMIT)
    return output
