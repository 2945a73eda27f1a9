"""Event triggers (controller.events): a workflow starts when another finishes, or on a custom event.

The real app and store (the API fixtures), real git repositories registered with the controller,
their declared triggers read as the schedule loop reads them, and a runner driven by hand through
the runner protocol (no Docker): each test finishes tasks as a runner would and waits for the
event worker, so what starts, and when, is deterministic."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import structlog

from controller.events import MAX_DEPTH, depth_of
from controller.services import Services
from controller.store.repos import RepoRow
from controller.store.triggers import Triggers
from controller.workflow.lint import lint_text
from runner.client import HttpPeer
from runner.spec import Outcome, TaskResult
from tests.api.conftest import _env, api, make_api  # noqa: F401 - fixtures
from tests.api.conftest import Api, git
from tests.processes import ROOT, ControllerProcess, wait_until
from tests.runners.conftest import register


def workflow(name: str, *triggers: str, env: str = "") -> str:
    lines = "".join(f"    - {t}\n" for t in triggers) or "    - {type: manual}\n"
    return (f"workflow:\n  name: {name}\n  triggers:\n{lines}  tasks:\n"
            f"    - name: main\n      image: busybox\n      commands: [\"echo {name}\"]\n{env}")


class World:
    def __init__(self, api: Api, tmp: Path) -> None:
        self.api, self.tmp = api, tmp
        self.services = api.services
        self.triggers = Triggers(self.services.store.engine)
        self.peer = HttpPeer("http://testserver", register(api, "r1"), timeout=5, client=api.client)

    def repo(self, name: str, files: dict[str, str]) -> RepoRow:
        """A git repository with these workflow files on main, registered, its triggers read."""
        path = self.tmp / name.replace("/", "_")
        (path / ".clarity").mkdir(parents=True)
        for file, text in files.items():
            (path / ".clarity" / file).write_text(text)
        git(path, "init", "-q", "-b", "main")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "workflows")
        row = self.services.repos.add(name=name, url=str(path))
        self.read_triggers(row)
        return row

    def read_triggers(self, repo: RepoRow) -> None:
        ref, sha, declared = self.services.starter.declared(repo)  # what the schedule loop does
        self.triggers.replace(repo.id, ref, sha, declared)

    def start(self, repo: RepoRow, file: str) -> int:
        [run_id] = self.services.starter.manual(repo, ref="main", workflow_file=f".clarity/{file}", inputs={},
                                                by="test").runs
        return run_id

    def finish(self, run_id: int, outcome: Outcome = Outcome.SUCCEEDED) -> None:
        """The run's one task ends with `outcome`, then the runs it starts are started."""
        lease = self.peer.lease("r1", ["linux"], 1)
        assert lease is not None and lease.spec.run_id == str(run_id), lease
        now = time.time()
        self.peer.finish(lease.lease_id, TaskResult(outcome, exit_code=0 if outcome is Outcome.SUCCEEDED else 1,
                                                    started_at=now - 1, finished_at=now))
        assert self.services.events.wait(30)

    def run(self, run_id: int) -> dict[str, Any]:
        resp = self.api.get(f"/api/v1/runs/{run_id}")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def runs(self, file: str | None = None) -> list[Any]:
        """Every run, oldest first (of one workflow file)."""
        rows = sorted(self.services.store.list_runs(limit=1000), key=lambda r: r.id)
        return [r for r in rows if file is None or r.workflow_file == f".clarity/{file}"]


@pytest.fixture
def world(api: Api, tmp_path: Path) -> World:  # noqa: F811
    return World(api, tmp_path)


