"""POST /api/v1/hooks/{forge}: real forge payloads in, verified, stored, 202 at once; the worker makes the runs."""

from __future__ import annotations

import json
from typing import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from controller.intake import IntakeWorker
from controller.services import Services
from controller.store.deliveries import Deliveries
from tests.intake.intake_support import SECRET, GitRepo, MAX_BODY, edit, fixture, needs_fixtures, register, runs, signed

pytestmark = needs_fixtures

URL = "/api/v1/hooks/{}"


@pytest.fixture
def local(make_git: Callable[..., GitRepo]) -> tuple[GitRepo, str, str]:
    """A repository with two commits: (repo, parent, head)."""
    repo = make_git()
    parent = repo.head()
    head = repo.commit({"README.md": "hello\n"}, "Update README")
    return repo, parent, head


# (fixture, forge, event header, repository name, fixture sha -> "parent" | "head", expected run)
CASES = [
    ("github/push-branch.json", "github", "push", "Codertocat/Hello-World",
     {"199eddf46df50de8d02e99bf1c5fdb4101338224": "head", "a10867b14bb761a232cd80139fbd4c0d33264240": "parent"},
     (".clarity/ci.yaml", "refs/heads/master", "push")),
    ("gitlab/push-branch.json", "gitlab", "Push Hook", "mike/diaspora",
     {"da1560886d4f094c3e6c9ef40349f7d38b5d27d7": "head", "95790bf891e76fee5e1747ab589903a6a1f80f22": "parent"},
     (".clarity/ci.yaml", "refs/heads/master", "push")),
    ("gitea/push-branch.json", "gitea", "push", "Test-CI/multi-line-secrets",
     {"29be01c073851cf0db0c6a466e396b725a670453": "head", "6efcf5b7c98f3e7a491675164b7a2e7acac27941": "parent"},
     (".clarity/ci.yaml", "refs/heads/main", "push")),
    ("github/pull_request-opened.json", "github", "pull_request", "Codertocat/Hello-World",
     {"ec26c3e57ca3a959ca5aad62de7213c562f8c821": "head"},
     (".clarity/ci.yaml", "refs/pull/2/head", "pull_request")),
    ("github/pull_request-synchronize.json", "github", "pull_request", "Codertocat/Hello-World",
     {"ec26c3e57ca3a959ca5aad62de7213c562f8c821": "head"},
     (".clarity/ci.yaml", "refs/pull/2/head", "pull_request")),
    ("gitlab/merge_request-open.json", "gitlab", "Merge Request Hook", "gitlabhq/gitlab-test",
     {"da1560886d4f094c3e6c9ef40349f7d38b5d27d7": "head"},
     (".clarity/ci.yaml", "refs/pull/1/head", "pull_request")),
    ("gitea/pull_request-opened.json", "gitea", "pull_request", "jcitizen/my-repo",
     {"2eba238e33607c1fa49253182e9fff42baafa1eb": "head"},
     (".clarity/ci.yaml", "refs/pull/1/head", "pull_request")),
    ("github/push-tag-create.json", "github", "push", "dev2/drone-test-go",
     {"d2b75aa7797ec26b088fa2dd527e9d2c052fcedd": "head"},
     (".clarity/release.yaml", "refs/tags/v0.0.1", "tag")),
    ("gitlab/tag_push-create.json", "gitlab", "Tag Push Hook", "jsmith/example",
     {"82b3d5ae55f7080f1e6022629cdb57bfae7cccc7": "head"},
     (".clarity/release.yaml", "refs/tags/v1.0.0", "tag")),
]


