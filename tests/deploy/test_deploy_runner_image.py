"""A runner started from the `clarity:dev` image, as docs/deploy.md describes ("A runner"), drives
the host's Docker engine through the mounted socket and runs a task for a controller.

The controller is a host process (`python -m controller.cli controller`); the runner is
`docker run ... clarity:dev runner` with `--network host` (to reach the controller on 127.0.0.1),
the socket, the socket's group, and its state directory mounted at the same path inside and
outside (task workspaces are made under `STATE/work` and bind-mounted into task containers by the
host's engine, which resolves host paths). `--hostname` gives the runner container a name of its
own: with `--network host` it would otherwise share the host's name, and the runner tells its
own containers from those of other Clarity processes on the engine by host name and pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.processes import ControllerProcess, clarity_env

from tests.deploy.test_deploy_image import TEST_LABEL, _docker, image  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
UID = 10001  # the image's `clarity` user

WORKFLOW = """\
workflow:
  name: in-image
  triggers:
    - type: manual
  tasks:
    - name: hello
      image: clarity-busybox:latest
      labels: [img]
      commands:
        - echo "hello from the runner image"
        - cat version.txt
        - echo written > out.txt && cat out.txt
"""


def _chown_tree(top: Path, uid: int) -> None:
    for path in [top, *top.rglob("*")]:
        os.lchown(path, uid, uid)


class Controller(ControllerProcess):
    def __init__(self, home: Path, log: Path) -> None:
        super().__init__(home, log, env=clarity_env(home))
        self.start()
        self.client = self.api()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.client.close()
        super().stop(sig)


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    c = Controller(tmp_path / "home", tmp_path / "controller.log")
    yield c
    c.stop()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the image's user (uid 10001) can use, outside pytest's 0700 tmp tree: the
    runner's state directory and the repository are mounted from it at the same paths."""
    top = Path(tempfile.mkdtemp(prefix="clarity-deploy-runner-"))
    yield top
    shutil.rmtree(top, ignore_errors=True)  # also files written by task containers


def _make_repo(path: Path, tmp: Path) -> None:
    (path / ".clarity").mkdir(parents=True)
    (path / ".clarity" / "ci.yaml").write_text(WORKFLOW)
    (path / "version.txt").write_text("v-image\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(tmp / "gitconfig"), "GIT_AUTHOR_NAME": "Dev",
           "GIT_AUTHOR_EMAIL": "dev@example.org", "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.org"}
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "ci")):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)


def _task_containers(runner_name: str) -> list[str]:
    """Clarity task containers (running or not) owned by a process of the runner container."""
    out = _docker("ps", "-a", "--filter", "label=io.clarity=1", "--format", "{{.ID}} {{json .Labels}}").stdout
    found = []
    for line in out.splitlines():
        cid, _, labels = line.partition(" ")
        # .Labels is "k=v,k=v" (a JSON string); the owner label is "host:pid:start"
        if f"io.clarity.owner={runner_name}:" in json.loads(labels):
            found.append(cid)
    return found


@pytest.mark.docker
def test_a_runner_from_the_image_runs_a_task_on_the_host_engine(image: str, controller: Controller,  # noqa: F811
                                                                  shared_dir: Path, tmp_path: Path) -> None:
    if _docker("image", "inspect", "clarity-busybox:latest", check=False).returncode != 0:
        pytest.skip("no clarity-busybox:latest image: run .ci/images.sh")
    repo, state = shared_dir / "repo", shared_dir / "state"
    _make_repo(repo, tmp_path)
    state.mkdir(mode=0o750)
    gitconfig = shared_dir / "gitconfig"  # git's global config in the runner container
    gitconfig.write_text(f"[safe]\n\tdirectory = {repo}/.git\n")
    gitconfig.chmod(0o644)
    _chown_tree(state, UID)  # the state directory must be writable by uid 10001 (docs/deploy.md)

    resp = controller.client.post("/api/v1/runner-tokens", json={})
    assert resp.status_code == 201, resp.text
    token = resp.json()["token"]
    assert controller.client.post("/api/v1/repos", json={"name": "acme/img", "url": str(repo)}).status_code == 201

    gid = str(os.stat("/var/run/docker.sock").st_gid)
    name = f"clarity-runner-test-{uuid.uuid4().hex[:8]}"
    try:
        _docker("run", "-d", "--name", name, "--hostname", name, "--label", TEST_LABEL, "--network", "host",
                "-v", "/var/run/docker.sock:/var/run/docker.sock", "--group-add", gid,
                "-v", f"{state}:{state}", "-e", f"CLARITY_RUNNER_HOME={state}", "-e", "CLARITY_PULL=never",
                # the repository URL here is a host path that the runner clones: mounted, and trusted
                # although another user (root) owns it
                "-v", f"{repo}:{repo}:ro", "-v", f"{gitconfig}:{gitconfig}:ro", "-e", f"GIT_CONFIG_GLOBAL={gitconfig}",
                image, "runner", "--controller", controller.url, "--token", token, "--labels", "img")

        def logs() -> str:
            done = _docker("logs", name, check=False)
            return done.stdout + done.stderr

        deadline = time.monotonic() + 60
        while "working for" not in logs():
            running = _docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
            assert running == "true", f"the runner container exited:\n{logs()}"
            assert time.monotonic() < deadline, f"the runner did not start:\n{logs()}"
            time.sleep(0.3)
        # registered under its host name; the credential is in the mounted state directory
        saved = json.loads((state / "runner.json").read_text())
        assert saved["name"] == name and token not in json.dumps(saved)
        assert (state / "runner.json").stat().st_uid == UID

        resp = controller.client.post("/api/v1/repos/acme/img/trigger", json={"ref": "main", "workflow": ".clarity/ci.yaml"})
        assert resp.status_code == 201, resp.text
        [run] = resp.json()["runs"]
        run_id = run["id"] if isinstance(run, dict) else run
        deadline = time.monotonic() + 120
        while (got := controller.client.get(f"/api/v1/runs/{run_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"run still {got['state']}:\n{logs()}"
            time.sleep(0.3)
        lines = [entry["line"] for entry in controller.client.get(f"/api/v1/runs/{run_id}/logs").json()["lines"]]
        assert got["state"] == "succeeded", (got, lines, logs())
        for wanted in ("hello from the runner image", "v-image", "written"):
            assert wanted in lines, (lines, logs())
        # the written file went to the host path that the runner made, through the host's engine
        [runner] = [r for r in controller.client.get("/api/v1/runners").json()["runners"] if r["name"] == name]
        assert runner["labels"] == ["img"]

        import sqlalchemy as sa

        engine = sa.create_engine(f"sqlite:///{controller.home / 'clarity.db'}")
        with engine.connect() as conn:
            owners = conn.execute(sa.text("SELECT lease_owner FROM queue WHERE run_id = :r"),
                                  {"r": run_id}).scalars().all()
        engine.dispose()
        assert owners == [name]
        assert _task_containers(name) == []  # the task's container was removed after the task
    finally:
        _docker("rm", "-f", name, check=False)
    assert _task_containers(name) == []
    assert _docker("ps", "-a", "-q", "--filter", f"name=^{name}$").stdout.strip() == ""
