"""`clarity runner` as real processes: a controller (`clarity controller`, no built-in runner) and a
runner agent that registers with a token, runs a task in Docker, and stops gracefully; and the
runner's one-line errors, which need no Docker."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.processes import ROOT, ControllerProcess, clarity_env, free_port, wait_until


WORKFLOW = """\
workflow:
  name: remote
  triggers:
    - type: manual
  tasks:
    - name: hello
      image: clarity-busybox:latest
      commands:
        - echo "hello from a remote runner"
        - cat version.txt
"""

SLOW = """\
workflow:
  name: slow
  triggers:
    - type: manual
      inputs:
        seconds: {type: string, default: "1"}
  tasks:
    - name: slow
      image: clarity-busybox:latest
      commands:
        - echo started
        - sleep "$SECONDS_TO_SLEEP"
        - echo done
      env:
        SECONDS_TO_SLEEP: "${inputs.seconds}"
"""


class Controller(ControllerProcess):
    def __init__(self, tmp: Path) -> None:
        home = tmp / "home"
        super().__init__(home, tmp / "controller.log", env=clarity_env(home, CLARITY_REAP_INTERVAL_S="1"))
        self.start()


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    c = Controller(tmp_path)
    yield c
    c.stop()


def runner(controller_url: str, state: Path, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "runner.main", "--controller", controller_url,
                             "--state-dir", str(state), *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def test_bad_token_is_one_clear_line(controller: Controller, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "controller.cli", "runner", "--controller", controller.url,
                           "--token", "clrt_not-a-token", "--state-dir", str(tmp_path / "state")],
                          env=controller.env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert "clarity runner: error: the controller refused the registration token:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state" / "runner.json").exists()


def test_not_registered_and_no_token(tmp_path: Path) -> None:
    code = ("import sys, controller.cli as c; before = set(sys.modules); "
            f"rc = c.main(['runner', '--controller', 'http://127.0.0.1:9', '--state-dir', {str(tmp_path)!r}]); "
            "loaded = sorted(m for m in set(sys.modules) - before if m.startswith('controller')); "
            "print(rc, loaded)")
    done = subprocess.run([sys.executable, "-c", code], env=clarity_env(tmp_path / "home"), capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.stdout.strip() == "2 []", done.stdout + done.stderr  # nothing more of the controller was loaded
    assert "this runner is not registered" in done.stderr and "clarity runner-token create" in done.stderr


def test_unreachable_controller_is_retried_and_said(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "runner.main", "--controller", f"http://127.0.0.1:{free_port()}",
                             "--token", "clrt_x", "--state-dir", str(tmp_path / "state")],
                            env=clarity_env(tmp_path / "home"), stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert "unreachable" in err and "retrying in" in err, err
    assert proc.returncode == 0, err  # stopped while waiting: not an error


def make_repo(tmp_path: Path, env: dict[str, str]) -> Path:
    src = tmp_path / "src"
    (src / ".clarity").mkdir(parents=True)
    (src / ".clarity" / "ci.yaml").write_text(WORKFLOW)
    (src / ".clarity" / "slow.yaml").write_text(SLOW)
    (src / "version.txt").write_text("v1\n")
    env = {**env, "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"), "GIT_AUTHOR_NAME": "Dev",
           "GIT_AUTHOR_EMAIL": "dev@example.org", "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.org"}
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "ci")):
        subprocess.run(["git", *args], cwd=src, env=env, check=True, capture_output=True)
    return src


def trigger(api: httpx.Client, workflow: str, **inputs: str) -> int:
    if api.get("/api/v1/repos/acme/app").status_code == 404:
        assert api.post("/api/v1/repos", json={"name": "acme/app", "url": str(REPOS[-1])}).status_code == 201
    resp = api.post("/api/v1/repos/acme/app/trigger", json={"ref": "main", "workflow": workflow, "inputs": inputs})
    assert resp.status_code == 201, resp.text
    [run] = resp.json()["runs"]
    return int(run["id"] if isinstance(run, dict) else run)


REPOS: list[Path] = []


@pytest.mark.docker
def test_a_runner_process_registers_runs_a_task_and_stops(controller: Controller, tmp_path: Path,
                                                          docker_client: Any) -> None:
    src = make_repo(tmp_path, controller.env)
    state = tmp_path / "runner-state"
    secret = controller.token()
    proc = runner(controller.url, state, "--token", secret, "--labels", "fast", "--capacity", "2", "--name", "fast-1",
                  env={**controller.env, "CLARITY_RUNNER_HOME": str(tmp_path / "unused")}, log=tmp_path / "runner.log")
    try:
        with controller.api() as api:
            deadline = time.monotonic() + 30
            while not [r for r in api.get("/api/v1/runners").json()["runners"] if r.get("last_seen_at")]:
                assert proc.poll() is None, (tmp_path / "runner.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "runner.log").read_text()
                time.sleep(0.2)
            saved = state / "runner.json"
            assert stat.S_IMODE(saved.stat().st_mode) == 0o600
            assert json.loads(saved.read_text())["name"] == "fast-1"
            assert secret not in saved.read_text()

            REPOS.append(src)
            run_id = trigger(api, ".clarity/ci.yaml")
            deadline = time.monotonic() + 90
            while (run := api.get(f"/api/v1/runs/{run_id}").json())["state"] in ("queued", "running"):
                assert time.monotonic() < deadline, (tmp_path / "runner.log").read_text()
                time.sleep(0.3)
            assert run["state"] == "succeeded", (run, (tmp_path / "runner.log").read_text())
            lines = [l["line"] for l in api.get(f"/api/v1/runs/{run_id}/logs").json()["lines"]]
            assert "hello from a remote runner" in lines and "v1" in lines
            [fast] = api.get("/api/v1/runners").json()["runners"]
            assert fast["name"] == "fast-1" and fast["labels"] == ["fast"] and fast["capacity"] == 2
            assert fast["version"] and fast["online"]
        import sqlalchemy as sa

        engine = sa.create_engine(f"sqlite:///{controller.home / 'clarity.db'}")
        with engine.connect() as conn:
            owners = conn.execute(sa.text("SELECT lease_owner FROM queue WHERE run_id = :r"),
                                  {"r": run_id}).scalars().all()
        engine.dispose()
        assert owners == ["fast-1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    log = (tmp_path / "runner.log").read_text()
    assert code == 0, log
    assert "stopping" in log and "stopped" in log

    # a second start reuses the saved credential: no token needed
    again = runner(controller.url, state, env=controller.env, log=tmp_path / "runner2.log")
    try:
        deadline = time.monotonic() + 30
        while "working for" not in (tmp_path / "runner2.log").read_text():
            assert again.poll() is None and time.monotonic() < deadline, (tmp_path / "runner2.log").read_text()
            time.sleep(0.2)
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=60) == 0


@pytest.mark.docker
def test_sigterm_lets_the_running_task_finish_then_a_second_hands_back(controller: Controller, tmp_path: Path,
                                                                       docker_client: Any) -> None:
    REPOS.append(make_repo(tmp_path, controller.env))
    log = tmp_path / "runner.log"
    proc = runner(controller.url, tmp_path / "state", "--token", controller.token(labels=["slow"]), "--name", "slow-1",
                  "--grace", "60", env=controller.env, log=log)
    try:
        with controller.api() as api:
            wait_until(lambda: "working for" in log.read_text(), "the runner did not start:\n" + log.read_text())
            run_id = trigger(api, ".clarity/slow.yaml", seconds="3")
            wait_until(lambda: api.get("/api/v1/runners").json()["runners"][0]["running"] == 1, "never leased")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log.read_text()
            run = api.get(f"/api/v1/runs/{run_id}").json()
            assert run["state"] == "succeeded", (run, log.read_text())  # finished within the grace period
            lines = [l["line"] for l in api.get(f"/api/v1/runs/{run_id}/logs").json()["lines"]]
            assert [l for l in lines if not l.startswith("+ ")] == ["started", "done"]
            assert "labels: slow" in log.read_text()

            # a second signal during the grace period: the task is handed back at once
            proc = runner(controller.url, tmp_path / "state", "--grace", "60", env=controller.env, log=log)
            wait_until(lambda: log.read_text().count("working for") == 1, "the runner did not start again")
            run_id = trigger(api, ".clarity/slow.yaml", seconds="120")
            wait_until(lambda: api.get("/api/v1/runners").json()["runners"][0]["running"] == 1, "never leased")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            wait_until(lambda: "stopping: no new task" in log.read_text(), "the first SIGTERM was not seen")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log.read_text()
            assert time.monotonic() - started < 30, log.read_text()
            assert "handing the running tasks back now" in log.read_text()
            assert api.get(f"/api/v1/runs/{run_id}").json()["state"] in ("queued", "running")  # not reported
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_runner_token_and_runners_commands(controller: Controller) -> None:
    def clarity(*args: str) -> subprocess.CompletedProcess[str]:
        # as the `clarity` console script does (with `-m controller.cli`, UserError of cli_server is
        # controller.cli.UserError, not __main__.UserError, and escapes as a traceback)
        code = "import sys; from controller.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run([sys.executable, "-c", code, *args, "--controller", controller.url],
                              env=controller.env, capture_output=True, text=True, timeout=60, cwd=ROOT)

    made = clarity("runner-token", "create", "--labels", "linux,fast")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("clrt_") and "shown only now" in made.stderr
    spare = clarity("runner-token", "create").stdout.strip()
    listed = clarity("runner-token", "list")
    assert listed.returncode == 0 and secret[:13] in listed.stdout and "linux,fast" in listed.stdout
    assert clarity("runner-token", "revoke", spare[:13]).returncode == 0
    assert "revoked" in clarity("runner-token", "list").stdout

    resp = httpx.post(f"{controller.url}/api/v1/runner/register", json={"token": secret, "name": "box-7"},
                      headers={"Clarity-Protocol": "1"}, timeout=10)
    assert resp.status_code == 201, resp.text
    runners = clarity("runners", "list")
    assert runners.returncode == 0
    [row] = [line for line in runners.stdout.splitlines() if line.startswith("box-7")]
    assert "offline" in row and "linux,fast" in row and "0/1" in row  # capacity: 1 unless said
    assert clarity("runners", "disable", "box-7").returncode == 0
    assert "disabled" in clarity("runners", "list").stdout
    assert clarity("runners", "enable", "box-7").returncode == 0
    missing = clarity("runners", "disable", "nobody")
    assert missing.returncode == 2 and "no runner nobody" in missing.stderr


@pytest.mark.docker
def test_a_cancel_stops_the_task_on_a_remote_runner_within_seconds(controller: Controller, tmp_path: Path,
                                                                    docker_client: Any) -> None:
    REPOS.append(make_repo(tmp_path, controller.env))
    log = tmp_path / "runner.log"
    proc = runner(controller.url, tmp_path / "state", "--token", controller.token(), "--name", "cancel-1",
                  env=controller.env, log=log)
    try:
        with controller.api() as api:
            wait_until(lambda: "working for" in log.read_text(), "the runner did not start:\n" + log.read_text())
            run_id = trigger(api, ".clarity/slow.yaml", seconds="120")
            wait_until(lambda: "started" in [l["line"] for l in api.get(f"/api/v1/runs/{run_id}/logs").json()["lines"]],
                       "the task never started:\n" + log.read_text())
            mine = {c["Id"] for c in docker_client.api.containers(filters={
                "label": [f"io.clarity.run={run_id}", "io.clarity.workflow=slow"]})}
            assert mine, "no running container for the task"
            asked = time.monotonic()
            assert api.post(f"/api/v1/runs/{run_id}/cancel").status_code in (200, 202)
            wait_until(lambda: api.get(f"/api/v1/runs/{run_id}").json()["state"] == "canceled",
                       "the run was not canceled:\n" + log.read_text(), timeout=30)
            assert time.monotonic() - asked < 10
            task = api.get(f"/api/v1/runs/{run_id}").json()["tasks"][0]
            assert task["state"] == "canceled"
        wait_until(lambda: not mine & {c["Id"] for c in docker_client.api.containers(all=True)},
                   "the task's container was left behind", timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
