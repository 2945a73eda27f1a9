"""A fleet of runner agents as real processes: a controller (`clarity controller`, no built-in runner)
and several `clarity runner` processes on 127.0.0.1, the repository served by `git http-backend`
(smart HTTP), tasks in Docker.

- 30 tasks of three workflows over three runners of different labels and capacities: each task ran
  once, on a runner whose labels cover the task's, with its logs complete and in order.
- A runner killed with SIGKILL mid-task: its lease expires (CLARITY_LEASE_S=4), the task runs again
  on another runner (attempt 2), the run completes; the dead runner's container is left to the
  next start-up sweep on that machine (the one of a runner started after the kill), not removed by a
  runner that was already running.
- The controller stopped for ~10 s mid-task (SIGTERM, then a new process on the same database and
  port): the runner keeps the task going, buffers its logs and retries, and the run completes with
  every line, in order, once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.conftest import git
from tests.e2e.githttp import GitHttpServer
from tests.processes import ROOT, ControllerProcess, clarity_env, wait_until

pytestmark = pytest.mark.docker

LEASE_S = 4


def _env(home: Path) -> dict[str, str]:
    return clarity_env(home, CLARITY_REAP_INTERVAL_S="1", CLARITY_LEASE_S=str(LEASE_S))


class Controller(ControllerProcess):
    """`clarity controller` on a fixed home (database) and port; can be stopped and started again."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp / "home", tmp / "controller.log", env=_env(tmp / "home"))

    def queue(self, run_ids: list[int] | None = None) -> list[Any]:
        engine = sa.create_engine(f"sqlite:///{self.home / 'clarity.db'}")
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT run_id, task, attempt, state, lease_owner FROM queue "
                                            "ORDER BY run_id, task, attempt")).all()
        finally:
            engine.dispose()
        return [r for r in rows if run_ids is None or r.run_id in run_ids]


class Runner:
    def __init__(self, controller: Controller, tmp: Path, name: str, labels: list[str], capacity: int) -> None:
        self.controller, self.name = controller, name
        self.state = tmp / f"state-{name}"
        self.log = tmp / f"runner-{name}.log"
        self.args = ["--token", controller.token(labels=labels), "--name", name, "--labels", ",".join(labels),
                     "--capacity", str(capacity)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Runner:
        args = self.args if not (self.state / "runner.json").exists() else []  # later starts: no token
        starts = self.text().count("working for")
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "runner.main", "--controller", self.controller.url,
                                          "--state-dir", str(self.state), *args],
                                         env=self.controller.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_until(lambda: self.text().count("working for") > starts or self.proc.poll() is not None,  # type: ignore
                   lambda: f"runner {self.name} did not start:\n{self.text()}", timeout=30)
        assert self.proc.poll() is None, self.text()
        return self

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.send_signal(signal.SIGTERM)  # hand back at once: the test is over
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def fleet(tmp_path: Path, docker_client: Any) -> Iterator[tuple[Controller, list[Runner]]]:
    c = Controller(tmp_path)
    c.start()
    runners: list[Runner] = []
    try:
        yield c, runners
    finally:
        for r in runners:
            r.stop()
        c.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GitHttpServer, Path]]:
    root = tmp_path / "srv"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "app.git")], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(root / "app.git"), str(work)], check=True, capture_output=True)
    git(work, "checkout", "-q", "-b", "main")
    with GitHttpServer(root) as server:
        yield server, work


def publish(served: tuple[GitHttpServer, Path], files: dict[str, str], api: httpx.Client) -> None:
    server, work = served
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "ci")
    git(work, "push", "-q", "origin", "main")
    resp = api.post("/api/v1/repos", json={"name": "acme/app", "url": f"{server.url}/app.git"})
    assert resp.status_code == 201, resp.text


