"""`clarity webhook-key create|list|revoke` against a real `clarity controller` process: the key is
printed once (stdout, for scripts), a POST with it to the declared path starts the workflow, the
list never shows it, and a revoked key is refused with the same 404 as any other bad key."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import httpx
import pytest

from tests.processes import ROOT, ControllerProcess, wait_until

DEPLOY = """\
workflow:
  name: deploy
  triggers:
    - type: webhook
      path: /api/v1/webhooks/deploy
      filter: {action: published}
  tasks:
    - name: deploy
      image: busybox
      env: {VERSION: "${trigger.payload.version}"}
      commands: ["echo $VERSION"]
"""
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "Dev One", "GIT_AUTHOR_EMAIL": "dev1@example.org",
           "GIT_COMMITTER_NAME": "Dev One", "GIT_COMMITTER_EMAIL": "dev1@example.org"}


class Controller(ControllerProcess):
    def clarity(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "controller.cli", *args, "--controller", self.url],
                              env=self.env, input="", capture_output=True, text=True, timeout=60, cwd=ROOT)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.clarity(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def fails(self, *args: str) -> str:
        done = self.clarity(*args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("clarity: error: ") and "Traceback" not in done.stderr, done.stderr
        return done.stderr

    def hook(self, path: str, key: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    tmp = tmp_path_factory.mktemp("ctl")
    src = tmp / "src"
    (src / ".clarity").mkdir(parents=True)
    (src / ".clarity" / "deploy.yaml").write_text(DEPLOY)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "deploy hook"]):
        subprocess.run(["git", *args], cwd=src, env=GIT_ENV, check=True, capture_output=True)
    c = Controller(tmp / "home", tmp / "controller.log")
    c.start()
    c.ok("repo", "add", "acme/app", "--url", str(src))
    yield c
    c.stop()


def test_create_use_list_and_revoke(controller: Controller) -> None:
    made = controller.ok("webhook-key", "create", "acme/app", ".clarity/deploy.yaml", "--name", "release-bot")
    key = made.stdout.strip()
    assert key.startswith("clwh_") and "\n" not in key
    prefix = key[:13]
    assert f"webhook key {prefix}… (release-bot) for .clarity/deploy.yaml of acme/app" in made.stderr
    assert "shown only now" in made.stderr and key not in made.stderr

    # the controller reads the triggers of a new repository within a pass of its schedule loop
    started = wait_until(lambda: (r := controller.hook("/api/v1/webhooks/deploy", key,
                                                       {"action": "published", "version": "2.0"})).status_code == 202
                         and r, lambda: "the webhook never started a run:\n" + controller.log.read_text(), timeout=30)
    (run_id,) = started.json()["runs"]
    with controller.api() as api:
        run = api.get(f"/api/v1/runs/{run_id}").json()
    assert run["event"] == "webhook" and run["trigger"]["by"] == "webhook-key:release-bot"
    assert run["trigger"]["payload"] == {"action": "published", "version": "2.0"}
    assert controller.hook("/api/v1/webhooks/deploy", key, {"action": "created"}).status_code == 204

    listed = controller.ok("webhook-key", "list").stdout
    assert key not in listed
    header, row = listed.splitlines()[:2]
    assert header.split() == ["PREFIX", "STATE", "REPO", "WORKFLOW", "LAST", "USED", "NAME"]
    assert row.split()[:4] == [prefix, "active", "acme/app", ".clarity/deploy.yaml"] and row.endswith("release-bot")
    assert controller.ok("webhook-key", "list", "acme/app").stdout.splitlines()[1].split()[:4] == row.split()[:4]

    assert controller.ok("webhook-key", "revoke", prefix).stdout.strip() == f"revoked {prefix}"
    assert controller.ok("webhook-key", "list").stdout.splitlines()[1].split()[1] == "revoked"
    refused = controller.hook("/api/v1/webhooks/deploy", key, {"action": "published", "version": "2.1"})
    unknown = controller.hook("/api/v1/webhooks/deploy", "clwh_" + "x" * 43, {"action": "published"})
    assert refused.status_code == unknown.status_code == 404 and refused.json() == unknown.json()
    logged = controller.log.read_text()
    assert "webhook refused" in logged and "revoked key" in logged and key not in logged


def test_a_key_for_a_file_without_a_webhook_warns(controller: Controller) -> None:
    made = controller.ok("webhook-key", "create", "acme/app", "later.yaml")
    assert made.stdout.startswith("clwh_")
    assert "for .clarity/later.yaml of acme/app" in made.stderr and "Its webhook paths: none yet" in made.stderr
    assert "clarity: warning: .clarity/later.yaml of acme/app declares no webhook trigger" in made.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["create", "acme/app"], "webhook-key create needs REPO and WORKFLOW_FILE"),
    (["create", "acme/none", ".clarity/deploy.yaml"], "404: no repository acme/none"),
    (["create", "acme/app", "src/deploy.yaml"], "400: field 'workflow': expected a workflow file in .clarity/"),
    (["revoke"], "webhook-key revoke needs the key's PREFIX"),
    (["revoke", "clwh_nothing"], "404: no live webhook key clwh_nothing"),
    (["list", "acme/none"], "404: no repository acme/none"),
])
def test_mistakes_are_one_line(controller: Controller, args: list[str], message: str) -> None:
    err = controller.fails("webhook-key", *args)
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
