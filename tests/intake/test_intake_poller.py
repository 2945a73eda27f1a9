"""The git poller: first poll records, later polls turn new commits and tags into pushes; one run per push."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest
from starlette.testclient import TestClient

from controller.intake import IntakeWorker
from controller.poller import Poller
from controller.services import Services
from tests.intake.intake_support import GitRepo, fixture, git, needs_fixtures, register, runs, signed


def polled(services: Services, name: str, repo: GitRepo | str, interval: float = 60.0) -> Poller:
    register(services, name, repo, poll_interval_s=interval)
    return Poller(services, jitter=0.0)


def test_first_poll_only_records_the_refs(services: Services, make_git: Callable[..., GitRepo]) -> None:
    repo = make_git()
    repo.commit({"a": "1"}, "second")
    repo.tag("v1.0")
    poller = polled(services, "acme/app", repo)
    [result] = poller.tick().values()
    assert result is not None and result.first and result.runs == []
    assert runs(services) == []
    row = services.repos.get("acme/app")
    assert services.repos.refs(row.id) == {"refs/heads/main": repo.head(), "refs/tags/v1.0": repo.head()}
    assert row.polled_at is not None
    assert poller.tick() == {}  # not due again before its interval


def test_a_new_commit_makes_one_push_run(services: Services, make_git: Callable[..., GitRepo]) -> None:
    repo = make_git()
    poller = polled(services, "acme/app", repo)
    poller.tick()
    old = repo.head()
    new = repo.commit({"src/x.py": "x = 1\n"}, "add x")
    row = services.repos.get("acme/app")
    result = poller.poll(row)
    [run] = runs(services)
    assert result.runs == [run.id] and result.pushes == 1
    assert (run.event, run.ref, run.commit_sha, run.workflow_file) == ("push", "refs/heads/main", new, ".clarity/ci.yaml")
    assert run.context["git"]["message"] == "add x" and run.context["git"]["author"] == "Dev One"
    assert run.context["changed_files"] == ["src/x.py"]  # the Starter diffed old..new
    assert services.queue.depth() == 1
    assert old != new
    # Nothing changed: nothing more.
    assert poller.poll(services.repos.get("acme/app")).runs == []
    assert len(runs(services)) == 1


def test_new_branch_new_tag_and_deleted_branch(services: Services, make_git: Callable[..., GitRepo]) -> None:
    repo = make_git()
    git(repo.path, "branch", "doomed")
    poller = polled(services, "acme/app", repo)
    poller.tick()
    git(repo.path, "branch", "-D", "doomed")
    git(repo.path, "checkout", "-q", "-b", "feature")
    feature = repo.commit({"f": "1"}, "feature work")
    repo.tag("v2.0")
    repo.tag("nightly", annotated=False)  # a tag no workflow listens to
    poller.poll(services.repos.get("acme/app"))
    got = {(r.event, r.ref, r.workflow_file, r.commit_sha) for r in runs(services)}
    assert got == {("push", "refs/heads/feature", ".clarity/ci.yaml", feature),
                   ("tag", "refs/tags/v2.0", ".clarity/release.yaml", feature)}
    refs = services.repos.refs(services.repos.get("acme/app").id)
    assert "refs/heads/doomed" not in refs and refs["refs/tags/v2.0"] == feature


def test_skip_ci_commit_is_recorded_but_not_run(services: Services, make_git: Callable[..., GitRepo]) -> None:
    repo = make_git()
    poller = polled(services, "acme/app", repo)
    poller.tick()
    head = repo.commit({"d": "1"}, "docs only [skip ci]")
    poller.poll(services.repos.get("acme/app"))
    assert runs(services) == []
    assert services.repos.refs(services.repos.get("acme/app").id)["refs/heads/main"] == head


@needs_fixtures
def test_a_push_seen_by_webhook_and_poller_makes_one_run(client: TestClient, services: Services,
                                                         worker: IntakeWorker,
                                                         make_git: Callable[..., GitRepo]) -> None:
    repo = make_git()
    register(services, "Codertocat/Hello-World", repo, poll_interval_s=60)
    poller = Poller(services, jitter=0.0)
    poller.tick()
    parent = repo.head()
    head = repo.commit({"README.md": "hi"}, "Update README")
    body = fixture("github/push-branch.json", {"199eddf46df50de8d02e99bf1c5fdb4101338224": head,
                                               "a10867b14bb761a232cd80139fbd4c0d33264240": parent})
    body = body.replace(b'"refs/heads/master"', b'"refs/heads/main"')
    answer = client.post("/api/v1/hooks/github", content=body, headers=signed("github", body, "push", "w+p"))
    assert answer.status_code == 202
    worker.drain()
    result = poller.poll(services.repos.get("Codertocat/Hello-World"))
    assert result.pushes == 1 and result.runs == []
    [run] = runs(services)
    assert (run.commit_sha, run.ref) == (head, "refs/heads/main")


def test_an_unreachable_repository_does_not_stop_the_others(services: Services, tmp_path: Path,
                                                            make_git: Callable[..., GitRepo]) -> None:
    good = make_git()
    register(services, "acme/gone", f"file://{tmp_path}/gone", poll_interval_s=60)
    register(services, "acme/good", good, poll_interval_s=60)
    poller = Poller(services, jitter=0.0)
    gone_id = services.repos.get("acme/gone").id
    good_id = services.repos.get("acme/good").id
    t0 = time.time()
    first = poller.tick(now=t0)
    assert first[gone_id] is None and first[good_id] is not None
    assert poller._failing[gone_id].retry_at == t0 + 60  # first retry after one interval
    good.commit({"n": "1"}, "next")
    second = poller.tick(now=t0 + 61)
    assert second[gone_id] is None  # tried again, failed again: the wait doubles
    result = second[good_id]
    assert result is not None and len(result.runs) == 1
    assert poller._failing[gone_id].retry_at == t0 + 61 + 120
    good.commit({"n": "2"}, "again")
    third = poller.tick(now=time.time() + 61)
    assert gone_id not in third and third[good_id] is not None
    assert len(runs(services)) == 2


def test_repositories_without_polling_or_disabled_are_not_polled(services: Services,
                                                                 make_git: Callable[..., GitRepo]) -> None:
    register(services, "acme/hooks-only", make_git())
    register(services, "acme/off", make_git(), poll_interval_s=60)
    services.repos.update("acme/off", enabled=False)
    assert Poller(services).tick() == {}


def test_the_thread_polls_and_stops(services: Services, make_git: Callable[..., GitRepo]) -> None:
    repo = make_git()
    register(services, "acme/app", repo, poll_interval_s=0.05)
    poller = Poller(services, tick_s=0.05)
    poller.start()
    try:
        deadline = time.monotonic() + 10
        while services.repos.get("acme/app").polled_at is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        head = repo.commit({"t": "1"}, "threaded")
        while not runs(services):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        poller.stop()
    assert runs(services)[0].commit_sha == head