@pytest.mark.parametrize("path,forge,event,name,shas,expected", CASES, ids=[c[0] for c in CASES])
def test_fixture_delivery_makes_one_run_for_its_commit(
        client: TestClient, services: Services, worker: IntakeWorker, deliveries: Deliveries,
        local: tuple[GitRepo, str, str], path: str, forge: str, event: str, name: str,
        shas: dict[str, str], expected: tuple[str, str, str]) -> None:
    repo, parent, head = local
    row = register(services, name, repo, forge=forge)
    body = fixture(path, {old: {"head": head, "parent": parent}[which] for old, which in shas.items()})
    answer = client.post(URL.format(forge), content=body, headers=signed(forge, body, event, "d-1"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"
    stored = deliveries.get(answer.json()["delivery"])
    assert (stored.state, stored.repo_id, stored.event) == ("received", row.id, event)
    assert runs(services) == []  # nothing happens on the request path

    assert worker.drain() == 1
    made = runs(services)
    assert len(made) == 1, [(r.workflow_file, r.state, r.message) for r in made]
    run = made[0]
    assert (run.workflow_file, run.ref, run.event, run.commit_sha, run.repo) == (*expected, head, name)
    assert run.state in ("queued", "running")
    assert run.trigger["delivery"] == "d-1" and run.trigger["forge"] == forge
    assert [t.state for t in services.store.list_tasks(run.id)] == ["queued"]
    assert services.queue.depth() == 1
    done = deliveries.get(stored.id)
    assert done.state == "processed" and f"runs {run.id}" in (done.error or "")


def test_same_delivery_twice_makes_one_run(client: TestClient, services: Services, worker: IntakeWorker,
                                           deliveries: Deliveries, local: tuple[GitRepo, str, str]) -> None:
    repo, parent, head = local
    register(services, "Codertocat/Hello-World", repo)
    body = fixture("github/push-branch.json", {"199eddf46df50de8d02e99bf1c5fdb4101338224": head})
    headers = signed("github", body, "push", "same-guid")
    first = client.post(URL.format("github"), content=body, headers=headers)
    second = client.post(URL.format("github"), content=body, headers=headers)
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (second.status_code, second.json()) == (202, {"status": "duplicate"})
    worker.drain()
    third = client.post(URL.format("github"), content=body, headers=headers)  # redelivered after processing
    assert third.json() == {"status": "duplicate"}
    worker.drain()
    assert len(runs(services)) == 1
    assert len(deliveries.recent()) == 1


def test_same_push_in_two_deliveries_makes_one_run(client: TestClient, services: Services, worker: IntakeWorker,
                                                   deliveries: Deliveries, local: tuple[GitRepo, str, str]) -> None:
    repo, parent, head = local
    register(services, "Codertocat/Hello-World", repo)
    body = fixture("github/push-branch.json", {"199eddf46df50de8d02e99bf1c5fdb4101338224": head})
    for guid in ("a", "b"):
        assert client.post(URL.format("github"), content=body, headers=signed("github", body, "push", guid)).status_code == 202
    worker.drain()
    assert len(runs(services)) == 1
    notes = sorted(d.error or "" for d in deliveries.recent())
    assert "a run for this commit exists already" in notes[0] + notes[1]


@pytest.mark.parametrize("forge,event,bad", [
    ("github", "push", {"X-Hub-Signature-256": "sha256=" + "0" * 64}),
    ("github", "push", {"X-Hub-Signature-256": ""}),
    ("gitea", "push", {"X-Gitea-Signature": "ab" * 32}),
    ("gitlab", "Push Hook", {"X-Gitlab-Token": "not-the-secret"}),
    ("gitlab", "Push Hook", {"X-Gitlab-Token": ""}),
])
def test_wrong_or_missing_signature_is_401_and_nothing_is_stored(
        client: TestClient, services: Services, deliveries: Deliveries, local: tuple[GitRepo, str, str],
        forge: str, event: str, bad: dict[str, str]) -> None:
    register(services, "Codertocat/Hello-World", local[0], forge=forge)
    body = fixture("github/push-branch.json")
    if forge == "gitlab":
        body = edit(body, lambda d: d.update(project={"path_with_namespace": "Codertocat/Hello-World"}))
    headers = {**signed(forge, body, event, "d-401"), **bad}
    answer = client.post(URL.format(forge), content=body, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert SECRET not in answer.text
    assert deliveries.recent() == [] and runs(services) == []


def test_body_signed_then_changed_is_401(client: TestClient, services: Services, deliveries: Deliveries,
                                        local: tuple[GitRepo, str, str]) -> None:
    register(services, "Codertocat/Hello-World", local[0])
    body = fixture("github/push-branch.json")
    headers = signed("github", body, "push", "d")
    answer = client.post(URL.format("github"), content=body.replace(b"master", b"mainly"), headers=headers)
    assert answer.status_code == 401 and deliveries.recent() == []


def test_repository_without_a_secret_refuses_every_delivery(client: TestClient, services: Services,
                                                            deliveries: Deliveries,
                                                            local: tuple[GitRepo, str, str]) -> None:
    register(services, "Codertocat/Hello-World", local[0], secret=None)
    body = fixture("github/push-branch.json")
    answer = client.post(URL.format("github"), content=body, headers=signed("github", body, "push", "d", secret=""))
    assert answer.status_code == 401
    assert "set one" in answer.json()["error"]["message"]
    assert deliveries.recent() == []


def test_malformed_json_is_400(client: TestClient, services: Services, deliveries: Deliveries,
                               local: tuple[GitRepo, str, str]) -> None:
    register(services, "Codertocat/Hello-World", local[0])
    for body, words in ((b'{"ref": "refs/heads/main",', "not valid JSON"), (b"[1, 2]", "not an object"),
                        (b"payload=%7B%7D", "application/json")):
        answer = client.post(URL.format("github"), content=body, headers=signed("github", body, "push", "d"))
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "bad_delivery"
        assert words in answer.json()["error"]["message"]
    assert deliveries.recent() == []


def test_unknown_forge_is_404(client: TestClient) -> None:
    answer = client.post(URL.format("bitbucket"), content=b"{}")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_forge"
    assert "github" in answer.json()["error"]["message"]


def test_unknown_repository_is_404_and_nothing_is_stored(client: TestClient, deliveries: Deliveries) -> None:
    body = fixture("github/push-branch.json")
    answer = client.post(URL.format("github"), content=body, headers=signed("github", body, "push", "d"))
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_repo"
    assert "Codertocat/Hello-World" in answer.json()["error"]["message"]
    assert deliveries.recent() == []


def test_missing_event_header_is_400(client: TestClient, services: Services, local: tuple[GitRepo, str, str]) -> None:
    register(services, "Codertocat/Hello-World", local[0])
    body = fixture("github/push-branch.json")
    headers = signed("github", body, "push", "d")
    del headers["X-GitHub-Event"]
    answer = client.post(URL.format("github"), content=body, headers=headers)
    assert answer.status_code == 400
    assert "X-GitHub-Event" in answer.json()["error"]["message"]


@pytest.mark.parametrize("event,path,why", [
    ("issues", "github/push-branch.json", "Clarity does not act on 'issues' events"),
    ("create", "github/create-tag.json", "Clarity does not act on 'create' events"),
    ("pull_request", "github/pull_request-labeled-fork.json",  # the action, not the event, is what it ignores
     "Clarity does not act on 'pull_request' events with action 'labeled'")])
def test_events_clarity_ignores_are_stored_as_ignored(client: TestClient, services: Services, worker: IntakeWorker,
                                                      deliveries: Deliveries, local: tuple[GitRepo, str, str],
                                                      event: str, path: str, why: str) -> None:
    name = json.loads(fixture(path))["repository"]["full_name"]
    register(services, name, local[0])
    body = fixture(path)
    answer = client.post(URL.format("github"), content=body, headers=signed("github", body, event, "d"))
    assert answer.status_code == 202
    assert answer.json()["status"] == "ignored"
    stored = deliveries.get(answer.json()["delivery"])
    assert (stored.state, stored.error) == ("ignored", why)
    assert worker.drain() == 0 and runs(services) == []


def test_a_missing_field_is_422_and_kept_as_failed(client: TestClient, services: Services, deliveries: Deliveries,
                                                   local: tuple[GitRepo, str, str]) -> None:
    register(services, "Codertocat/Hello-World", local[0])
    body = edit(fixture("github/push-branch.json"), lambda d: d.pop("after"))
    answer = client.post(URL.format("github"), content=body, headers=signed("github", body, "push", "d"))
    assert answer.status_code == 422
    assert "after" in answer.json()["error"]["message"]
    [stored] = deliveries.recent()
    assert stored.state == "failed" and "after" in (stored.error or "")


def test_ping_is_answered_and_starts_nothing(client: TestClient, services: Services, deliveries: Deliveries,
                                            local: tuple[GitRepo, str, str]) -> None:
    register(services, "Octocoders/Hello-World", local[0])
    body = fixture("github/ping.json")
    answer = client.post(URL.format("github"), content=body, headers=signed("github", body, "ping", "p"))
    assert (answer.status_code, answer.json()) == (200, {"status": "pong"})
    assert deliveries.recent() == []


def _chunks(data: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_oversized_body_is_413_by_header_and_by_count(client: TestClient, services: Services,
                                                     deliveries: Deliveries,
                                                     local: tuple[GitRepo, str, str]) -> None:
    register(services, "Codertocat/Hello-World", local[0])
    body = edit(fixture("github/push-branch.json"), lambda d: d.update(padding="x" * MAX_BODY))
    headers = signed("github", body, "push", "big")
    answer = client.post(URL.format("github"), content=body, headers=headers)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    # No Content-Length (chunked): counted while reading.
    answer = client.post(URL.format("github"), content=_chunks(body), headers=headers)
    assert answer.status_code == 413
    assert deliveries.recent() == []


def test_body_at_the_limit_is_read(client: TestClient, services: Services, local: tuple[GitRepo, str, str]) -> None:
    register(services, "Codertocat/Hello-World", local[0])
    base = fixture("github/push-branch.json")
    body = edit(base, lambda d: d.update(padding=""))
    body = edit(base, lambda d: d.update(padding="x" * (MAX_BODY - len(body))))
    assert len(body) == MAX_BODY
    answer = client.post(URL.format("github"), content=_chunks(body), headers=signed("github", body, "push", "edge"))
    assert answer.status_code == 202, answer.text


def test_gitea_secret_in_the_body_is_not_kept(client: TestClient, services: Services, deliveries: Deliveries,
                                              local: tuple[GitRepo, str, str]) -> None:
    register(services, "jcitizen/my-repo", local[0], forge="gitea")
    body = fixture("gitea/pull_request-opened.json")
    assert b'"secret"' in body
    answer = client.post(URL.format("gitea"), content=body, headers=signed("gitea", body, "pull_request", "g"))
    assert answer.status_code == 202
    assert "secret" not in deliveries.get(answer.json()["delivery"]).payload


def test_only_post(client: TestClient) -> None:
    assert client.get(URL.format("github")).status_code == 405


def test_delivery_at_another_forges_endpoint_is_refused(client: TestClient, services: Services, deliveries: Deliveries,
                                                        local: tuple[GitRepo, str, str]) -> None:
    # A GitHub-format delivery for a repository registered as gitlab used to be accepted.
    register(services, "Codertocat/Hello-World", local[0], forge="gitlab")
    body = fixture("github/push-branch.json")
    answer = client.post(URL.format("github"), content=body, headers=signed("github", body, "push", "d-wrong"))
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": "wrong_forge",
        "message": "Codertocat/Hello-World is registered as a gitlab repository, but this delivery came to the "
                   "github endpoint: use /api/v1/hooks/gitlab"}
    assert deliveries.recent() == []
