"""The standards' example on `clarity up`, as a new user runs it: a fresh CLARITY_HOME (no storage
directory yet), the example's repository registered, a webhook key, the input data POSTed: the
run validates, transforms and stores under the storage root `clarity up` made itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.e2e.conftest import EXAMPLES, git
from tests.processes import ROOT, ControllerProcess, clarity_env, wait_until

pytestmark = pytest.mark.docker


class Up(ControllerProcess):
    def ok(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "controller.cli", *args, "--controller", self.url],
                              env=self.env, input="", capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture
def up(tmp_path: Path, docker_client: Any) -> Iterator[Up]:
    home = tmp_path / "home"
    c = Up(home, tmp_path / "controller.log", env=clarity_env(home), command="up")
    assert not (home / "storage").exists()
    c.start()
    yield c
    c.stop()


def test_the_standards_example_runs_from_its_webhook_on_clarity_up(up: Up, tmp_path: Path) -> None:
    repo = tmp_path / "standards"
    shutil.copytree(EXAMPLES / "standards", repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the standards' example")
    up.ok("repo", "add", "acme/standards", "--url", str(repo))
    key = up.ok("webhook-key", "create", "acme/standards", ".clarity/example.yaml").strip()
    body = (repo / "data" / "input.json").read_bytes()

    def post() -> httpx.Response | None:
        r = httpx.post(f"{up.url}/api/v1/webhook", content=body, timeout=30,
                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        return r if r.status_code == 202 else None

    # the controller reads a new repository's triggers within a pass of its schedule loop
    wait_until(post, lambda: "the webhook never started a run:\n" + up.log.read_text()[-3000:], timeout=30)
    api = httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {(up.home / 'api-key').read_text().strip()}"})

    def finished() -> dict[str, Any] | None:
        runs = api.get("/api/v1/runs").json()["runs"]
        done = [r for r in runs if r["state"] not in ("queued", "running")]
        return done[0] if done else None

    run = wait_until(finished, lambda: "no run finished:\n" + up.log.read_text()[-3000:], timeout=180, step=0.5)
    tasks = {t["name"]: t for t in api.get(f"/api/v1/runs/{run['id']}").json()["tasks"]}
    assert run["state"] == "succeeded", (run, tasks)
    assert [tasks[n]["attempt"] for n in ("validate-input", "process-data", "store-result")] == [1, 1, 1]
    stored = up.home / "storage" / "backups" / str(run["id"]) / "data.json"
    assert stored.is_file(), sorted(str(p) for p in (up.home / "storage").rglob("*"))
    paid = [o for o in json.loads(body)["orders"] if o["status"] == "paid"]
    orders = json.loads(stored.read_text())
    assert isinstance(orders, list) and len(orders) == len(paid) > 0, orders
