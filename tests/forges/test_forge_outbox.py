"""Runs reported to the forge through the outbox (`controller.report`): the real app and store, a
runner driven by hand through the runner protocol, and the contract-checking fake forge.

Each test pushes commits to a real repository, lets the starter make runs, finishes their tasks
as a runner would, and calls the sender's `tick` (the background loop is not started), so what
the forge receives, and when, is deterministic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa

from controller.report import Sender, description
from controller.store import tables
from controller.triggers.events import PushEvent
from runner.client import HttpPeer
from runner.spec import Outcome, TaskResult
from tests.api.conftest import _env, api, make_api  # noqa: F401 - fixtures
from tests.api.conftest import Api, git
from tests.forges.fakeforge import GITHUB_REPO, GITHUB_TOKEN, GITLAB_PROJECT, GITLAB_TOKEN, FakeForge
from tests.forges.fakeforge import fake_forge  # noqa: F401 - a fixture
from tests.runners.conftest import register

WORKFLOW = """\
workflow:
  name: {name}
  triggers:
    - type: push
      branches: [{branch}]
  tasks:
    - name: build
      image: busybox
      commands: ["echo build"]
    - name: test
      image: busybox
      needs: [build]
      commands: ["echo test"]
"""


class World:
    def __init__(self, api: Api, forge: FakeForge, tmp: Path, forge_kind: str = "github") -> None:
        self.api, self.forge, self.tmp = api, forge, tmp
        self.src = tmp / "src"
        (self.src / ".clarity").mkdir(parents=True)
        (self.src / ".clarity" / "ci.yaml").write_text(WORKFLOW.format(name="ci", branch="main"))
        (self.src / ".clarity" / "release.yaml").write_text(WORKFLOW.format(name="release", branch="release"))
        git(self.src, "init", "-q", "-b", "main")
        git(self.src, "add", "-A")
        git(self.src, "commit", "-q", "-m", "ci")
        token_file = tmp / "forge-token"
        token_file.write_text((GITHUB_TOKEN if forge_kind == "github" else GITLAB_TOKEN) + "\n")
        name = GITHUB_REPO if forge_kind == "github" else GITLAB_PROJECT
        services = api.services
        services.repos.add(name=name, url=str(self.src), forge=forge_kind)
        self.repo = services.repos.update(
            name, forge_url=forge.github_api if forge_kind == "github" else forge.gitlab_url,
            forge_token_file=str(token_file))
        self.sender = Sender(services.outbox, services.repos, services.settings,
                             make_reporter=lambda target: _reporter(target))
        self.peer = HttpPeer("http://testserver", register(api, "r1"), timeout=5, client=api.client)

    def push(self, message: str = "change", branch: str = "main") -> tuple[str, list[int]]:
        (self.src / "f.txt").write_text(f"{time.time()}\n")
        git(self.src, "add", "-A")
        git(self.src, "commit", "-q", "-m", message)
        sha = git(self.src, "rev-parse", "HEAD")
        event = PushEvent(repo=self.repo.name, ref=f"refs/heads/{branch}", before="0" * 40, after=sha, created=False,
                          deleted=False, message=message, author="Dev", sender="dev", changed_files=None,
                          clone_url=str(self.src))
        outcome = self.api.services.starter.push(self.repo, event, source={"test": True})
        return sha, outcome.runs

    def run_task(self, outcome: Outcome = Outcome.SUCCEEDED, exit_code: int = 0) -> str:
        lease = self.peer.lease("r1", ["linux"], 2)
        assert lease is not None
        self.peer.logs(lease.lease_id, [])
        now = time.time()
        self.peer.finish(lease.lease_id, TaskResult(outcome, exit_code=exit_code, started_at=now - 1.5, finished_at=now))
        return lease.spec.task

    def send(self) -> int:
        return self.sender.tick()

    def row(self, sha: str, context: str = "clarity/ci") -> Any:
        return self.api.services.outbox.get(f"status:{self.repo.id}:{sha}:{context}")

    def due_now(self, at: float = 0.0) -> None:
        """Skip the backoff the sender set (what waiting it out would do), or set another."""
        with self.api.services.store.engine.begin() as conn:
            conn.execute(tables.outbox.update().values(next_at=at))


def _reporter(target: Any) -> Any:
    from controller.forges.report import reporter

    return reporter(target, timeout=2.0, write_interval=None)


@pytest.fixture
def world(api: Api, fake_forge: FakeForge, tmp_path: Path) -> Iterator[World]:  # noqa: F811
    w = World(api, fake_forge, tmp_path)
    yield w
    w.sender.stop()


def test_a_run_is_reported_pending_then_success_with_a_link(world: World) -> None:
    sha, [run_id] = world.push()
    assert world.send() == 2  # ci, and release that does not run on main (skipped)
    [pending] = world.forge.statuses("github", sha, "clarity/ci")
    assert pending.state == "pending"
    assert pending.body["description"] == "Running (2 tasks)"  # queued then running: the newest state went
    assert pending.body["target_url"] == f"{world.api.services.settings.base_url}/api/v1/runs/{run_id}"
    assert world.run_task() == "build"
    assert world.send() == 0  # a task finishing is not a state of the run
    assert world.run_task() == "test"
    assert world.send() == 1
    assert world.forge.states("github", sha, "clarity/ci") == ["pending", "success"]
    assert world.forge.statuses("github", sha)[-1].body["description"].startswith("Succeeded in ")
    assert world.api.get(f"/api/v1/runs/{run_id}").json()["reports"] == [
        {"kind": "status", "key": f"status:{world.repo.id}:{sha}:clarity/ci", "state": "success",
         "context": "clarity/ci", "sent": True, "attempts": 0, "next_attempt_at": None, "last_error": None,
         "sent_at": pytest.approx(time.time(), abs=30)}]


def test_a_failing_task_is_named_in_the_failure(world: World) -> None:
    sha, _ = world.push()
    world.run_task()
    world.run_task(Outcome.FAILED, exit_code=3)
    world.send()
    [final] = world.forge.statuses("github", sha, "clarity/ci")
    assert final.state == "failure"
    assert final.body["description"] == "Failed: task test (exit 3)"


def test_a_workflow_filtered_out_gets_a_final_status_so_required_checks_do_not_hang(world: World) -> None:
    sha, [run_id] = world.push()  # ci runs on main; release only on the release branch
    world.send()
    assert world.forge.states("github", sha, "clarity/release") == ["success"]
    assert world.forge.statuses("github", sha, "clarity/release")[0].body["description"].startswith("Skipped: ")

    (world.src / ".clarity" / "nightly.yaml").write_text(
        "workflow:\n  name: nightly\n  triggers:\n    - {type: schedule, cron: '0 3 * * *'}\n"
        "  tasks:\n    - {name: a, image: busybox, commands: ['true']}\n")
    sha, _ = world.push("a nightly workflow")
    world.send()
    assert world.forge.states("github", sha, "clarity/nightly") == []  # no push trigger at all: no status
    assert world.forge.states("github", sha, "clarity/release") == ["success"]

    skipped_sha, runs = world.push("docs only [skip ci]")
    assert runs == []
    world.send()
    assert world.forge.states("github", skipped_sha, "clarity/ci") == ["success"]
    assert world.forge.states("github", skipped_sha, "clarity/release") == ["success"]
    assert "skip CI" in world.forge.statuses("github", skipped_sha, "clarity/ci")[0].body["description"]


def test_while_the_forge_is_down_statuses_wait_and_the_newest_wins(world: World) -> None:
    sha, _ = world.push()
    world.forge.down("close")
    world.send()
    row = world.row(sha)
    assert row.attempts == 1 and "could not reach GitHub" in row.last_error and row.next_at > row.updated_at
    world.due_now(at=time.time() + 3600)  # a long backoff
    world.run_task()
    world.run_task()  # the run ends while the forge is away
    assert world.send() == 0  # a new state does not cut the backoff short: nothing is hammered
    world.forge.up()
    world.due_now()
    assert world.send() == 2  # ci and release
    assert world.forge.states("github", sha, "clarity/ci") == ["success"]  # newest wins, nothing stale after it
    row = world.row(sha)
    assert row.attempts == 0 and row.last_error is None and not row.pending


def test_a_rate_limit_is_waited_out_until_its_reset(world: World) -> None:
    sha, _ = world.push()
    reset = world.forge.rate_limit(reset_in=120)
    world.send()
    row = world.row(sha)
    assert row.next_at >= reset - 1 and "rate limit" in row.last_error.lower()
    world.due_now()
    world.send()
    assert world.forge.states("github", sha, "clarity/ci") == ["pending"]


def test_a_refused_status_is_kept_with_its_error_and_the_run_is_unaffected(world: World) -> None:
    (world.tmp / "forge-token").write_text("ghp_revoked\n")
    sha, [run_id] = world.push()
    world.send()
    row = world.row(sha)
    assert not row.pending and "401" in (row.last_error or "") and "ghp_revoked" not in row.last_error
    world.run_task()
    world.run_task()
    assert world.api.get(f"/api/v1/runs/{run_id}").json()["state"] == "succeeded"
    (world.tmp / "forge-token").write_text(GITHUB_TOKEN)  # fixed: the next state goes through
    world.send()
    assert world.forge.states("github", sha, "clarity/ci") == ["success"]


def test_a_broken_forge_setting_never_fails_a_run(world: World) -> None:
    world.api.services.repos.update(world.repo.name, forge_token_file=str(world.tmp / "missing"))
    sha, [run_id] = world.push()
    world.run_task()
    world.run_task()
    world.send()
    assert world.api.get(f"/api/v1/runs/{run_id}").json()["state"] == "succeeded"
    row = world.row(sha)
    assert "forge token file" in row.last_error and "No such file" in row.last_error


def test_a_workflow_file_that_does_not_lint_is_a_failure_that_says_so(world: World) -> None:
    (world.src / ".clarity" / "ci.yaml").write_text("workflow:\n  name: ci\n  tasks: 3\n")
    sha, [run_id] = world.push()
    world.send()
    [status] = world.forge.statuses("github", sha, "clarity/ci")  # the name still read: the same context
    assert status.state == "failure" and status.body["description"].startswith("The workflow file has errors: ")


def test_gitlab_statuses_and_a_repeated_transition(api: Api, fake_forge: FakeForge, tmp_path: Path) -> None:  # noqa: F811
    world = World(api, fake_forge, tmp_path, forge_kind="gitlab")
    try:
        sha, _ = world.push()
        world.send()
        world.api.services.reporting.run_changed(_only_run(world))  # the same state again: GitLab says 400
        world.send()
        world.run_task()
        world.run_task(Outcome.FAILED, exit_code=1)
        world.send()
        assert world.forge.states("gitlab", sha, "clarity/ci") == ["running", "failed"]
        assert {s.body.get("ref") for s in world.forge.statuses("gitlab", sha)} == {"main"}  # a branch, not refs/heads/
        assert world.row(sha).last_error is None
    finally:
        world.sender.stop()


def _only_run(world: World) -> int:
    with world.api.services.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(tables.runs.c.id))).scalar_one())


def test_descriptions_fit_the_forge(world: World) -> None:
    """A long task name and error still make a description GitHub takes (the reporter cuts it)."""
    from controller.store.runs import RunRow, TaskRow

    long = "t" * 300
    run = RunRow(**{c.name: None for c in tables.runs.columns} | {"id": 1, "state": "errored"})
    task = TaskRow(**{c.name: None for c in tables.tasks.columns} | {"name": long, "state": "errored",
                                                                     "error": "boom\nsecond line"})
    text = description(run, [task])
    assert text.startswith("Errored: task ttt") and "second line" not in text


Make = Callable[..., Any]


def test_a_github_app_gets_one_check_run_per_run_with_the_tasks_and_the_failing_log(
        api: Api, fake_forge: FakeForge, tmp_path: Path) -> None:  # noqa: F811
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "app.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    fake_forge.add_github_app(4242, key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(), 7)
    world = World(api, fake_forge, tmp_path)
    try:
        api.services.repos.update(world.repo.name, forge_token_file=None, github_app_id=4242,
                                  github_app_key_file=str(tmp_path / "app.pem"))
        sha, [run_id] = world.push()
        world.send()
        lease = world.peer.lease("r1", ["linux"], 2)
        assert lease is not None
        world.peer.finish(lease.lease_id, TaskResult(Outcome.SUCCEEDED, exit_code=0, started_at=1.0, finished_at=3.5))
        lease = world.peer.lease("r1", ["linux"], 2)
        assert lease is not None
        from runner.protocol import LogLine

        world.peer.logs(lease.lease_id, [LogLine(i, time.time(), f"line {i}") for i in range(1, 31)])
        world.peer.finish(lease.lease_id, TaskResult(Outcome.FAILED, exit_code=2, started_at=4.0, finished_at=9.0))
        world.send()
        runs = [c for c in fake_forge.check_runs.values() if c.head_sha == sha and c.name == "clarity/ci"]
        assert len(runs) == 1  # created once, then updated
        [check] = runs
        assert [method for method, _ in check.calls] == ["POST", "PATCH"]
        assert check.status == "completed" and check.conclusion == "failure"
        output = check.calls[-1][1]["output"]
        assert output["title"] == "Failed: task test (exit 2)"
        assert "| build | succeeded | 2.5s |" in output["summary"] and "| test | failed | 5.0s |" in output["summary"]
        assert "line 30" in output["text"] and "line 10" not in output["text"]  # the last 20 lines
        assert check.calls[-1][1]["details_url"].endswith(f"/api/v1/runs/{run_id}")

        # a re-run on the same commit is a new check run, not an update of the old one
        world.api.services.reporting.run_changed(run_id)
        with api.services.store.engine.begin() as conn:
            conn.execute(tables.outbox.update().values(run_id=None))  # as if another run had reported
        world.api.services.reporting.run_changed(run_id)
        world.send()
        assert len([c for c in fake_forge.check_runs.values() if c.head_sha == sha and c.name == "clarity/ci"]) == 2
    finally:
        world.sender.stop()


def test_two_controllers_on_one_database_send_each_state_once(make_api: Callable[..., Api], database_url: str,
                                                               fake_forge: FakeForge, tmp_path: Path) -> None:  # noqa: F811
    """Two senders (as in two controller replicas) racing over the same outbox: every status
    reaches the forge once."""
    import threading

    api = make_api(database_url=database_url)
    world = World(api, fake_forge, tmp_path)
    other = Sender(api.services.outbox, api.services.repos, api.services.settings,
                   make_reporter=lambda target: _reporter(target))
    try:
        shas = [world.push()[0] for _ in range(6)]
        go = threading.Barrier(2)

        def drain(sender: Sender) -> None:
            go.wait()
            for _ in range(5):
                sender.tick()

        threads = [threading.Thread(target=drain, args=(s,)) for s in (world.sender, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for sha in shas:
            assert world.forge.states("github", sha, "clarity/ci") == ["pending"], sha
            assert world.forge.states("github", sha, "clarity/release") == ["success"], sha
    finally:
        world.sender.stop()
        other.stop()


def test_a_sub_run_sends_no_status_of_its_own(world: World) -> None:
    """A `type: workflow` task's sub-run is part of its parent's run: only the parent reports. Its
    own status would land on the sub-workflow's context (here overwriting release's skipped one)."""
    (world.src / ".clarity" / "ci.yaml").write_text(
        "workflow:\n  name: ci\n  triggers:\n    - {type: push, branches: [main]}\n"
        "  tasks:\n    - {name: release, type: workflow, workflow: release.yaml}\n")
    sha, [run_id] = world.push("compose release")
    world.send()
    assert world.run_task() == "build"  # the sub-run's tasks, leased like any
    assert world.run_task() == "test"
    services = world.api.services
    [sub] = services.store.sub_runs(run_id)
    assert services.store.get_run(sub.id).state == "succeeded"
    assert services.store.get_run(run_id).state == "succeeded"
    world.send()
    assert world.forge.states("github", sha, "clarity/ci") == ["pending", "success"]
    assert world.forge.states("github", sha, "clarity/release") == ["success"]
    assert world.forge.statuses("github", sha, "clarity/release")[0].body["description"].startswith("Skipped: ")
    assert world.api.get(f"/api/v1/runs/{sub.id}").json()["reports"] == []
