"""Fixtures of the API tests: the real app over real Services (SQLite in tmp_path, or PostgreSQL
through `database_url`), API keys of both roles, and a git repository with a workflow."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from controller.services import Services
from controller.settings import Settings
from controller.store.runners import Runners

WORKFLOW = """\
workflow:
  name: ci
  triggers:
    - type: manual
      inputs:
        who: {type: string, default: nobody}
  tasks:
    - name: build
      image: busybox
      commands: ["echo build by ${inputs.who}"]
    - name: test
      image: busybox
      commands: ["echo test"]
"""


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CLARITY_") and key != "CLARITY_REQUIRE_DOCKER":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CLARITY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLARITY_PARALLEL", "2")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    for name in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{name}_NAME", "Dev One")
        monkeypatch.setenv(f"GIT_{name}_EMAIL", "dev1@example.org")


@dataclass
class Api:
    client: TestClient
    services: Services
    admin: str
    reader: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin}"}

    def get(self, path: str, key: str | None = None, **kw: Any) -> Any:
        return self.client.get(path, headers=self.auth(key), **kw)

    def post(self, path: str, body: Any = None, key: str | None = None, **kw: Any) -> Any:
        headers = {**self.auth(key), **kw.pop("headers", {})}
        return self.client.post(path, json=body, headers=headers, **kw)

    def delete(self, path: str, key: str | None = None) -> Any:
        return self.client.delete(path, headers=self.auth(key))


def make_app(settings: Settings) -> Starlette:
    try:
        from controller.app import create_app
    except ImportError:  # webhooks/intake/poller not there: the API alone
        from controller import api

        services = Services.build(settings)
        app = Starlette(routes=api.routes(services), exception_handlers=api.exception_handlers())
        app.state.services = services
        return app
    return create_app(settings)


@pytest.fixture
def make_api() -> Iterator[Callable[..., Api]]:
    made: list[Api] = []

    def make(database_url: str | None = None, **settings: Any) -> Api:
        base = Settings.from_env()
        if database_url is not None:
            base = base.with_(database_url=database_url)
        app = make_app(base.with_(**settings))
        services: Services = app.state.services
        client = TestClient(app, raise_server_exceptions=False)  # no `with`: no lifespan, no loops
        _, admin = services.keys.create("ci-admin", "admin")
        _, reader = services.keys.create("dashboard", "read")
        made.append(Api(client, services, admin, reader))
        return made[-1]

    yield make
    for api in made:
        api.client.close()
        api.services.store.engine.dispose()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def runner_credential(api: Api, name: str = "remote-1", labels: Sequence[str] = ("linux",), capacity: int = 2) -> str:
    """Register a remote runner (a registration token traded for its credential); its credential."""
    _, token = Runners(api.services.store.engine).create_token()
    resp = api.client.post("/api/v1/runner/register", json={"token": token, "name": name, "labels": list(labels),
                                                             "capacity": capacity, "version": "test"},
                           headers={"Clarity-Protocol": "1"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["credential"])


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def source_repo(tmp_path: Path) -> Path:
    """A git repository with `.clarity/ci.yaml` (a manual trigger, tasks build then test) on main."""
    path = tmp_path / "src"
    (path / ".clarity").mkdir(parents=True)
    (path / ".clarity" / "ci.yaml").write_text(WORKFLOW)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "ci")
    return path
