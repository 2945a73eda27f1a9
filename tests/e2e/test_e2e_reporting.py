"""Results back to git, end to end with real processes: `clarity up`, a repository served over
smart HTTP (pushes allowed, for notes), signed GitHub push deliveries, tasks in Docker, statuses on
the contract-checking fake forge, and git notes read back with `git log --notes=clarity`."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.e2e.conftest import git
from tests.e2e.githttp import GitHttpServer
from tests.e2e.test_e2e_controller import SECRET, Controller, _github_push
from tests.forges.fakeforge import GITHUB_REPO, GITHUB_TOKEN, FakeForge
from tests.forges.fakeforge import fake_forge  # noqa: F401 - a fixture

pytestmark = pytest.mark.docker

WORKFLOW = """\
workflow:
  name: served
  tasks:
    - name: hello
      image: clarity-busybox:latest
      commands:
        - echo "hello from ${git.short_sha}"
        - test "$(cat version.txt)" != broken
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GitHttpServer, Path]]:
    root = tmp_path / "srv"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "app.git")], check=True)
    git(root / "app.git", "config", "http.receivepack", "true")  # the controller pushes notes
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
def controller(tmp_path: Path, docker_client: Any) -> Iterator[Controller]:
    home = tmp_path / "home"
    env = {**os.environ, "CLARITY_HOME": str(home), "CLARITY_PULL": "never", "CLARITY_REAP_INTERVAL_S": "1"}
    env.pop("CLARITY_DATABASE_URL", None)
    c = Controller(home, env)
    c.start()
    yield c
    c.stop()


def commit(work: Path, version: str) -> tuple[str, str]:
    before = git(work, "rev-parse", "HEAD").strip()
    (work / "version.txt").write_text(version + "\n")
    git(work, "commit", "-q", "-am", f"version {version}")
    git(work, "push", "-q", "origin", "main")
    return before, git(work, "rev-parse", "HEAD").strip()


def deliver(controller: Controller, url: str, before: str, after: str) -> None:
    body, headers = _github_push(GITHUB_REPO, url, before, after, str(uuid.uuid4()))
    response = httpx.post(f"{controller.url}/api/v1/hooks/github", content=body, headers=headers, timeout=10)
    assert response.status_code == 202, response.text


def final_states(forge: FakeForge, sha: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = forge.states("github", sha, "clarity/served")
        if states and states[-1] != "pending":
            return states
        time.sleep(0.2)
    raise AssertionError(f"no final status for {sha}: {forge.states('github', sha)}")


def add_repo(controller: Controller, url: str, forge: FakeForge, tmp_path: Path, *extra: str) -> None:
    token = tmp_path / "github-token"
    token.write_text(GITHUB_TOKEN + "\n")
    added = controller.clarity("repo", "add", GITHUB_REPO, "--url", url, "--forge", "github", "--webhook-secret",
                               SECRET, "--forge-url", forge.github_api, "--forge-token-file", str(token), *extra)
    assert added.returncode == 0, added.stderr


def test_a_push_is_reported_pending_then_final_and_written_as_a_git_note(
        controller: Controller, served: tuple[GitHttpServer, Path], fake_forge: FakeForge,  # noqa: F811
        tmp_path: Path) -> None:
    server, work = served
    url = f"{server.url}/app.git"
    add_repo(controller, url, fake_forge, tmp_path, "--notes")

    before, after = commit(work, "v2")
    deliver(controller, url, before, after)
    run = controller.wait_run(lambda r: r["commit_sha"] == after)
    assert run["state"] == "succeeded", run
    states = final_states(fake_forge, after, 30)
    # in order: queued and running are both `pending` on GitHub (sent once or twice, as it came)
    assert [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s] == ["pending", "success"], states
    success = fake_forge.statuses("github", after, "clarity/served")[-1]
    assert success.body["target_url"].endswith(f"/api/v1/runs/{run['id']}")
    assert success.body["description"].startswith("Succeeded in ")

    before, broken = commit(work, "broken")
    deliver(controller, url, before, broken)
    failed = controller.wait_run(lambda r: r["commit_sha"] == broken)
    assert failed["state"] == "failed", failed
    assert final_states(fake_forge, broken, 30)[-1] == "failure"
    assert fake_forge.statuses("github", broken)[-1].body["description"] == "Failed: task hello (exit 1)"

    # the results as git notes on the served repository, read back offline from a fresh clone
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", url, str(clone)], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while True:
        fetched = subprocess.run(["git", "fetch", "-q", "origin", "refs/notes/clarity:refs/notes/clarity"],
                                 cwd=clone, capture_output=True, text=True)
        shown = git(clone, "log", "--notes=clarity", "--format=%H%n%N", "-3") if fetched.returncode == 0 else ""
        if f"clarity run {failed['id']}: served failed" in shown:
            break
        assert time.monotonic() < deadline, (fetched.stderr, shown, controller.log.read_text()[-2000:])
        time.sleep(0.5)
    notes = {sha: git(clone, "notes", "--ref=clarity", "show", sha) for sha in (after, broken)}
    assert notes[after].startswith(f"clarity run {run['id']}: served succeeded")
    assert "tasks: hello succeeded" in notes[after]
    assert notes[broken].startswith(f"clarity run {failed['id']}: served failed")
    with controller.api() as api:
        reports = api.get(f"/api/v1/runs/{run['id']}").json()["reports"]
    assert sorted((r["kind"], r["sent"]) for r in reports) == [("note", True), ("status", True)]


def test_statuses_sent_while_the_forge_was_down_arrive_when_it_is_back(
        controller: Controller, served: tuple[GitHttpServer, Path], fake_forge: FakeForge,  # noqa: F811
        tmp_path: Path) -> None:
    server, work = served
    url = f"{server.url}/app.git"
    add_repo(controller, url, fake_forge, tmp_path)
    fake_forge.down("close", seconds=30)
    went_down = time.monotonic()
    before, after = commit(work, "v2")
    deliver(controller, url, before, after)
    run = controller.wait_run(lambda r: r["commit_sha"] == after)
    assert run["state"] == "succeeded", run  # the run does not wait for the forge
    assert fake_forge.states("github", after) == []
    states = final_states(fake_forge, after, 120)
    assert time.monotonic() - went_down >= 29
    assert states[-1] == "success" and set(states) <= {"pending", "success"}
    with controller.api() as api:
        [report] = api.get(f"/api/v1/runs/{run['id']}").json()["reports"]
    assert report["sent"] and report["last_error"] is None
