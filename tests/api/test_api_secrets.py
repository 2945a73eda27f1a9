"""A repository's secrets on the controller through the real app: set (sealed, admin only), listed
by name only, given to the tasks that name them and to no other task's spec (env or mask), never to
a fork's pull request; `clarity secret` against a real `clarity up` with the task in Docker."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from controller.peer import InProcessPeer
from controller.store import tables
from tests.api.conftest import Api, git
from tests.e2e.conftest import docker_client  # noqa: F401 - a fixture
from tests.processes import ROOT, ControllerProcess, clarity_env, wait_until

WORKFLOW = """\
workflow:
  name: deploy
  triggers:
    - type: manual
  tasks:
    - name: build
      image: busybox
      commands: ["echo build"]
    - name: deploy
      image: busybox
      needs: [build]
      secrets: [DEPLOY_KEY]
      env: {TOKEN: "${secrets.API_TOKEN}"}
      commands: ["echo deploy"]
"""


def repo_with(tmp_path: Path, text: str) -> Path:
    src = tmp_path / "src"
    (src / ".clarity").mkdir(parents=True)
    (src / ".clarity" / "deploy.yaml").write_text(text)
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "deploy")
    return src


def put(api: Api, name: str, value: Any, key: str | None = None) -> Any:
    return api.client.put(f"/api/v1/repos/acme/app/secrets/{name}", json={"value": value}, headers=api.auth(key))


def test_secrets_reach_only_the_tasks_that_name_them(api: Api, tmp_path: Path) -> None:
    api.services.repos.add(name="acme/app", url=str(repo_with(tmp_path, WORKFLOW)), forge="generic")
    assert put(api, "DEPLOY_KEY", "k3y-value-1").status_code == 201
    assert put(api, "DEPLOY_KEY", "k3y-value-2").status_code == 200  # replaced
    assert put(api, "API_TOKEN", "t0ken-value").status_code == 201
    assert put(api, "UNUSED", "n0t-for-this-run").status_code == 201
    listed = api.get("/api/v1/repos/acme/app/secrets").json()["secrets"]
    assert [s["name"] for s in listed] == ["API_TOKEN", "DEPLOY_KEY", "UNUSED"]
    assert all(set(s) == {"name", "updated_by", "updated_at"} for s in listed)
    assert listed[0]["updated_by"] == "api-key:ci-admin"
    with api.services.store.engine.connect() as conn:  # sealed at rest
        stored = [r.sealed for r in conn.execute(sa.select(tables.repo_secrets.c.sealed))]
    assert stored and not any("value" in s for s in stored)

    made = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main"})
    assert made.status_code == 201, made.text
    peer = InProcessPeer(api.services.queue, api.services.scheduler)
    build = peer.lease("r1", [], 0)
    assert build is not None and build.spec.task == "build"
    assert "DEPLOY_KEY" not in build.spec.env and build.spec.mask == ()  # build names no secret: its runner gets none
    from runner.spec import Outcome, TaskResult

    peer.finish(build.lease_id, TaskResult(Outcome.SUCCEEDED, exit_code=0, started_at=time.time(), finished_at=time.time()))
    deploy = peer.lease("r1", [], 0)
    assert deploy is not None and deploy.spec.task == "deploy"
    assert deploy.spec.env["DEPLOY_KEY"] == "k3y-value-2" and deploy.spec.env["TOKEN"] == "t0ken-value"
    assert sorted(deploy.spec.mask) == ["k3y-value-2", "t0ken-value"]  # not UNUSED's


def test_a_missing_secret_fails_the_task_saying_how_to_set_it(api: Api, tmp_path: Path) -> None:
    api.services.repos.add(name="acme/app", url=str(repo_with(tmp_path, WORKFLOW)), forge="generic")
    assert put(api, "API_TOKEN", "t0ken-value").status_code == 201
    run_id = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main"}).json()["runs"][0]
    peer = InProcessPeer(api.services.queue, api.services.scheduler)
    build = peer.lease("r1", [], 0)
    assert build is not None
    from runner.spec import Outcome, TaskResult

    peer.finish(build.lease_id, TaskResult(Outcome.SUCCEEDED, exit_code=0, started_at=time.time(), finished_at=time.time()))
    tasks = {t["name"]: t for t in api.get(f"/api/v1/runs/{run_id}").json()["tasks"]}
    assert tasks["deploy"]["state"] in ("failed", "errored"), tasks["deploy"]
    assert "needs secret 'DEPLOY_KEY', which is not set (clarity secret set acme/app DEPLOY_KEY)" in tasks["deploy"]["error"], tasks["deploy"]


def test_secret_requests_are_checked(api: Api, tmp_path: Path) -> None:
    api.services.repos.add(name="acme/app", url=str(repo_with(tmp_path, WORKFLOW)), forge="generic")
    assert put(api, "DEPLOY_KEY", "x", key=api.reader).status_code == 403
    bad = put(api, "deploy-key", "x")
    assert bad.status_code == 400 and "capital letters" in bad.json()["error"]["message"]
    assert put(api, "DEPLOY_KEY", "").status_code == 400
    assert put(api, "DEPLOY_KEY", 5).status_code == 400
    assert put(api, "DEPLOY_KEY", "x" * (64 * 1024 + 1)).status_code == 400
    assert api.client.put("/api/v1/repos/acme/nope/secrets/DEPLOY_KEY", json={"value": "x"},
                          headers=api.auth()).status_code == 404
    assert api.delete("/api/v1/repos/acme/app/secrets/DEPLOY_KEY").status_code == 404
    assert put(api, "DEPLOY_KEY", "x").status_code == 201
    assert api.delete("/api/v1/repos/acme/app/secrets/DEPLOY_KEY").status_code == 204
    assert api.get("/api/v1/repos/acme/app/secrets").json()["secrets"] == []


DOCKER_WORKFLOW = """\
workflow:
  name: deploy
  triggers:
    - type: manual
  tasks:
    - name: deploy
      image: clarity-busybox:latest
      secrets: [DEPLOY_KEY]
      commands:
        - test "$DEPLOY_KEY" = "s3cret-from-stdin"
        - echo "the key is $DEPLOY_KEY"
