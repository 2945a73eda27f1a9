"""The controller end to end, with real processes: `clarity up`, a git server over smart HTTP, a
signed GitHub delivery or polling, tasks in Docker, results and logs through the API."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.e2e.conftest import git
from tests.e2e.githttp import GitHttpServer
from tests.processes import ControllerProcess

pytestmark = pytest.mark.docker

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "webhooks"
SECRET = "s3cret-hook-key"


class Controller(ControllerProcess):
    """`clarity up` (controller and built-in runner), restartable on the same database."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        super().__init__(home, home / "controller.log", env=env, command="up")

    def clarity(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "controller.cli", *args, "--controller", self.url],
                              env=self.env, capture_output=True, text=True, timeout=60)

    def wait_run(self, predicate: Any, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.api() as api:
            while time.monotonic() < deadline:
                runs = api.get("/api/v1/runs").json()["runs"]
                for run in runs:
                    if predicate(run) and run["state"] not in ("queued", "running", "canceling"):
                        return dict(api.get(f"/api/v1/runs/{run['id']}").json())
                time.sleep(0.3)
        raise AssertionError("no finished run matched; controller log:\n" + self.log.read_text()[-3000:])


WORKFLOW = """\
workflow:
  name: "served"
  tasks:
    - name: hello
      image: clarity-busybox:latest
      commands:
        - echo "hello from ${git.branch} at ${git.short_sha}"
        - cat version.txt
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GitHttpServer, Path]]:
    root = tmp_path / "srv"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "app.git")], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(root / "app.git"), str(work)], check=True, capture_output=True)
    git(work, "checkout", "-q", "-b", "main")
    (work / ".clarity").mkdir()
    (work / ".clarity" / "ci.yaml").write_text(WORKFLOW)
    (work / "version.txt").write_text("v1\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    git(work, "push", "-q", "origin", "main")
    with GitHttpServer(root) as server:
        yield server, work


@pytest.fixture
def controller(tmp_path: Path, docker_client: Any, database_url: str) -> Iterator[Controller]:
    """`clarity up` on SQLite and on PostgreSQL (the `database_url` fixture's two params)."""
    home = tmp_path / "home"
    env = {**os.environ, "CLARITY_HOME": str(home), "CLARITY_PULL": "never", "CLARITY_REAP_INTERVAL_S": "1",
           "CLARITY_DATABASE_URL": database_url, "CLARITY_LEASE_S": "3"}
    c = Controller(home, env)
    c.start()
    yield c
    c.stop()


def _commit(work: Path, version: str) -> str:
    (work / "version.txt").write_text(version + "\n")
    git(work, "commit", "-q", "-am", f"version {version}")
    git(work, "push", "-q", "origin", "main")
    return git(work, "rev-parse", "HEAD").strip()


def _github_push(name: str, clone_url: str, before: str, after: str, delivery: str) -> tuple[bytes, dict[str, str]]:
    payload = json.loads((FIXTURES / "github" / "push-branch.json").read_text())
    payload["ref"] = "refs/heads/main"
    payload["before"], payload["after"] = before, after
    payload["repository"]["full_name"] = name
    payload["repository"]["clone_url"] = clone_url
    payload["head_commit"]["id"] = after
    payload["head_commit"]["message"] = "version v2"
    payload["commits"] = [dict(payload["head_commit"], added=[], removed=[], modified=["version.txt"])]
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": signature,
                  "Content-Type": "application/json"}


def test_signed_github_push_runs_in_docker(controller: Controller, served: tuple[GitHttpServer, Path]) -> None:
    server, work = served
    url = f"{server.url}/app.git"
    added = controller.clarity("repo", "add", "acme/app", "--url", url, "--forge", "github",
                               "--webhook-secret", SECRET)
    assert added.returncode == 0, added.stderr
    before = git(work, "rev-parse", "HEAD").strip()
    after = _commit(work, "v2")
    body, headers = _github_push("acme/app", url, before, after, str(uuid.uuid4()))
    response = httpx.post(f"{controller.url}/api/v1/hooks/github", content=body, headers=headers, timeout=10)
    assert response.status_code == 202, response.text
    again = httpx.post(f"{controller.url}/api/v1/hooks/github", content=body, headers=headers, timeout=10)
    assert again.status_code == 202  # the same delivery: no second run

    run = controller.wait_run(lambda r: r["commit_sha"] == after)
    assert run["state"] == "succeeded", run
    assert run["ref"] == "refs/heads/main" and run["workflow_file"] == ".clarity/ci.yaml" and run["blob_sha"]
    with controller.api() as api:
        logs = api.get(f"/api/v1/runs/{run['id']}/logs").json()
        lines = [line["line"] for line in logs["lines"]]
        assert f"hello from main at {after[:8]}" in lines and "v2" in lines
        runs = api.get("/api/v1/runs").json()["runs"]
        assert sum(1 for r in runs if r["commit_sha"] == after) == 1
    listed = controller.clarity("runs")  # the command line, through the API
    assert listed.returncode == 0 and f"runs on {controller.url}" in listed.stdout
    assert any(line.split()[:2] == [str(run["id"]), "succeeded"] for line in listed.stdout.splitlines())
    shown = controller.clarity("logs", str(run["id"]), "hello")
    assert shown.returncode == 0 and f"hello from main at {after[:8]}" in shown.stdout.splitlines()

    bad = httpx.post(f"{controller.url}/api/v1/hooks/github", content=body,
                     headers={**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64,
                              "X-GitHub-Delivery": str(uuid.uuid4())}, timeout=10)
    assert bad.status_code == 401


def test_polling_runs_new_commits(controller: Controller, served: tuple[GitHttpServer, Path]) -> None:
    server, work = served
    added = controller.clarity("repo", "add", "acme/polled", "--url", f"{server.url}/app.git", "--poll", "1s")
    assert added.returncode == 0, added.stderr
    with controller.api() as api:  # the first poll records what is there; it starts nothing
        deadline = time.monotonic() + 30
        while api.get("/api/v1/repos/acme/polled").json().get("polled_at") is None:
            assert time.monotonic() < deadline, "the repository was never polled"
            time.sleep(0.2)
        assert api.get("/api/v1/runs").json()["runs"] == []
    after = _commit(work, "v3")
    run = controller.wait_run(lambda r: r["commit_sha"] == after)
    assert run["state"] == "succeeded", run
    assert run["trigger"].get("by") == "poll" or run["event"] == "push"


SLOW = """\
workflow:
  name: "slow"
  tasks:
    - name: first
      image: clarity-busybox:latest
      commands: ["echo first starts", "sleep 6", "echo first done"]
    - name: second
      image: clarity-busybox:latest
      commands: ["echo second ran"]
"""


def test_kill_9_mid_run_loses_and_duplicates_nothing(controller: Controller, served: tuple[GitHttpServer, Path],
                                                     docker_client: Any) -> None:
    server, work = served
    (work / ".clarity" / "ci.yaml").write_text(SLOW)
    git(work, "commit", "-q", "-am", "slow workflow")
    git(work, "push", "-q", "origin", "main")
    assert controller.clarity("repo", "add", "acme/app", "--url", f"{server.url}/app.git").returncode == 0
    with controller.api() as api:
        started = api.post("/api/v1/repos/acme/app/trigger", json={"ref": "main", "workflow": ".clarity/ci.yaml"})
        assert started.status_code == 201, started.text
        run_id = started.json()["runs"][0]
        deadline = time.monotonic() + 60
        while "first starts" not in [line["line"] for line in  # its container runs
                                     api.get(f"/api/v1/runs/{run_id}/logs").json()["lines"]]:
            assert time.monotonic() < deadline, "the first task never started"
            time.sleep(0.2)
    controller.stop(signal.SIGKILL)  # no clean-up runs: its container and lease are left behind
    assert docker_client.api.containers(all=True, filters={"label": "io.clarity.workflow=slow"})

    controller.start()  # same database: the run resumes
    run = controller.wait_run(lambda r: r["id"] == run_id, timeout=120)
    assert run["state"] == "succeeded", run
    tasks = {t["name"]: t for t in run["tasks"]}
    assert tasks["first"]["attempt"] == 2 and tasks["second"]["state"] == "succeeded"
    with controller.api() as api:
        assert [r["id"] for r in api.get("/api/v1/runs").json()["runs"]] == [run_id]  # nothing duplicated
        logs = [line["line"] for line in api.get(f"/api/v1/runs/{run_id}/logs").json()["lines"]]
        assert "second ran" in logs and "first done" in logs
    deadline = time.monotonic() + 20  # the orphaned container was swept at start-up
    while docker_client.api.containers(all=True, filters={"label": "io.clarity.workflow=slow"}):
        assert time.monotonic() < deadline, "a container of the killed controller was left behind"
        time.sleep(0.5)