def trigger(api: httpx.Client, workflow: str) -> int:
    resp = api.post("/api/v1/repos/acme/app/trigger", json={"ref": "main", "workflow": workflow})
    assert resp.status_code == 201, resp.text
    [run] = resp.json()["runs"]
    return int(run["id"] if isinstance(run, dict) else run)


def wait_runs(c: Controller, api: httpx.Client, run_ids: list[int], timeout: float,
              runners: Sequence[Runner] = ()) -> dict[int, dict[str, Any]]:
    def logs() -> str:
        return c.log.read_text()[-4000:] + "".join(f"\n--- {r.name}\n{r.text()[-3000:]}" for r in runners)

    def over() -> dict[int, dict[str, Any]] | None:
        runs = {i: api.get(f"/api/v1/runs/{i}").json() for i in run_ids}
        return runs if all(r["state"] not in ("queued", "running", "canceling") for r in runs.values()) else None

    runs: dict[int, dict[str, Any]] = wait_until(over, lambda: "runs did not finish:\n" + logs(), timeout=timeout,
                                                 step=0.3)
    return runs


def task_lines(api: httpx.Client, run_id: int, task: str) -> list[str]:
    lines = api.get(f"/api/v1/runs/{run_id}/logs", params={"task": task}).json()["lines"]
    seqs = [l["seq"] for l in lines]
    assert seqs == sorted(set(seqs)), (task, seqs)
    return [l["line"] for l in lines if not l["line"].startswith("+ ")]


def numbered(task: str, n: int) -> str:
    return f'for i in $(seq 1 {n}); do echo "{task} line $i"; done'


# -- 1. 30 tasks over three runners ---------------------------------------------------------------------

def _fleet_workflow(name: str, count: int) -> tuple[str, dict[str, tuple[str, ...]]]:
    kinds: list[tuple[str, ...]] = [("fast",), ("big",), ()]
    tasks: dict[str, tuple[str, ...]] = {}
    text = f"workflow:\n  name: {name}\n  triggers:\n    - type: manual\n  tasks:\n"
    for i in range(count):
        task, labels = f"{name}-t{i}", kinds[i % 3]
        tasks[task] = labels
        text += (f"    - name: {task}\n      image: clarity-busybox:latest\n"
                 f"      commands:\n        - '{numbered(task, 5)}'\n")
        if labels:
            text += f"      labels: [{', '.join(labels)}]\n"
    return text, tasks


def test_thirty_tasks_of_three_workflows_over_three_runners(fleet: tuple[Controller, list[Runner]], tmp_path: Path,
                                                             served: tuple[GitHttpServer, Path]) -> None:
    c, runners = fleet
    runners += [Runner(c, tmp_path, "r1", [], 2).start(), Runner(c, tmp_path, "r2", ["fast"], 1).start(),
                Runner(c, tmp_path, "r3", ["fast", "big"], 2).start()]
    files, expected = {}, {}
    for name, count in (("alpha", 12), ("beta", 10), ("gamma", 8)):
        text, tasks = _fleet_workflow(name, count)
        files[f".clarity/{name}.yaml"] = text
        expected[name] = tasks
    assert sum(len(t) for t in expected.values()) == 30
    with c.api() as api:
        publish(served, files, api)
        started = time.monotonic()
        run_ids = {trigger(api, f".clarity/{name}.yaml"): name for name in expected}
        runs = wait_runs(c, api, list(run_ids), timeout=90, runners=runners)
        elapsed = time.monotonic() - started
        assert all(r["state"] == "succeeded" for r in runs.values()), runs
        labels_of = {r["name"]: set(r["labels"]) for r in api.get("/api/v1/runners").json()["runners"]}
        assert labels_of == {"r1": set(), "r2": {"fast"}, "r3": {"fast", "big"}}

        rows = c.queue(list(run_ids))
        assert len(rows) == 30, rows  # one queue row per task: nothing ran twice
        used: dict[str, int] = {}
        for row in rows:
            task_labels = expected[run_ids[row.run_id]][row.task]
            assert (row.state, row.attempt) == ("done", 1), row
            assert set(task_labels) <= labels_of[row.lease_owner], (row, task_labels)
            used[row.lease_owner] = used.get(row.lease_owner, 0) + 1
        assert {(r.run_id, r.task) for r in rows} == {(i, t) for i, n in run_ids.items() for t in expected[n]}
        for run_id, name in run_ids.items():
            for task in expected[name]:
                assert task_lines(api, run_id, task) == [f"{task} line {i}" for i in range(1, 6)], task
    print(f"\n30 tasks in {elapsed:.1f}s; per runner: {used}")
    assert used.get("r3", 0) >= 4  # every [big] task ran there