"""


@pytest.mark.docker
def test_clarity_secret_on_a_controller_reaches_the_task_masked(tmp_path: Path, docker_client: Any) -> None:
    src = repo_with(tmp_path, DOCKER_WORKFLOW)
    home = tmp_path / "home"
    ctl = ControllerProcess(home, tmp_path / "controller.log", env=clarity_env(home), command="up")
    ctl.start()
    try:
        def clarity(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "controller.cli", *args, "--controller", ctl.url],
                                  env=ctl.env, input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)

        assert clarity("repo", "add", "acme/app", "--url", str(src)).returncode == 0
        assert clarity("secret", "list", "acme/app").stdout.startswith("acme/app has no secrets")
        short = clarity("secret", "set", "acme/app", "PIN", stdin="42\n")
        assert short.returncode == 0 and "cannot be masked in logs" in short.stderr, short.stderr
        assert clarity("secret", "remove", "acme/app", "PIN").returncode == 0
        done = clarity("secret", "set", "acme/app", "DEPLOY_KEY", stdin="s3cret-from-stdin\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("secret DEPLOY_KEY of acme/app set") and "s3cret" not in done.stdout
        assert "cannot be masked" not in done.stderr
        listed = clarity("secret", "list", "acme/app")
        assert "DEPLOY_KEY" in listed.stdout and "s3cret" not in listed.stdout
        empty = clarity("secret", "set", "acme/app", "OTHER", stdin="")
        assert empty.returncode == 2 and "is empty" in empty.stderr and "Traceback" not in empty.stderr
        binary = subprocess.run([sys.executable, "-m", "controller.cli", "secret", "set", "acme/app", "BIN",
                                 "--controller", ctl.url], env=ctl.env, input=b"\xff\xfe", capture_output=True,
                                timeout=60, cwd=ROOT)
        assert binary.returncode == 2 and b"is not UTF-8 text" in binary.stderr, binary.stderr
        assert b"Traceback" not in binary.stderr
        assert clarity("trigger", "acme/app").returncode == 0
        headers = {"Authorization": f"Bearer {(home / 'api-key').read_text().strip()}"}

        def finished() -> Any:
            runs = httpx.get(f"{ctl.url}/api/v1/runs", headers=headers).json()["runs"]
            return runs and runs[0]["state"] not in ("queued", "running") and runs[0]

        run = wait_until(finished, lambda: ctl.log.read_text()[-3000:], timeout=90, step=0.5)
        logs = clarity("logs", str(run["id"]), "deploy").stdout
        assert run["state"] == "succeeded", logs
        assert "the key is ***" in logs and "s3cret-from-stdin" not in logs
    finally:
        ctl.stop()
