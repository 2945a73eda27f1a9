"""Repositories, manual triggers, runs, logs, cancel, re-run and the queue, through the API."""

from __future__ import annotations

from pathlib import Path

from tests.api.conftest import Api
from controller.peer import InProcessPeer
from controller.services import Services
from runner.protocol import LogLine
from runner.spec import Outcome, TaskResult


def add_repo(api: Api, source: Path, name: str = "acme/app") -> dict[str, object]:
    resp = api.post("/api/v1/repos", {"name": name, "url": str(source), "forge": "github",
                                      "webhook_secret": "s3cret", "poll_interval": "5m"})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def drive(services: Services, outcomes: dict[str, Outcome]) -> list[str]:
    """Lease and finish queued tasks in-process with the given outcomes until none is left."""
    peer = InProcessPeer(services.queue, services.scheduler)
    done = []
    while (lease := peer.lease("test-runner", [], 0)) is not None:
        peer.logs(lease.lease_id, [LogLine(1, 1.0, f"hello from {lease.spec.task}")])
        peer.finish(lease.lease_id, TaskResult(outcomes.get(lease.spec.task, Outcome.SUCCEEDED), exit_code=0,
                                               started_at=10.0, finished_at=12.5))
        done.append(lease.spec.task)
    return done


def test_repos_crud(api: Api, source_repo: Path) -> None:
    repo = add_repo(api, source_repo)
    assert repo["name"] == "acme/app" and repo["forge"] == "github" and repo["poll_interval_s"] == 300.0
    assert repo["webhook_secret_set"] is True and "webhook_secret" not in repo
    resp = api.post("/api/v1/repos", {"name": "acme/app", "url": "/elsewhere"})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "conflict"
    plain = api.post("/api/v1/repos", {"name": "acme/lib", "url": "/x", "poll_interval": 90}).json()
    assert plain["forge"] == "generic" and plain["poll_interval_s"] == 90.0
    assert [r["name"] for r in api.get("/api/v1/repos", key=api.reader).json()["repos"]] == ["acme/app", "acme/lib"]
    assert api.get("/api/v1/repos/acme/app").json() == repo
    assert api.delete("/api/v1/repos/acme/lib").status_code == 204
    assert api.get("/api/v1/repos/acme/lib").status_code == 404


def test_trigger_and_runs(api: Api, source_repo: Path) -> None:
    add_repo(api, source_repo)
    resp = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main", "inputs": {"who": "ops"}})
    assert resp.status_code == 201, resp.text
    (run_id,) = resp.json()["runs"]
    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert run["state"] == "running" and run["event"] == "manual" and run["ref"] == "refs/heads/main"
    assert run["trigger"] == {"by": "api-key:ci-admin", "event": "manual"} and run["inputs"] == {"who": "ops"}
    assert [t["name"] for t in run["tasks"]] == ["build", "test"] and run["tasks"][0]["state"] == "queued"
    assert api.get("/api/v1/queue").json()["depth"] == 1
    assert drive(api.services, {}) == ["build", "test"]
    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert run["state"] == "succeeded" and run["tasks"][1]["duration_s"] == 2.5
    logs = api.get(f"/api/v1/runs/{run_id}/logs").json()
    assert [(l["task"], l["seq"], l["line"]) for l in logs["lines"]] == [
        ("build", 1, "hello from build"), ("test", 1, "hello from test")]
    assert api.get(f"/api/v1/runs/{run_id}/logs?task=test&after=1").json()["lines"] == []
    assert api.get(f"/api/v1/runs/{run_id}/logs?task=nope").status_code == 404
    assert api.get(f"/api/v1/runs/{run_id}/logs?after=1").status_code == 400
    assert api.post(f"/api/v1/runs/{run_id}/cancel").status_code == 409


