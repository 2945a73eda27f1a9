"""The intake worker: stored deliveries -> runs (or a clear reason why not), restart-safe, never stopped by one."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
import structlog.testing
from starlette.testclient import TestClient

from controller.intake import IntakeWorker
from controller.services import Services
from controller.store import tables
from controller.store.deliveries import Deliveries
from tests.intake.intake_support import GitRepo, edit, fixture, needs_fixtures, register, runs, signed

pytestmark = needs_fixtures

URL = "/api/v1/hooks/{}"
PUSH_AFTER = "199eddf46df50de8d02e99bf1c5fdb4101338224"


def post(client: TestClient, forge: str, body: bytes, event: str, guid: str) -> int:
    answer = client.post(URL.format(forge), content=body, headers=signed(forge, body, event, guid))
    assert answer.status_code == 202, answer.text
    return int(answer.json()["delivery"])


def wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_branch_delete_starts_nothing(client: TestClient, services: Services, worker: IntakeWorker,
                                      deliveries: Deliveries, make_git: Callable[..., GitRepo]) -> None:
    register(services, "dev2/drone-test-go", make_git())
    row = post(client, "github", fixture("github/push-branch-delete.json"), "push", "del")
    worker.drain()
    assert runs(services) == []
    done = deliveries.get(row)
    assert done.state == "processed" and "refs/heads/feature-branch was deleted" in (done.error or "")


def test_skip_ci_in_the_message_makes_no_run(client: TestClient, services: Services, worker: IntakeWorker,
                                             deliveries: Deliveries, make_git: Callable[..., GitRepo]) -> None:
    repo = make_git()
    head = repo.commit({"README.md": "x"}, "Update README [skip ci]")
    register(services, "Codertocat/Hello-World", repo)
    body = fixture("github/push-branch.json", {PUSH_AFTER: head, "Update README": "Update README [skip ci]"})
    row = post(client, "github", body, "push", "skip")
    worker.drain()
    assert runs(services) == []
    assert "skip CI" in (deliveries.get(row).error or "")


def test_a_workflow_failing_lint_at_the_commit_makes_a_failed_run(
        client: TestClient, services: Services, worker: IntakeWorker, make_git: Callable[..., GitRepo]) -> None:
    repo = make_git({".clarity/broken.yaml": "workflow:\n  name: broken\n  tasks:\n    - name: t\n      commands: [x]\n"})
    register(services, "Codertocat/Hello-World", repo)
    post(client, "github", fixture("github/push-branch.json", {PUSH_AFTER: repo.head()}), "push", "lint")
    worker.drain()
    [run] = runs(services)
    assert (run.state, run.workflow_file, run.commit_sha) == ("failed", ".clarity/broken.yaml", repo.head())
    assert run.message and "image" in run.message
    assert services.queue.depth() == 0


def _fork_pull_request(fork_url: str, head: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d["action"] = "opened"
        d["pull_request"]["head"]["sha"] = head
        d["pull_request"]["head"]["repo"]["clone_url"] = fork_url
    return change


@pytest.mark.parametrize("forge,path,name", [
    ("github", "github/pull_request-labeled-fork.json", "suo/actions-test"),
    ("gitea", "gitea/pull_request-opened-fork.json", "example/example"),
])
def test_a_fork_pull_request_runs_without_secrets(client: TestClient, services: Services, worker: IntakeWorker,
                                                  tmp_path: Any, make_git: Callable[..., GitRepo],
                                                  forge: str, path: str, name: str) -> None:
    base = make_git()
    fork = make_git()
    head = fork.commit({"patch.txt": "from a fork"}, "fork change")  # only in the fork
    register(services, name, base, forge=forge)
    post(client, forge, edit(fixture(path), _fork_pull_request(fork.url, head)), "pull_request", "fork")
    worker.drain()
    [run] = runs(services)
    assert (run.event, run.commit_sha) == ("pull_request", head)
    assert run.context["no_secrets"] is True
    assert run.trigger["fork"] is True


def test_a_labeled_fork_pull_request_is_ignored(client: TestClient, services: Services, worker: IntakeWorker,
                                                deliveries: Deliveries, make_git: Callable[..., GitRepo]) -> None:
    register(services, "suo/actions-test", make_git())
    body = fixture("github/pull_request-labeled-fork.json")
    answer = client.post(URL.format("github"), content=body, headers=signed("github", body, "pull_request", "l"))
    assert answer.json()["status"] == "ignored"
    assert worker.drain() == 0 and runs(services) == []


def test_unreachable_clone_url_fails_that_delivery_only(client: TestClient, services: Services,
                                                        worker: IntakeWorker, deliveries: Deliveries,
                                                        tmp_path: Any, make_git: Callable[..., GitRepo]) -> None:
    register(services, "dev2/drone-test-go", f"file://{tmp_path}/no-such-repo")
    good = make_git()
    register(services, "Codertocat/Hello-World", good)
    bad_row = post(client, "github", fixture("github/push-tag-create.json"), "push", "bad")
    good_row = post(client, "github", fixture("github/push-branch.json", {PUSH_AFTER: good.head()}), "push", "good")
    with structlog.testing.capture_logs() as logged:
        assert worker.drain() == 2
    levels = {e["delivery"]: e["log_level"] for e in logged if e["event"] == "delivery processed"}
    assert levels == {"bad": "warning", "good": "info"}  # the one that started nothing is the operator's to see
    failed = deliveries.get(bad_row)
    assert failed.state == "failed" and "no-such-repo" in (failed.error or "")
    assert deliveries.get(good_row).state == "processed"
    assert [r.repo for r in runs(services)] == ["Codertocat/Hello-World"]


def test_an_unexpected_error_is_recorded_and_the_worker_goes_on(
        client: TestClient, services: Services, worker: IntakeWorker, deliveries: Deliveries,
        make_git: Callable[..., GitRepo], monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_git()
    register(services, "Codertocat/Hello-World", repo)
    real = services.starter.push
    calls = []

    def flaky(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(*args, **kw)

    monkeypatch.setattr(services.starter, "push", flaky)
    first = post(client, "github", fixture("github/push-branch.json", {PUSH_AFTER: repo.head()}), "push", "1")
    second = post(client, "github", fixture("github/push-branch.json", {PUSH_AFTER: repo.head()}), "push", "2")
    assert worker.drain() == 2
    assert deliveries.get(first).state == "failed"
    assert "RuntimeError: boom" in (deliveries.get(first).error or "")
    assert deliveries.get(second).state == "processed"
    assert len(runs(services)) == 1


def test_the_route_wakes_a_running_worker(client: TestClient, services: Services, deliveries: Deliveries,
                                          make_git: Callable[..., GitRepo]) -> None:
    repo = make_git()
    register(services, "Codertocat/Hello-World", repo)
    worker = IntakeWorker(services, poll_s=300)  # only a wake-up can make it look before the test ends
    worker.start()
    try:
        time.sleep(0.1)  # let it finish its first (empty) round and sleep
        row = post(client, "github", fixture("github/push-branch.json", {PUSH_AFTER: repo.head()}), "push", "w")
        wait_for(lambda: deliveries.get(row).state == "processed")
    finally:
        worker.stop()
    assert len(runs(services)) == 1


def test_deliveries_left_by_a_killed_process_are_processed_on_start(
        client: TestClient, services: Services, deliveries: Deliveries, make_git: Callable[..., GitRepo]) -> None:
    repo = make_git()
    second = repo.commit({"b": "b"}, "second")
    register(services, "Codertocat/Hello-World", repo)
    waiting = post(client, "github", fixture("github/push-branch.json", {PUSH_AFTER: repo.head("HEAD~1")}),
                   "push", "stored")
    half_done = post(client, "github", fixture("github/push-branch.json", {PUSH_AFTER: second}), "push", "claimed")
    # A process that claimed the second one and died (a pid that is not running on this host).
    from runner import owner

    dead = owner.current().rsplit(":", 2)[0] + ":999999999:0"  # this machine, a pid that is gone
    with deliveries.engine.begin() as conn:
        conn.execute(tables.deliveries.update().where(tables.deliveries.c.id == half_done)
                     .values(state="processing", error=dead, processed_at=time.time()))
    assert runs(services) == []

    restarted = IntakeWorker(services, poll_s=300)
    restarted.start()
    try:
        wait_for(lambda: {deliveries.get(i).state for i in (waiting, half_done)} == {"processed"})
    finally:
        restarted.stop()
    assert sorted(r.commit_sha or "" for r in runs(services)) == sorted([repo.head("HEAD~1"), second])


def test_a_live_claim_is_not_taken_back(services: Services, deliveries: Deliveries, worker: IntakeWorker) -> None:
    row = deliveries.record("github", "x", None, "push", {})
    assert row is not None
    claimed = deliveries.claim_next(worker.owner)  # this very process: alive
    assert claimed is not None and claimed.id == row
    assert worker.recover() == []
    assert deliveries.get(row).state == "processing"
    # Another host's claim is trusted until it goes stale.
    with deliveries.engine.begin() as conn:
        conn.execute(tables.deliveries.update().values(error="elsewhere:1:1", processed_at=time.time() - 3600))
    assert IntakeWorker(services, stale_s=7200).recover() == []
    assert IntakeWorker(services, stale_s=60).recover() == [row]
    assert deliveries.get(row).state == "received"
