"""The examples in examples/, run for real in Docker through `clarity run`."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.e2e.conftest import EXAMPLES, Env

pytestmark = pytest.mark.docker


def _tasks(env: Env, run_id: int) -> dict[str, Any]:
    return {t.name: t for t in env.store().list_tasks(run_id)}


def test_build_test_package(env: Env, docker_client: Any, no_leftovers: Callable[[str], None]) -> None:
    repo = env.repo(EXAMPLES / "build-test-package")
    r = env.clarity(repo, "run")
    assert r.code == 0, r.out + r.err
    run = env.store().list_runs()[0]
    assert (run.workflow, run.state, run.event) == ("build-test-package", "succeeded", "push")
    tasks = _tasks(env, run.id)
    assert [t for t in tasks] == ["build", "test", "package", "check-package"]
    assert all(t.state == "succeeded" for t in tasks.values())
    assert tasks["build"].outputs == {"built": "2 modules"}
    short = run.commit_sha[:8]
    assert tasks["package"].output == {"file": f"calc-{short}.tar.gz"}
    # the artifact is kept, and was handed to the task that needs it
    kept = Path(tasks["package"].artifacts_dir) / "dist" / f"calc-{short}.tar.gz"
    with tarfile.open(kept) as tar:
        assert tar.getnames() == ["calc.py"]
    logs = "\n".join(line for _t, _ts, line in env.store().logs(run.id, "check-package"))
    assert f'package output: {{"file": "calc-{short}.tar.gz"}}' in logs
    test_logs = "\n".join(line for _t, _ts, line in env.store().logs(run.id, "test"))
    assert "Ran 2 tests" in test_logs and "OK" in test_logs
    # the summary table and verdict reach the user
    assert "check-package  succeeded" in r.out and f"run {run.id} succeeded" in r.out
    no_leftovers("build-test-package")


def test_fan_out_fan_in(env: Env, docker_client: Any, no_leftovers: Callable[[str], None]) -> None:
    repo = env.repo(EXAMPLES / "fan-out-fan-in")
    r = env.clarity(repo, "run", "--parallel", "4")
    assert r.code == 0, r.out + r.err
    run = env.store().list_runs()[0]
    tasks = _tasks(env, run.id)
    sums = {name: int(tasks[name].outputs["sum"]) for name in ("shard-1", "shard-2", "shard-3", "shard-4")}
    assert sums == {"shard-1": 1 + 25, "shard-2": 4 + 36, "shard-3": 9 + 49, "shard-4": 16 + 64}
    assert tasks["combine"].output == {"total": sum(n * n for n in range(1, 9))}
    # the shards ran in parallel: each started before another ended
    shards = [tasks[n] for n in sums]
    assert max(t.started_at for t in shards) < min(t.finished_at for t in shards)
    assert tasks["prepare"].finished_at <= min(t.started_at for t in shards)
    assert max(t.finished_at for t in shards) <= tasks["combine"].started_at
    no_leftovers("fan-out-fan-in")


def test_retry_and_timeout(env: Env, docker_client: Any, no_leftovers: Callable[[str], None]) -> None:
    repo = env.repo(EXAMPLES / "retry-and-timeout")
    r = env.clarity(repo, "run")
    assert r.code == 1, r.out + r.err
    run = env.store().list_runs()[0]
    assert run.state == "failed"
    tasks = _tasks(env, run.id)
    assert tasks["flaky"].state == "succeeded" and tasks["flaky"].attempt == 2
    assert tasks["slow"].state == "timed_out" and "timed out after 2s" in tasks["slow"].error
    assert tasks["slow"].duration_s is not None and tasks["slow"].duration_s < 15
    assert tasks["publish"].state == "skipped" and "needs 'slow', which timed out" in tasks["publish"].error
    assert tasks["independent"].state == "failed" and tasks["independent"].exit_code == 3
    flaky_logs = [line for _t, _ts, line in env.store().logs(run.id, "flaky")]
    assert "attempt 1" in flaky_logs and "attempt 2" in flaky_logs
    assert "timed out" in r.out and "retrying" in r.out
    no_leftovers("retry-and-timeout")
