from __future__ import annotations

import itertools
import os
import subprocess
import uuid
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from runner.backends.base import LABEL, Backend
from runner.backends.fake import FakeBackend
from runner.execute import execute
from runner.spec import TaskResult, TaskSpec
from runner.workspace import WorkspaceCache

IMAGE = "clarity-busybox:latest"


@dataclass
class Run:
    result: TaskResult
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


# Other test sessions may share the engine: each test's runs carry ids under this prefix, and
# only those are checked for leftovers.
SESSION = f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
_counter = itertools.count()


def _make_spec(script: str, **kw: Any) -> TaskSpec:
    kw.setdefault("run_id", f"{SESSION}-{next(_counter)}")
    kw.setdefault("task", "build")
    kw.setdefault("image", IMAGE)
    kw.setdefault("timeout_s", 30.0)
    return TaskSpec(argv=("sh", "-c", script), **kw)


@pytest.fixture
def make_spec() -> Callable[..., TaskSpec]:
    """make_spec("shell script", **TaskSpec fields): a spec running the script under sh -c."""
    return _make_spec


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
        client.images.get(IMAGE)
    except Exception as e:  # no engine or no image: the docker tests cannot run here
        if os.environ.get("CLARITY_REQUIRE_DOCKER"):  # set by .ci/test.sh: never skip silently there
            pytest.fail(f"Docker engine or {IMAGE} unavailable: {e}")
        pytest.skip(f"Docker engine or {IMAGE} unavailable: {e}")
    yield client
    client.close()


def leftovers(client: Any) -> list[Any]:
    found = client.api.containers(all=True, filters={"label": f"{LABEL}=1"})  # no inspect: no race
    return [c["Id"] for c in found if (c.get("Labels") or {}).get(f"{LABEL}.run", "").startswith(SESSION)]


@pytest.fixture
def docker_backend(docker_client: Any) -> Iterator[Backend]:
    from runner.backends.docker import DockerBackend

    yield DockerBackend(docker_client)
    assert leftovers(docker_client) == [], "a task container was left behind"


@pytest.fixture(params=["fake", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "fake":
        return FakeBackend()
    be: Backend = request.getfixturevalue("docker_backend")
    return be


@pytest.fixture
def workspaces(tmp_path: Path) -> WorkspaceCache:
    return WorkspaceCache(tmp_path / "cache")


@pytest.fixture
def work_root(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def run_task(backend: Backend, work_root: Path, workspaces: WorkspaceCache) -> Callable[..., Run]:
    def run(spec: TaskSpec, cancel: threading.Event | None = None) -> Run:
        lines: list[str] = []
        result = execute(
            spec, backend, work_root=work_root, workspaces=workspaces, on_log=lines.append, cancel=cancel
        )
        return Run(result, lines)

    return run


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class Repo:
    path: Path

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, content in files.items():
            p = self.path / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
        git(self.path, "add", "-A")
        git(self.path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD")


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Repo]:
    def make(name: str = "repo") -> Repo:
        path = tmp_path / name
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        return Repo(path)

    return make
