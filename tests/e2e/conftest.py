"""End-to-end fixtures: real git repositories, `clarity` as a subprocess, the real Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest

from controller.store.runs import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dev One", "GIT_AUTHOR_EMAIL": "dev1@example.org",
           "GIT_COMMITTER_NAME": "Dev One", "GIT_COMMITTER_EMAIL": "dev1@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Env:
    home: Path
    tmp: Path

    def repo(self, files: Mapping[str, str] | Path, *, branch: str = "main", message: str = "initial") -> Path:
        path = self.tmp / f"repo-{uuid.uuid4().hex[:8]}"
        if isinstance(files, Path):
            shutil.copytree(files, path)
        else:
            path.mkdir()
            for name, text in files.items():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                (path / name).write_text(text)
        git(path, "init", "-q", "-b", branch)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", message)
        return path

    def clarity(self, cwd: Path, *args: str, extra_env: Mapping[str, str] | None = None, timeout: float = 180) -> Result:
        env = {**os.environ, "CLARITY_HOME": str(self.home), "CLARITY_PULL": "never", **(extra_env or {})}
        proc = subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, cwd: Path, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "CLARITY_HOME": str(self.home), "CLARITY_PULL": "never"}
        return subprocess.Popen([sys.executable, "-m", "controller.cli", *args], cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def store(self) -> Store:
        return Store.open(f"sqlite:///{self.home / 'clarity.db'}")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(home=tmp_path / "home", tmp=tmp_path)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
        for image in ("clarity-busybox:latest", "clarity-python:bookworm"):
            client.images.get(image)
    except Exception as e:
        if os.environ.get("CLARITY_REQUIRE_DOCKER"):
            pytest.fail(f"Docker engine or local images unavailable: {e}")
        pytest.skip(f"Docker engine or local images unavailable (bash .ci/setup.sh): {e}")
    yield client
    client.close()


@pytest.fixture
def unique() -> str:
    """A name unique to this test, used as a workflow name so its containers can be found."""
    return f"wf-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def no_leftovers(docker_client: Any) -> Callable[[str], None]:
    def check(workflow: str) -> None:
        found = docker_client.api.containers(all=True, filters={"label": f"io.clarity.workflow={workflow}"})
        assert found == [], f"containers left behind: {[c['Id'][:12] for c in found]}"

    return check
