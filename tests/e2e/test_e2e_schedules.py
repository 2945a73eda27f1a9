"""Schedules with real processes: two `clarity controller`s on one PostgreSQL database, each with
its schedule loop, and a workflow that fires every minute: each tick makes exactly one run.

This test waits for a real minute boundary (up to about a minute): the minute is what a cron
schedule can express, and no clock is injected into a real process."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import git
from tests.processes import ControllerProcess, clarity_env

pytestmark = pytest.mark.postgres

EVERY_MINUTE = """\
workflow:
  name: minutely
  triggers:
    - type: schedule
      cron: "* * * * *"
      catchup: none
  tasks:
    - name: tick
      image: clarity-busybox:latest
      commands: ["echo tick"]
"""


def test_two_controllers_on_one_postgresql_fire_each_tick_once(tmp_path: Path, postgres_server: str) -> None:
    import sqlalchemy as sa

    name = f"sched_{int(time.time() * 1000)}"
    admin = sa.create_engine(postgres_server + "clarity", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_server + name
    src = tmp_path / "src"
    (src / ".clarity").mkdir(parents=True)
    (src / ".clarity" / "minutely.yaml").write_text(EVERY_MINUTE)
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "every minute")
    controllers: list[ControllerProcess] = []
    try:
        for i in (1, 2):  # no built-in runner: the runs stay queued, which is all this test counts
            home = tmp_path / f"home{i}"
            if controllers:  # the first one made the admin key in the shared database
                home.mkdir()
                (home / "api-key").write_text(controllers[0].key + "\n")
            controllers.append(ControllerProcess(home, tmp_path / f"controller{i}.log",
                                                 env=clarity_env(home, CLARITY_DATABASE_URL=url)))
            controllers[-1].start()
        added = subprocess.run([*_cli(), "repo", "add", "acme/app", "--url", str(src), "--controller",
                                controllers[0].url], env=controllers[0].env, capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        with controllers[0].api() as api:
            _wait(lambda: api.get("/api/v1/schedules").json()["schedules"], 30, "the schedule was never read")
        start = datetime.now(timezone.utc)
        boundary = (start.replace(second=0, microsecond=0).timestamp() + 60)  # the next tick: both controllers race
        time.sleep(max(0.0, boundary - time.time()) + 8)
        with controllers[1].api() as api:
            runs = [r for r in api.get("/api/v1/runs").json()["runs"] if r["workflow"] == "minutely"]
        ticks = sorted(r["trigger"]["tick"] for r in runs)
        expected = datetime.fromtimestamp(boundary, timezone.utc).isoformat().replace("+00:00", "Z")
        assert expected in ticks, (ticks, [c.log.read_text()[-1500:] for c in controllers])
        assert len(ticks) == len(set(ticks)), ticks  # no tick fired twice
        assert all(r["event"] == "schedule" for r in runs)
        logs = "".join(c.log.read_text() for c in controllers)
        assert logs.count(f"tick={expected}") == 1, logs[-3000:]  # one controller started it
    finally:
        for c in controllers:
            c.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "controller.cli"]


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.3)
    return value
