"""Fixtures of the intake tests: real git repositories in tmp_path, a real Store, the hook route.

No runner is started: tests assert on the runs and queue rows the intake creates; the workflow
images are never pulled. Helpers are in intake_support.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from controller.api import hooks
from controller.intake import IntakeWorker
from controller.services import Services
from controller.settings import Settings
from controller.store.deliveries import Deliveries
from tests.intake.intake_support import GIT_ENV, MAX_BODY, WORKFLOWS, GitRepo, git


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CLARITY_") and key != "CLARITY_REQUIRE_DOCKER":
            monkeypatch.delenv(key)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def make_git(tmp_path: Path) -> Callable[..., GitRepo]:
    count = [0]

    def make(files: dict[str, str] | None = None, message: str = "initial") -> GitRepo:
        count[0] += 1
        path = tmp_path / f"git{count[0]}"
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        repo = GitRepo(path)
        repo.commit(WORKFLOWS if files is None else files, message)
        return repo

    return make


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = Settings.from_env({"CLARITY_HOME": str(tmp_path / "home"), "CLARITY_MAX_BODY_BYTES": str(MAX_BODY),
                                  "CLARITY_PARALLEL": "2"})
    built = Services.build(settings)
    yield built
    built.store.engine.dispose()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(Starlette(routes=hooks.routes(services))) as c:
        yield c


@pytest.fixture
def worker(services: Services) -> IntakeWorker:
    """Not started: tests drain it themselves, so what it did is settled when they assert."""
    return IntakeWorker(services)


@pytest.fixture
def deliveries(services: Services) -> Deliveries:
    return Deliveries(services.store.engine)

