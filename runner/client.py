"""`HttpPeer`: `runner.protocol.Peer` over HTTP, against the controller's `/api/v1/runner/...`.

Same contract as the in-process peer: `LeaseLost` when the controller answers 409 `lease_lost`;
any other failure (controller unreachable, 5xx, a refused credential) is a `ControllerError`, which
the agent treats like any other error: it backs off and tries again. Every call may be retried as
it is: logs and finish are idempotent on the controller.

A runner authenticates with its own credential, got once by `register` for a one-time
registration token.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import httpx

from runner.protocol import PROTOCOL_VERSION, Beat, Lease, LeaseLost, LogLine
from runner.spec import TaskResult

HEADER = "Clarity-Protocol"


class ControllerError(Exception):
    """The controller could not be reached, or refused the call for another reason than a lost
    lease (`status` is None when there was no answer)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class TokenRefused(ControllerError):
    """The controller refused the registration token (unknown, revoked or used already)."""


def register(base_url: str, token: str, *, name: str, labels: Sequence[str] | None, capacity: int,
             version: str | None, timeout: float = 10.0, client: httpx.Client | None = None) -> Mapping[str, Any]:
    """Trade a one-time registration token for this runner's credential: the controller's answer,
    `{credential, runner}`. TokenRefused for a bad token; ControllerError for anything else."""
    body: dict[str, Any] = {"token": token, "name": name, "capacity": capacity, "version": version}
    if labels is not None:
        body["labels"] = list(labels)
    url = f"{base_url.rstrip('/')}/api/v1/runner/register"
    owned = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        resp = http.post(url, json=body, headers={HEADER: str(PROTOCOL_VERSION)}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ControllerError(f"controller {base_url} unreachable: {exc}") from exc
    finally:
        if owned:
            http.close()
    if resp.status_code == 201:
        return HttpPeer._json(resp)
    code, message = _error(resp)
    if resp.status_code == 401:
        raise TokenRefused(message, resp.status_code, code)
    raise ControllerError(f"controller answered {resp.status_code} to register: {message}", resp.status_code, code)


class HttpPeer:
    def __init__(self, base_url: str, credential: str, timeout: float = 10.0, *,
                 client: httpx.Client | None = None) -> None:
        """`client`: an httpx client to send with (tests pass Starlette's TestClient); its own
        base URL is then ignored in favour of `base_url`."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {credential}", HEADER: str(PROTOCOL_VERSION)}
        self._client = client or httpx.Client(timeout=timeout)
        self._owned = client is None

    def hello(self) -> dict[str, Any]:
        """The runner's registration as the controller has it (checks the credential): name,
        labels, capacity, ... A refused credential is a ControllerError with status 401."""
        return self._json(self._post("hello", {}))

    def lease(self, runner: str, labels: Sequence[str], wait_s: float) -> Lease | None:
        resp = self._post("lease", {"runner": runner, "labels": list(labels), "wait_s": wait_s},
                          timeout=self.timeout + wait_s)
        if resp.status_code == 204:
            return None
        return Lease.from_json(self._json(resp))

    def heartbeat(self, lease_id: str) -> Beat:
        data = self._json(self._post("heartbeat", {"lease_id": lease_id}))
        return Beat(expires_at=float(data["expires_at"]), cancel=bool(data["cancel"]))

    def logs(self, lease_id: str, lines: Sequence[LogLine]) -> None:
        self._post("logs", {"lease_id": lease_id,
                            "lines": [{"seq": l.seq, "ts": l.ts, "line": l.line} for l in lines]})

    def finish(self, lease_id: str, result: TaskResult) -> None:
        self._post("finish", {"lease_id": lease_id, "result": result.to_json()})

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def _post(self, verb: str, body: dict[str, Any], timeout: float | None = None) -> httpx.Response:
        url = f"{self.base_url}/api/v1/runner/{verb}"
        try:
            resp = self._client.post(url, json=body, headers=self.headers, timeout=timeout or self.timeout)
        except httpx.HTTPError as exc:
            raise ControllerError(f"controller {self.base_url} unreachable: {exc}") from exc
        if resp.status_code < 400:
            return resp
        code, message = _error(resp)
        if resp.status_code == 409 and code == "lease_lost":
            raise LeaseLost(message)
        raise ControllerError(f"controller answered {resp.status_code} to {verb}: {message}", resp.status_code, code)

    @staticmethod
    def _json(resp: httpx.Response) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError as exc:
            raise ControllerError(f"controller answered {resp.status_code} with a body that is not JSON") from exc
        if not isinstance(data, dict):
            raise ControllerError(f"controller answered {resp.status_code} with unexpected JSON")
        return data


def _error(resp: httpx.Response) -> tuple[str | None, str]:
    try:
        err = resp.json()["error"]
        return str(err.get("code")), str(err.get("message"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, resp.text[:200] or resp.reason_phrase