# -- 1b. an artifact from one runner process to another ---------------------------------------------------

ARTIFACT = """\
workflow:
  name: fleet-artifact
  triggers:
    - type: manual
  tasks:
    - name: make
      image: clarity-busybox:latest
      labels: [fast]
      commands: ["mkdir -p dist && echo made-on-fast > dist/x.txt"]
      artifacts: [dist/]
    - name: use
      image: clarity-busybox:latest
      labels: [big]
      needs: [make]
      commands: ["cat dist/x.txt"]
"""


def test_an_artifact_travels_between_two_runner_processes(fleet: tuple[Controller, list[Runner]], tmp_path: Path,
                                                          served: tuple[GitHttpServer, Path]) -> None:
    c, runners = fleet
    runners += [Runner(c, tmp_path, "maker", ["fast"], 1).start(), Runner(c, tmp_path, "user", ["big"], 1).start()]
    with c.api() as api:
        publish(served, {".clarity/artifact.yaml": ARTIFACT}, api)
        run_id = trigger(api, ".clarity/artifact.yaml")
        [run] = wait_runs(c, api, [run_id], timeout=60, runners=runners).values()
        assert run["state"] == "succeeded", (run, task_lines(api, run_id, "use"))
        owners = {r.task: r.lease_owner for r in c.queue([run_id])}
        assert owners == {"make": "maker", "use": "user"}
        assert task_lines(api, run_id, "use")[-1] == "made-on-fast"
    assert (c.home / "artifacts" / str(run_id) / "make.tar.gz").is_file()


# -- 2. kill -9 a runner mid-task ------------------------------------------------------------------------

SLOW_LINES = 8
SLOW = f"""\
workflow:
  name: fleet-slow
  triggers:
    - type: manual
  tasks:
    - name: slow
      image: clarity-busybox:latest
      commands:
        - 'for i in $(seq 1 {SLOW_LINES}); do echo "slow line $i"; sleep 1; done'
"""


def _containers(docker_client: Any) -> list[dict[str, Any]]:
    return list(docker_client.api.containers(all=True, filters={"label": "io.clarity.workflow=fleet-slow"}))


