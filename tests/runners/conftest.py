"""Fixtures of the runner-agent tests: the API fixtures (the real app over real Services), and
helpers to register runners and start runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tests.api.conftest import _env, api, make_api, source_repo  # noqa: F401 - fixtures, re-exported
from tests.api.conftest import Api
from tests.e2e.conftest import docker_client  # noqa: F401 - a fixture, re-exported
from tests.api.test_api_runner_http import start_run

__all__ = ["PROTO", "register", "runner_post", "start_run", "token"]

PROTO = {"Clarity-Protocol": "1"}


def token(api: Api, labels: Sequence[str] | None = None) -> str:
    body: dict[str, Any] = {} if labels is None else {"labels": list(labels)}
    resp = api.post("/api/v1/runner-tokens", body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["token"])


def register(api: Api, name: str, labels: Sequence[str] | None = ("linux",), capacity: int = 2) -> str:
    body: dict[str, Any] = {"token": token(api), "name": name, "capacity": capacity, "version": "t"}
    if labels is not None:
        body["labels"] = list(labels)
    resp = api.client.post("/api/v1/runner/register", json=body, headers=PROTO)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["credential"])


def runner_post(api: Api, verb: str, body: dict[str, Any], credential: str | None) -> Any:
    headers = dict(PROTO)
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    return api.client.post(f"/api/v1/runner/{verb}", json=body, headers=headers)


