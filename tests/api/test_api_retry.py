"""Whether an errored task is tried again, through the runner protocol over HTTP: an error the
runner marks `retryable: false` (an image that does not exist) ends the task at once; another
infrastructure error is tried once more."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.client import HttpPeer
from runner.spec import Outcome, TaskResult
from tests.api.conftest import Api
from tests.runners.conftest import register


@pytest.mark.parametrize("retryable, attempts, state", [(False, 1, "errored"), (True, 2, "errored")])
def test_a_permanent_error_is_not_tried_again(api: Api, source_repo: Path, retryable: bool, attempts: int,
                                              state: str) -> None:
    api.services.repos.add(name="acme/app", url=str(source_repo))
    run_id = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main"}).json()["runs"][0]
    peer = HttpPeer("http://testserver", register(api, "r1"), timeout=5, client=api.client)
    for _ in range(attempts):
        lease = peer.lease("r1", ["linux"], 0)
        assert lease is not None and lease.spec.task == "build"
        now = time.time()
        peer.finish(lease.lease_id, TaskResult(Outcome.ERRORED, error="image 'x:1' is not present locally",
                                               started_at=now, finished_at=now, retryable=retryable))
    build = {t["name"]: t for t in api.get(f"/api/v1/runs/{run_id}").json()["tasks"]}["build"]
    assert (build["state"], build["attempt"]) == (state, attempts)
    assert peer.lease("r1", ["linux"], 0) is None  # nothing more to do: not tried again, the rest skipped
    assert api.get(f"/api/v1/runs/{run_id}").json()["state"] == "errored"


def test_retryable_travels_only_when_false() -> None:
    assert "retryable" not in TaskResult(Outcome.ERRORED).to_json()  # a controller before it reads the rest
    sent = TaskResult(Outcome.ERRORED, retryable=False).to_json()
    assert sent["retryable"] is False and TaskResult.from_json(sent).retryable is False