def test_trigger_errors(api: Api, source_repo: Path) -> None:
    add_repo(api, source_repo)
    resp = api.post("/api/v1/repos/acme/app/trigger", {"ref": "no-such-branch"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "cannot_start"
    resp = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main", "workflow": ".clarity/none.yaml"})
    assert resp.status_code == 422
    resp = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main", "inputs": {"nope": "x"}})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_input"
    resp = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main", "inputs": {"who": ["x"]}})
    assert resp.status_code == 400 and "inputs.who" in resp.json()["error"]["message"]
    assert api.post("/api/v1/repos/acme/none/trigger", {"ref": "main"}).status_code == 404


def test_trigger_takes_a_bare_workflow_name_as_a_file_of_clarity(api: Api, source_repo: Path) -> None:
    add_repo(api, source_repo)
    resp = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main", "workflow": "ci.yaml"})
    assert resp.status_code == 201, resp.text
    (run_id,) = resp.json()["runs"]
    assert resp.json()["started"] == [{"id": run_id, "repo": "acme/app", "workflow": "ci",
                                       "workflow_file": ".clarity/ci.yaml", "state": "running"}]


def test_list_runs_filters_and_pages(api: Api, source_repo: Path) -> None:
    add_repo(api, source_repo)
    ids = [api.post("/api/v1/repos/acme/app/trigger", {"ref": "main"}).json()["runs"][0] for _ in range(3)]
    api.post(f"/api/v1/runs/{ids[0]}/cancel")
    page = api.get("/api/v1/runs?limit=2").json()
    assert [r["id"] for r in page["runs"]] == [ids[2], ids[1]] and page["next_before"] == ids[1]
    page = api.get(f"/api/v1/runs?limit=2&before={page['next_before']}").json()
    assert [r["id"] for r in page["runs"]] == [ids[0]] and page["next_before"] is None
    assert [r["id"] for r in api.get("/api/v1/runs?state=canceled").json()["runs"]] == [ids[0]]
    assert api.get("/api/v1/runs?repo=other/repo").json()["runs"] == []
    assert len(api.get("/api/v1/runs?repo=acme/app").json()["runs"]) == 3


def test_cancel(api: Api, source_repo: Path) -> None:
    add_repo(api, source_repo)
    (run_id,) = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main"}).json()["runs"]
    resp = api.post(f"/api/v1/runs/{run_id}/cancel")
    assert resp.status_code == 202
    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert run["state"] == "canceled" and {t["state"] for t in run["tasks"]} == {"canceled"}
    assert api.get("/api/v1/queue").json() == {"depth": 0, "leased": 0, "oldest_wait_s": None, "waiting": []}


def test_rerun_whole_and_failed_only(api: Api, source_repo: Path) -> None:
    add_repo(api, source_repo)
    (run_id,) = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main", "inputs": {"who": "ops"}}).json()["runs"]
    assert api.post(f"/api/v1/runs/{run_id}/rerun").status_code == 409  # still running
    drive(api.services, {"test": Outcome.FAILED})
    old = api.get(f"/api/v1/runs/{run_id}").json()
    assert old["state"] == "failed"

    resp = api.post(f"/api/v1/runs/{run_id}/rerun", {"failed_only": True})
    assert resp.status_code == 201, resp.text
    new = resp.json()
    assert new["rerun_of"] == run_id and new["commit_sha"] == old["commit_sha"] and new["inputs"] == {"who": "ops"}
    assert {t["name"]: t["state"] for t in new["tasks"]} == {"build": "succeeded", "test": "queued"}
    assert drive(api.services, {}) == ["test"]
    assert api.get(f"/api/v1/runs/{new['id']}").json()["state"] == "succeeded"
    lines = api.get(f"/api/v1/runs/{new['id']}/logs?task=build").json()["lines"]
    assert [l["line"] for l in lines] == ["hello from build"]  # copied from the first run

    again = api.post(f"/api/v1/runs/{new['id']}/rerun", {"failed_only": True})
    assert again.status_code == 409 and "no failed" in again.json()["error"]["message"]
    whole = api.post(f"/api/v1/runs/{run_id}/rerun", {"failed_only": False}).json()
    assert whole["rerun_of"] == run_id
    assert [t["state"] for t in whole["tasks"]] == ["queued", "pending"]
    assert drive(api.services, {}) == ["build", "test"]