def test_a_runner_killed_mid_task_its_task_runs_again_elsewhere(fleet: tuple[Controller, list[Runner]],
                                                                  tmp_path: Path, docker_client: Any,
                                                                  served: tuple[GitHttpServer, Path]) -> None:
    c, runners = fleet
    victim = Runner(c, tmp_path, "victim", [], 1).start()
    runners.append(victim)
    with c.api() as api:
        publish(served, {".clarity/slow.yaml": SLOW}, api)
        run_id = trigger(api, ".clarity/slow.yaml")
        wait_until(lambda: "slow line 2" in task_lines(api, run_id, "slow"),
                   lambda: "the task never started on the victim:\n" + victim.text())
        # a second runner, already running when the victim dies: it takes the task again after
        # the lease expires; its start-up sweep ran while the victim was alive
        survivor = Runner(c, tmp_path, "survivor", [], 1).start()
        runners.append(survivor)
        assert _containers(docker_client), "the victim's container should be running"
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait()
        killed = time.monotonic()

        [run] = wait_runs(c, api, [run_id], timeout=60, runners=runners).values()
        took = time.monotonic() - killed
        assert run["state"] == "succeeded", run
        [task] = run["tasks"]
        assert task["attempt"] == 2, task
        rows = c.queue([run_id])
        assert [(r.attempt, r.state, r.lease_owner) for r in rows] == [(1, "expired", "victim"),
                                                                        (2, "done", "survivor")], rows
        lines = task_lines(api, run_id, "slow")
        notes = [l for l in lines if l.startswith("[clarity] ")]
        assert len(notes) == 1 and "attempt 2" in notes[0] and "'victim' stopped answering" in notes[0], lines
        assert lines[-SLOW_LINES - 1] == notes[0], lines
        lines = [l for l in lines if l not in notes]
        full = [f"slow line {i}" for i in range(1, SLOW_LINES + 1)]
        assert lines[-SLOW_LINES:] == full, lines  # attempt 2: every line, in order, once
        first = lines[:-SLOW_LINES]  # attempt 1: the lines it sent before it died
        assert first == full[:len(first)] and len(first) >= 2, lines

        # The victim's container outlived it (Docker ran it on); the running survivor does not sweep.
        # The next runner start on this machine removes it (its owner process is dead).
        victim.start()
        # (any Clarity process starting on this engine sweeps it: usually this one, which says so)
        deadline = time.monotonic() + 20
        while _containers(docker_client):
            assert time.monotonic() < deadline, victim.text()
            time.sleep(0.2)
    print(f"\nkill -9: run completed {took:.1f}s after the kill (lease {LEASE_S}s)")


# -- 3. the controller away for ~10 s mid-task ------------------------------------------------------------

TICKS = 12
TICKING = f"""\
workflow:
  name: fleet-ticking
  triggers:
    - type: manual
  tasks:
    - name: ticking
      image: clarity-busybox:latest
      commands:
        - 'for i in $(seq 1 {TICKS}); do echo "tick $i"; sleep 1; done'
    - name: after
      image: clarity-busybox:latest
      needs: [ticking]
      commands:
        - '{numbered("after", 3)}'
"""


def test_the_controller_away_for_ten_seconds_mid_task(fleet: tuple[Controller, list[Runner]], tmp_path: Path,
                                                       served: tuple[GitHttpServer, Path]) -> None:
    c, runners = fleet
    r1 = Runner(c, tmp_path, "r1", [], 1).start()
    runners.append(r1)
    with c.api() as api:
        publish(served, {".clarity/ticking.yaml": TICKING}, api)
        run_id = trigger(api, ".clarity/ticking.yaml")
        wait_until(lambda: "tick 2" in task_lines(api, run_id, "ticking"),
                   lambda: "the task never started:\n" + r1.text())
    c.stop(signal.SIGTERM)
    stopped = time.monotonic()
    time.sleep(10)
    c.start()  # same home (database) and port
    print(f"\ncontroller away {time.monotonic() - stopped:.1f}s")
    with c.api() as api:
        [run] = wait_runs(c, api, [run_id], timeout=60, runners=runners).values()
        assert run["state"] == "succeeded", (run, r1.text())
        tasks = {t["name"]: t for t in run["tasks"]}
        assert tasks["ticking"]["attempt"] == 1, (tasks, r1.text())
        assert task_lines(api, run_id, "ticking") == [f"tick {i}" for i in range(1, TICKS + 1)]
        assert task_lines(api, run_id, "after") == [f"after line {i}" for i in range(1, 4)]
        rows = c.queue([run_id])
        assert [(r.task, r.attempt, r.state, r.lease_owner) for r in rows] == [
            ("after", 1, "done", "r1"), ("ticking", 1, "done", "r1")], rows
    assert proc_alive(r1)
    log = r1.text()
    assert "could not send" in log or "heartbeat failed" in log, log  # it did notice the controller was away


def proc_alive(r: Runner) -> bool:
    return r.proc is not None and r.proc.poll() is None