def test_a_workflow_starts_when_another_succeeds_with_the_cause_in_its_audit(world: World) -> None:
    repo = world.repo("acme/app", {
        "build.yaml": workflow("build"),
        "deploy.yaml": workflow("deploy", "{type: event, workflow: build}"),  # state: success by default
    })
    head = git(world.tmp / "acme_app", "rev-parse", "HEAD")
    build = world.start(repo, "build.yaml")
    assert world.runs("deploy.yaml") == []  # not while build runs
    world.finish(build)
    [deploy] = world.runs("deploy.yaml")
    shown = world.run(deploy.id)
    [key] = [t.key for t in world.triggers.list("event")]
    assert shown["trigger"] == {"by": "event", "event": "event", "workflow": "build", "state": "succeeded",
                                "run": build, "repo": "acme/app", "depth": 1, "sha": head,
                                "ref": "refs/heads/main", "trigger": key}
    assert (deploy.event, deploy.ref, deploy.commit_sha, deploy.state) == ("event", "refs/heads/main", head, "running")
    assert deploy.dedupe_key == f"{repo.id}:event:{key}:run:{build}"
    world.services.events.run_finished(build)  # the hook again (another controller, a second call): no new run
    assert world.services.events.wait(30)
    assert len(world.runs("deploy.yaml")) == 1
    world.finish(deploy.id)  # deploy finishing starts nothing: nothing listens to it
    assert len(world.runs()) == 2


def test_failure_success_and_any(world: World) -> None:
    repo = world.repo("acme/app", {
        "build.yaml": workflow("build"),
        "deploy.yaml": workflow("deploy", "{type: event, workflow: build, state: success}"),
        "alert.yaml": workflow("alert", "{type: event, workflow: build, state: failure}"),
        "cleanup.yaml": workflow("cleanup", "{type: event, workflow: build, state: any}",
                                 "{type: event, workflow: build, state: failure}"),  # one run, not two
    })
    failed = world.start(repo, "build.yaml")
    world.finish(failed, Outcome.FAILED)
    assert world.run(failed)["state"] == "failed"
    assert world.runs("deploy.yaml") == []
    [alert] = world.runs("alert.yaml")
    [cleanup] = world.runs("cleanup.yaml")
    assert alert.trigger["state"] == "failed" and alert.trigger["run"] == failed
    assert cleanup.trigger["run"] == failed
    for run in (alert, cleanup):  # out of the way
        world.api.post(f"/api/v1/runs/{run.id}/cancel")
    assert world.services.events.wait(30)

    errored = world.start(repo, "build.yaml")
    world.finish(errored, Outcome.ERRORED)  # retried once by itself
    world.finish(errored, Outcome.ERRORED)
    assert world.run(errored)["state"] == "errored"
    assert [r.trigger["run"] for r in world.runs("alert.yaml")] == [failed, errored]  # errored is a failure too

    ok = world.start(repo, "build.yaml")
    for run in world.runs():
        if run.state == "running" and run.id != ok:
            world.api.post(f"/api/v1/runs/{run.id}/cancel")
    assert world.services.events.wait(30)
    world.finish(ok)
    [deploy] = world.runs("deploy.yaml")
    assert deploy.trigger["run"] == ok and deploy.trigger["state"] == "succeeded"
    assert [r.trigger["run"] for r in world.runs("alert.yaml")] == [failed, errored]
    assert [r.trigger["run"] for r in world.runs("cleanup.yaml")] == [failed, errored, ok]


def test_a_canceled_run_fires_any_only(world: World) -> None:
    repo = world.repo("acme/app", {
        "build.yaml": workflow("build"),
        "deploy.yaml": workflow("deploy", "{type: event, workflow: build}"),
        "alert.yaml": workflow("alert", "{type: event, workflow: build, state: failure}"),
        "cleanup.yaml": workflow("cleanup", "{type: event, workflow: build, state: any}"),
    })
    build = world.start(repo, "build.yaml")
    assert world.api.post(f"/api/v1/runs/{build}/cancel").status_code in (200, 202)
    assert world.services.events.wait(30)
    assert world.run(build)["state"] == "canceled"
    assert world.runs("deploy.yaml") == [] and world.runs("alert.yaml") == []
    [cleanup] = world.runs("cleanup.yaml")
    assert cleanup.trigger["state"] == "canceled"


