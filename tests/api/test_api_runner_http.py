"""The runner protocol over HTTP: `HttpPeer` against the app, lease to finish; and the ops routes."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.api.conftest import WORKFLOW, Api, git, runner_credential
from controller.engine import RunSpec
from controller.workflow.compile import GitInfo
from controller.workflow.lint import lint_text
from runner.client import ControllerError, HttpPeer
from runner.protocol import LeaseLost, LogLine
from runner.spec import Outcome, TaskResult, Workspace


def start_run(api: Api, source: Path) -> int:
    wf, _ = lint_text(WORKFLOW, ".clarity/ci.yaml")
    assert wf is not None
    sha = git(source, "rev-parse", "HEAD")
    scheduler = api.services.scheduler
    run_id = scheduler.create_run(RunSpec(
        workflow=wf, workflow_text=WORKFLOW, workspace=Workspace(repo=str(source), commit=sha),
        git=GitInfo(sha=sha, ref="refs/heads/main", branch="main"), event="push", repo="acme/app",
        inputs={"who": "remote"}))
    assert run_id is not None
    scheduler.start(run_id)
    return run_id


def peer(api: Api, key: str | None = None) -> HttpPeer:
    """A remote runner "remote-1" (labels: linux), registered on first use."""
    if key is None:
        known = getattr(api, "_remote_1", None)
        key = known or runner_credential(api, "remote-1", ["linux"])
        setattr(api, "_remote_1", key)
    return HttpPeer("http://testserver", key, timeout=5, client=api.client)


def round_trip(api: Api, source: Path) -> None:
    run_id = start_run(api, source)
    http = peer(api)
    for task in ("build", "test"):
        lease = http.lease("remote-1", ["linux"], 1.0)
        assert lease is not None and lease.spec.task == task and lease.spec.run_id == str(run_id)
        assert http.heartbeat(lease.lease_id).cancel is False
        batch = [LogLine(1, 1.0, f"{task} line 1"), LogLine(2, 1.1, f"{task} line 2")]
        http.logs(lease.lease_id, batch)
        http.logs(lease.lease_id, batch)  # a retried batch is stored once
        result = TaskResult(Outcome.SUCCEEDED, exit_code=0, started_at=5.0, finished_at=7.0, outputs={"k": "v"})
        http.finish(lease.lease_id, result)
        http.finish(lease.lease_id, result)  # idempotent
        with pytest.raises(LeaseLost):
            http.heartbeat(lease.lease_id)
    assert http.lease("remote-1", [], 0) is None  # 204
    assert api.services.scheduler.wait(run_id, timeout_s=5) == "succeeded"
    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert [(t["state"], t["outputs"]) for t in run["tasks"]] == [("succeeded", {"k": "v"})] * 2
    lines = api.get(f"/api/v1/runs/{run_id}/logs?task=build").json()["lines"]
    assert [(l["seq"], l["line"]) for l in lines] == [(1, "build line 1"), (2, "build line 2")]


def test_round_trip(api: Api, source_repo: Path) -> None:
    round_trip(api, source_repo)
    text = api.client.get("/metrics").text
    assert "clarity_queue_wait_seconds_count 2.0" in text
    assert 'clarity_task_duration_seconds_count{outcome="succeeded"} 2.0' in text
    assert 'clarity_runs{state="succeeded"} 1.0' in text
    assert 'clarity_tasks{state="succeeded"} 2.0' in text
    assert "clarity_queue_length 0.0" in text
    assert "clarity_database_up 1.0" in text


def test_round_trip_on_each_database(make_api: Callable[..., Api], database_url: str, source_repo: Path) -> None:
    round_trip(make_api(database_url), source_repo)


def test_cancel_reaches_the_runner_by_heartbeat(api: Api, source_repo: Path) -> None:
    run_id = start_run(api, source_repo)
    http = peer(api)
    lease = http.lease("remote-1", [], 0)
    assert lease is not None
    assert api.post(f"/api/v1/runs/{run_id}/cancel").status_code == 202
    assert http.heartbeat(lease.lease_id).cancel is True
    http.finish(lease.lease_id, TaskResult(Outcome.CANCELED, error="canceled"))
    assert api.services.scheduler.wait(run_id, timeout_s=5) == "canceled"


def test_client_errors(api: Api) -> None:
    with pytest.raises(ControllerError) as info:
        peer(api, "clk_wrong").lease("r", [], 0)
    assert info.value.status == 401
    with pytest.raises(ControllerError) as info:
        HttpPeer("http://127.0.0.1:9", "k", timeout=0.5).heartbeat("x")
    assert info.value.status is None


def test_health_and_readiness(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 200

    def down() -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(api.services.store.engine, "connect", down)
    resp = api.client.get("/readyz")
    assert resp.status_code == 503 and resp.json()["status"] == "unavailable"
    text = api.client.get("/metrics").text
    assert "clarity_database_up 0.0" in text
    assert api.client.get("/healthz").status_code == 200


def test_metrics_before_any_work(api: Api) -> None:
    resp = api.client.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    for series in ("clarity_queue_wait_seconds_bucket", "clarity_task_duration_seconds_bucket",
                   "clarity_queue_length", "clarity_queue_oldest_wait_seconds", "# TYPE clarity_runs gauge"):
        assert series in resp.text