def test_two_controllers_on_one_database_start_one_run_per_finished_run(
        make_api: Callable[..., Api], database_url: str, tmp_path: Path) -> None:  # noqa: F811
    world = World(make_api(database_url), tmp_path)
    repo = world.repo("acme/app", {"build.yaml": workflow("build"),
                                   "deploy.yaml": workflow("deploy", "{type: event, workflow: build}")})
    other = Services.build(world.services.settings)  # a second controller
    hooks = world.services.scheduler.on_state
    hooks.remove(world.services.events.run_finished)  # the finish is seen by hand below, by both at once
    try:
        build = world.start(repo, "build.yaml")
        world.finish(build)
        assert world.runs("deploy.yaml") == []
        both = [threading.Thread(target=e.run_finished, args=(build,)) for e in (world.services.events, other.events)]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join()
        assert world.services.events.wait(30) and other.events.wait(30)
        assert len(world.runs("deploy.yaml")) == 1
    finally:
        other.store.engine.dispose()


def test_a_workflow_of_another_repository(world: World) -> None:
    app = world.repo("acme/app", {"build.yaml": workflow("build")})
    other = world.repo("acme/ops", {
        "build.yaml": workflow("build"),  # the same name in the watching repository
        "deploy-app.yaml": workflow("deploy-app", "{type: event, workflow: build, repo: acme/app}"),
        "own.yaml": workflow("own", "{type: event, workflow: build}"),  # its own repository's build
    })
    build = world.start(app, "build.yaml")
    world.finish(build)
    [deploy] = world.runs("deploy-app.yaml")
    assert deploy.repo == "acme/ops" and deploy.repo_id == other.id
    assert deploy.trigger["repo"] == "acme/app" and deploy.trigger["run"] == build
    assert deploy.commit_sha == git(world.tmp / "acme_ops", "rev-parse", "HEAD")  # the watcher's own head
    assert world.runs("own.yaml") == []  # acme/app's build is not acme/ops' build
    world.finish(deploy.id)

    own_build = world.start(other, "build.yaml")
    world.finish(own_build)
    [own] = world.runs("own.yaml")
    assert own.trigger["repo"] == "acme/ops" and own.trigger["run"] == own_build
    assert len(world.runs("deploy-app.yaml")) == 1  # acme/ops' build is not acme/app's


def test_a_custom_event_starts_the_listening_workflows_with_its_payload(world: World) -> None:
    release = workflow("release", "{type: event, name: deploy-requested}",
                       env='      env: {VERSION: "${trigger.payload.version}", WHO: "${trigger.by}"}\n')
    app = world.repo("acme/app", {"release.yaml": release, "other.yaml": workflow("other", "{type: event, name: x}")})
    world.repo("acme/site", {"release.yaml": release})
    resp = world.api.post("/api/v1/events/deploy-requested", {"version": "1.2.3", "notes": {"a": [1, 2]}})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["skipped"] == {} and len(body["runs"]) == 2
    assert [s["id"] for s in body["started"]] == body["runs"] and all(s["workflow"] for s in body["started"])
    runs = [world.run(r) for r in body["runs"]]
    assert sorted(r["repo"] for r in runs) == ["acme/app", "acme/site"]
    assert runs[0]["trigger"]["by"] == "api-key:ci-admin" and runs[0]["trigger"]["name"] == "deploy-requested"
    assert runs[0]["trigger"]["payload"] == {"version": "1.2.3", "notes": {"a": [1, 2]}}
    assert runs[0]["event"] == "event"
    lease = world.peer.lease("r1", ["linux"], 1)
    assert lease is not None and lease.spec.run_id == str(body["runs"][0])
    assert lease.spec.env["VERSION"] == "1.2.3" and lease.spec.env["WHO"] == "api-key:ci-admin"

    only = world.api.post("/api/v1/events/deploy-requested?repo=acme/app", None)  # no body: an empty payload
    assert only.status_code == 202, only.text
    [one] = only.json()["runs"]
    assert world.run(one)["repo"] == "acme/app" and world.run(one)["trigger"]["payload"] == {}
    assert world.api.post("/api/v1/events/x", {}).json()["runs"] != []  # each event is one run, every time
    assert len(world.api.post("/api/v1/events/x", {}).json()["runs"]) == 1
    assert len([r for r in world.runs("other.yaml") if r.repo_id == app.id]) == 2


def test_a_custom_event_nobody_listens_to_and_bad_requests(world: World) -> None:
    world.repo("acme/app", {"release.yaml": workflow("release", "{type: event, name: deploy-requested}")})
    resp = world.api.post("/api/v1/events/nobody-listens", {"a": 1})
    assert resp.status_code == 200, resp.text
    assert resp.json()["runs"] == [] and "no workflow listens to the event 'nobody-listens'" in resp.json()["message"]
    assert world.runs() == []
    assert world.api.post("/api/v1/events/deploy-requested?repo=acme/nope", {}).status_code == 404
    assert world.api.post("/api/v1/events/deploy-requested", [1, 2]).json()["error"]["message"] == \
        "the body must be a JSON object, got an array"
    assert world.api.post("/api/v1/events/deploy-requested", {"x": "y" * 70_000}).status_code == 413
    assert world.api.post("/api/v1/events/deploy-requested", {}, key=world.api.reader).status_code == 403
    assert world.api.client.post("/api/v1/events/deploy-requested", json={}).status_code == 401
    assert world.runs() == []


def test_a_chain_a_b_a_is_cut_at_the_depth_limit_with_a_clear_log(world: World) -> None:
    repo = world.repo("acme/app", {
        "a.yaml": workflow("a", "{type: manual}", "{type: event, workflow: b}"),
        "b.yaml": workflow("b", "{type: event, workflow: a, state: any}"),
    })
    run_id = world.start(repo, "a.yaml")
    with structlog.testing.capture_logs() as logs:
        for _ in range(MAX_DEPTH + 5):
            world.finish(run_id)
            newest = world.runs()[-1]
            if newest.id == run_id:
                break
            run_id = newest.id
    runs = world.runs()
    assert len(runs) == MAX_DEPTH + 1  # depths 0 to 10
    assert [r.workflow for r in runs] == ["a", "b"] * (MAX_DEPTH // 2) + ["a"]
    assert [depth_of(r.trigger) for r in runs] == list(range(MAX_DEPTH + 1))
    assert all(r.state == "succeeded" for r in runs)
    [cut] = [e for e in logs if e["event"] == "event chain cut"]
    assert cut["log_level"] == "warning" and cut["depth"] == MAX_DEPTH + 1 and cut["limit"] == MAX_DEPTH
    ids = [r.id for r in runs]
    assert cut["chain"] == " -> ".join([*(f"{w} [run {i}]" for w, i in zip("ab" * 6, ids)), "b [not started]"])
    [note] = [line for _task, _ts, line in world.services.store.logs(runs[-1].id) if "[clarity]" in line]
    assert note == ("[clarity] event trigger: .clarity/b.yaml of acme/app not started: the chain of runs started by "
                    f"event triggers would reach depth 11, and the limit is 10 (a loop?): {cut['chain']}")


def test_a_workflow_that_triggers_itself_does_not_lint_and_declares_nothing(world: World) -> None:
    text = workflow("loop", "{type: event, workflow: loop, state: failure}")
    wf, diagnostics = lint_text(text, "w.yaml")
    assert wf is None
    assert [d.format() for d in diagnostics] == [
        "w.yaml:4:31: error: a workflow that starts itself when it finishes never stops\n"
        "  hint: name another workflow; to try again after a failure, give the task `retries`, or use a schedule"]
    ok, diagnostics = lint_text(workflow("loop", "{type: event, workflow: loop, repo: acme/other}"), "w.yaml")
    assert ok is not None and diagnostics == []  # the workflow of the same name in another repository
    world.repo("acme/app", {"loop.yaml": text})
    assert world.triggers.list("event") == []


def test_the_hook_never_breaks_the_scheduler(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = world.repo("acme/app", {"build.yaml": workflow("build"),
                                   "deploy.yaml": workflow("deploy", "{type: event, workflow: build}")})

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the forge is on fire")

    monkeypatch.setattr(world.services.starter, "event", broken)
    build = world.start(repo, "build.yaml")
    with structlog.testing.capture_logs() as logs:
        world.finish(build)
    assert world.run(build)["state"] == "succeeded" and world.runs("deploy.yaml") == []
    assert any(e["event"] == "event trigger failed" and e["log_level"] == "error" for e in logs)
    world.services.events.run_finished(10**9)  # an unknown run: logged, not raised


# -- `clarity event send` against a real controller ---------------------------------------------


class Controller(ControllerProcess):
    def clarity(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "controller.cli", *args, "--controller", self.url],
                              env=self.env, input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    c = Controller(tmp_path / "home", tmp_path / "controller.log")
    c.start()
    yield c
    c.stop()


def test_clarity_event_send(controller: Controller, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / ".clarity").mkdir(parents=True)
    (src / ".clarity" / "release.yaml").write_text(workflow(
        "release", "{type: event, name: deploy-requested}", env='      env: {V: "${trigger.payload.version}"}\n'))
    env = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "d@example.org", "GIT_COMMITTER_NAME": "Dev",
           "GIT_COMMITTER_EMAIL": "d@example.org"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "release"]):
        subprocess.run(["git", *args], cwd=src, check=True, capture_output=True, env={**controller.env, **env})
    done = controller.clarity("repo", "add", "acme/app", "--url", str(src))
    assert done.returncode == 0, done.stdout + done.stderr

    def send(*extra: str, stdin: str = "") -> dict[str, Any]:
        done = controller.clarity("event", "send", "deploy-requested", "--json", *extra, stdin=stdin)
        assert done.returncode == 0, done.stdout + done.stderr
        return dict(json.loads(done.stdout))

    # the controller reads the repository's triggers on its next pass: until then nothing listens
    first = wait_until(lambda: send("--payload", '{"version": "1.0"}')["runs"] or None,
                       lambda: "no run started:\n" + controller.log.read_text(), timeout=30, step=0.5)
    assert len(first) == 1
    (tmp_path / "payload.json").write_text('{"version": "2.0"}')
    second = send("--payload-file", str(tmp_path / "payload.json"), "--repo", "acme/app")
    third = send("--payload-file", "-", stdin='{"version": "3.0"}')
    headers = {"Authorization": f"Bearer {(controller.home / 'api-key').read_text().strip()}"}
    versions = [httpx.get(f"{controller.url}/api/v1/runs/{r}", headers=headers).json()["trigger"]["payload"]["version"]
                for r in [*first, *second["runs"], *third["runs"]]]
    assert versions == ["1.0", "2.0", "3.0"]

    nobody = controller.clarity("event", "send", "nobody-listens", "--json")
    assert nobody.returncode == 0 and json.loads(nobody.stdout)["runs"] == []
    assert "no workflow listens to the event 'nobody-listens'" in nobody.stderr
    bad = controller.clarity("event", "send", "deploy-requested", "--payload", "[1]")
    assert bad.returncode == 2 and "the payload must be a JSON object" in bad.stderr, bad.stderr
    bad = controller.clarity("event", "send", "deploy-requested", "--payload", "{nope")
    assert bad.returncode == 2 and "--payload: not JSON" in bad.stderr, bad.stderr
    bad = controller.clarity("event", "send", "deploy-requested", "--repo", "acme/nope")
    assert bad.returncode == 2 and "404" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
