"""Composition in the scheduler: `type: workflow` tasks run sub-runs (FakeBackend, a real Store)."""

from __future__ import annotations

import textwrap
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from controller.engine import RunSpec, Scheduler
from controller.peer import InProcessPeer
from controller.store.queue import Queue
from controller.store.runs import RunRow, Store
from controller.workflow.compile import GitInfo
from controller.workflow.compose import MAX_DEPTH
from controller.workflow.sources import FileRef, Loaded, SourceError
from runner.agent import Agent
from runner.backends.fake import FakeBackend
from runner.spec import Workspace
from runner.workspace import WorkspaceCache
from tests.controller.conftest import Recorder, load_workflow
from tests.workflow.compose_support import DictSources

DEPLOY = """
workflow:
  name: deploy
  outputs:
    url: "https://${inputs.env}.example.org/${tasks.release.outputs.version}"
    replicas: "${inputs.replicas}"
  triggers:
    - type: manual
      inputs:
        env: {type: choice, options: [staging, production], required: true}
        replicas: {type: number, default: 1}
        version: {type: string}
  tasks:
    - name: release
      image: alpine
      commands:
        - echo "releasing ${inputs.version} to ${inputs.env}"
        - echo "version=${inputs.version}" >> "$CLARITY_OUTPUTS"
"""

PARENT = """
workflow:
  name: ci
  outputs:
    url: "${tasks.deploy.outputs.url}"
  tasks:
    - name: build
      image: alpine
      commands: ['echo "version=1.2.3" >> "$CLARITY_OUTPUTS"']
    - name: deploy
      type: workflow
      workflow: deploy.yaml
      inputs: {env: staging, replicas: 2, version: "${tasks.build.outputs.version}"}
    - name: announce
      image: alpine
      commands: ['echo "deployed at ${tasks.deploy.outputs.url}"']
"""


class Env:
    def __init__(self, tmp: Path, store: Store, sources: DictSources | None) -> None:
        self.tmp, self.store, self.sources = tmp, store, sources
        self.ws = tmp / "src"
        self.ws.mkdir(exist_ok=True)
        self.recorder = Recorder()

    def scheduler(self, cls: type[Scheduler] = Scheduler) -> Scheduler:
        sources = self.sources
        return cls(self.store, Queue(self.store.engine),
                   sources_for=(lambda run: sources) if sources is not None else None)

    @contextmanager
    def agent(self, scheduler: Scheduler) -> Iterator[None]:
        agent = Agent(InProcessPeer(scheduler.queue, scheduler), FakeBackend(), self.tmp / "work",
                      WorkspaceCache(self.tmp / "cache"), slots=4, poll_s=0.05, heartbeat_s=0.1, log_flush_s=0.02)
        agent.start()
        try:
            yield
        finally:
            agent.stop()

    def create(self, scheduler: Scheduler, text: str, file: str = ".clarity/ci.yaml") -> int:
        wf = load_workflow(text, file)
        run_id = scheduler.create_run(RunSpec(
            workflow=wf, workflow_text=textwrap.dedent(text), repo="acme/app", dirty=True, event="push",
            git=GitInfo(sha="a" * 40, ref="refs/heads/main", branch="main"),
            workspace=Workspace(repo=str(self.ws), dirty_path=str(self.ws)),
        ))
        assert run_id is not None
        scheduler.watch(run_id, self.recorder)
        return run_id

    def run(self, text: str, *, scheduler: Scheduler | None = None, timeout: float = 20) -> RunRow:
        scheduler = scheduler or self.scheduler()
        with self.agent(scheduler):
            run_id = self.create(scheduler, text)
            scheduler.start(run_id)
            scheduler.wait(run_id, timeout_s=timeout)
        return self.store.get_run(run_id)

    def tasks(self, run_id: int) -> dict[str, Any]:
        return {t.name: t for t in self.store.list_tasks(run_id)}

    def logs(self, run_id: int, task: str) -> list[str]:
        return [line for _, _, line in self.store.logs(run_id, task)]


@pytest.fixture
def env(tmp_path: Path, store: Store) -> Callable[..., Env]:
    def make(files: dict[str, str] | None = None, *, sources: DictSources | None = None) -> Env:
        return Env(tmp_path, store, sources if sources is not None else DictSources(files=dict(files or {})))
    return make


def until(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_sub_run_outputs_reach_downstream_tasks_and_the_run(env: Callable[..., Env]) -> None:
    e = env({".clarity/deploy.yaml": DEPLOY})
    run = e.run(PARENT)
    assert run.state == "succeeded", [(t.name, t.state, t.error) for t in e.tasks(run.id).values()]
    (sub,) = e.store.sub_runs(run.id)
    assert (sub.parent_run, sub.parent_task, sub.state) == (run.id, "deploy", "succeeded")
    assert sub.workflow_file == ".clarity/deploy.yaml" and sub.commit_sha == "a" * 40
    assert sub.trigger == {"by": "workflow", "parent_run": run.id, "parent_task": "deploy", "depth": 1,
                           "inputs": {"env": "staging", "replicas": "2", "version": "1.2.3"}}
    assert sub.outputs == {"url": "https://staging.example.org/1.2.3", "replicas": "2"}
    deploy = e.tasks(run.id)["deploy"]
    assert deploy.outputs == sub.outputs and deploy.output == {"run": sub.id, "outputs": sub.outputs}
    assert deploy.image == "workflow .clarity/deploy.yaml"
    assert e.logs(run.id, "deploy") == [f"[clarity] sub-run {sub.id}: deploy (.clarity/deploy.yaml)",
                                        f"[clarity] sub-run {sub.id} succeeded"]
    assert "deployed at https://staging.example.org/1.2.3" in e.logs(run.id, "announce")
    assert run.outputs == {"url": "https://staging.example.org/1.2.3"}
    assert "releasing 1.2.3 to staging" in e.logs(sub.id, "release")
    # the file the sub-run came from is recorded; its events reach the parent's listener as TASK/SUBTASK
    assert sub.context["workflow_source"]["path"] == ".clarity/deploy.yaml"
    assert e.recorder.kinds("deploy/release")[0] == "started" and e.recorder.kinds("deploy/release")[-1] == "finished"


def test_sub_run_failure_fails_the_task_naming_the_sub_run(env: Callable[..., Env]) -> None:
    e = env({".clarity/deploy.yaml": DEPLOY.replace('echo "releasing', 'exit 3; echo "')})
    run = e.run(PARENT)
    (sub,) = e.store.sub_runs(run.id)
    tasks = e.tasks(run.id)
    assert (run.state, sub.state) == ("failed", "failed")
    assert tasks["deploy"].state == "failed"
    assert tasks["deploy"].error == f"sub-run {sub.id} (.clarity/deploy.yaml) failed: task 'release' failed (exit code 3)"
    assert tasks["announce"].state == "skipped"
    assert run.outputs is None


def test_wrong_input_from_an_expression_fails_the_task_before_any_sub_run(env: Callable[..., Env]) -> None:
    e = env({".clarity/deploy.yaml": DEPLOY})
    run = e.run(PARENT.replace("replicas: 2", 'replicas: "${tasks.build.outputs.version}"'))
    assert run.state == "failed" and e.store.sub_runs(run.id) == []
    error = e.tasks(run.id)["deploy"].error
    assert error == "wrong input: .clarity/deploy.yaml: input 'replicas' must be a number, got '1.2.3'"
    assert e.logs(run.id, "deploy") == [f"error: {error}"]


def test_missing_or_broken_sub_workflow_fails_the_task(env: Callable[..., Env]) -> None:
    e = env({".clarity/deploy.yaml": "workflow: {name: deploy, tasks: [{name: x}]}\n"})
    run = e.run(PARENT.replace("deploy.yaml", "nothing.yaml"))
    assert e.tasks(run.id)["deploy"].error == "cannot read the workflow .clarity/nothing.yaml: no file .clarity/nothing.yaml"
    run = e.run(PARENT)
    error = e.tasks(run.id)["deploy"].error
    assert error.startswith("the workflow .clarity/deploy.yaml has errors: .clarity/deploy.yaml:1:"), error
    assert "missing required key 'image'" in error


def test_no_sources_fails_the_task_with_a_reason(env: Callable[..., Env], tmp_path: Path, store: Store) -> None:
    e = Env(tmp_path, store, None)
    run = e.run(PARENT)
    assert run.state == "failed"
    assert "cannot read other workflow files" in e.tasks(run.id)["deploy"].error


SLOW = """
workflow:
  name: slow
  tasks:
    - name: wait
      image: alpine
      commands: ["sleep 30"]
"""


def test_cancelling_the_parent_cancels_the_sub_run(env: Callable[..., Env]) -> None:
    e = env({".clarity/slow.yaml": SLOW})
    scheduler = e.scheduler()
    started = time.monotonic()
    with e.agent(scheduler):
        run_id = e.create(scheduler, """
        workflow:
          name: ci
          tasks:
            - {name: deploy, type: workflow, workflow: slow.yaml}
            - {name: after, image: alpine, commands: ["true"]}
        """)
        scheduler.start(run_id)
        sub = until(lambda: [s for s in e.store.sub_runs(run_id) if e.tasks(s.id)["wait"].state == "running"])[0]
        scheduler.cancel(run_id)
        assert scheduler.wait(run_id, timeout_s=10) == "canceled"
    assert time.monotonic() - started < 10
    assert e.store.get_run(sub.id).state == "canceled"
    tasks = e.tasks(run_id)
    assert (tasks["deploy"].state, tasks["deploy"].error) == ("canceled", f"canceled, with its sub-run {sub.id}")
    assert tasks["after"].state == "canceled"


def test_wait_false_ends_the_task_once_the_sub_run_is_made(env: Callable[..., Env]) -> None:
    e = env({".clarity/slow.yaml": SLOW.replace("sleep 30", "sleep 0.5")})
    scheduler = e.scheduler()
    with e.agent(scheduler):
        run_id = e.create(scheduler, """
        workflow:
          name: ci
          tasks:
            - {name: deploy, type: workflow, workflow: slow.yaml, wait: false}
            - {name: after, image: alpine, commands: ['echo "started run ${tasks.deploy.outputs.run}"']}
        """)
        scheduler.start(run_id)
        assert scheduler.wait(run_id, timeout_s=10) == "succeeded"
        (sub,) = e.store.sub_runs(run_id)
        assert e.store.get_run(sub.id).state in ("queued", "running")  # the parent did not wait for it
        assert scheduler.wait(sub.id, timeout_s=10) == "succeeded"
    deploy = e.tasks(run_id)["deploy"]
    assert (deploy.state, deploy.outputs, deploy.output) == ("succeeded", {"run": str(sub.id)}, {"run": sub.id})
    assert f"started run {sub.id}" in e.logs(run_id, "after")


class Endless(DictSources):
    """level{n}.yaml runs level{n+1}.yaml, through another repository each time: recursion lint
    cannot see as a cycle."""

    def read(self, ref: FileRef, *, relative_to: Loaded | None = None) -> Loaded:
        name = ref.repo_path.removeprefix(".clarity/")
        if not name.startswith("level"):
            raise SourceError(f"no file {name}")
        n = int(name.removeprefix("level").removesuffix(".yaml"))
        text = (f"workflow:\n  name: level{n}\n  tasks:\n"
                f"    - {{name: deeper, type: workflow, workflow: {{repo: r{n + 1}, ref: v1, path: level{n + 1}.yaml}}}}\n")
        return Loaded(ref, text, ref.shown(), ref.repo or "this", self.commit, None)


def test_recursion_lint_cannot_see_is_cut_at_the_depth_limit(env: Callable[..., Env]) -> None:
    e = env(sources=Endless())
    run = e.run("""
    workflow:
      name: top
      tasks:
        - {name: deeper, type: workflow, workflow: level1.yaml}
    """)
    assert run.state == "failed"
    chain = [run]
    while subs := e.store.sub_runs(chain[-1].id):
        chain.append(subs[0])
    assert len(chain) == MAX_DEPTH + 1  # the top run, and MAX_DEPTH sub-runs inside one another
    assert [r.trigger.get("depth", 0) for r in chain] == list(range(MAX_DEPTH + 1))
    deepest = e.tasks(chain[-1].id)["deeper"].error
    assert deepest.startswith(f"not started: sub-runs nest deeper than {MAX_DEPTH} (.clarity/ci.yaml -> "
                              ".clarity/level1.yaml -> r2@v1:.clarity/level2.yaml"), deepest
    assert all(r.state == "failed" for r in chain)
    assert e.tasks(run.id)["deeper"].error.startswith(f"sub-run {chain[1].id} (.clarity/level1.yaml) failed")


class Crashing(Scheduler):
    """A controller that dies right after a sub-run ends, before its parent hears of it."""

    def _sub_run_over(self, sub_id: int) -> None:
        pass


def test_resume_finishes_the_parent_task_of_a_sub_run_that_ended_meanwhile(env: Callable[..., Env]) -> None:
    e = env({".clarity/deploy.yaml": DEPLOY})
    first = e.scheduler(Crashing)
    with e.agent(first):
        run_id = e.create(first, PARENT)
        first.start(run_id)
        sub = until(lambda: [s for s in e.store.sub_runs(run_id) if s.state == "succeeded"])[0]
        time.sleep(0.2)
    assert e.tasks(run_id)["deploy"].state == "running" and e.store.get_run(run_id).state == "running"
    restarted = e.scheduler()
    with e.agent(restarted):
        assert run_id in restarted.resume()
        assert restarted.wait(run_id, timeout_s=10) == "succeeded"
    assert e.tasks(run_id)["deploy"].outputs == sub.outputs
    assert e.store.get_run(run_id).outputs == {"url": "https://staging.example.org/1.2.3"}
    assert len(e.store.sub_runs(run_id)) == 1


def test_resume_makes_the_sub_run_a_crash_left_unmade(env: Callable[..., Env]) -> None:
    e = env({".clarity/deploy.yaml": DEPLOY})
    first = e.scheduler()
    run_id = e.create(first, PARENT)
    e.store.set_run_state(run_id, "running", started=True)
    e.store.update_task(run_id, "build", state="succeeded", outputs={"version": "9.9"}, attempt=1)
    e.store.update_task(run_id, "deploy", state="running", attempt=1, started_at=time.time())  # then it died
    restarted = e.scheduler()
    with e.agent(restarted):
        restarted.resume()
        assert restarted.wait(run_id, timeout_s=10) == "succeeded"
    (sub,) = e.store.sub_runs(run_id)
    assert sub.outputs == {"url": "https://staging.example.org/9.9", "replicas": "2"}


def test_an_output_that_cannot_be_read_fails_the_run(env: Callable[..., Env]) -> None:
    e = env()
    run = e.run("""
    workflow:
      name: w
      outputs: {url: "${tasks.a.outputs.url}"}
      tasks:
        - {name: a, image: alpine, commands: ["true"]}
    """)
    assert run.state == "failed" and run.outputs is None
    assert run.message == "output 'url': ${tasks.a.outputs.url}: task 'a' wrote no output 'url' (it wrote: none)"


def test_concurrent_sub_runs_of_one_run(env: Callable[..., Env]) -> None:
    e = env({".clarity/deploy.yaml": DEPLOY})
    run = e.run("""
    workflow:
      name: ci
      tasks:
        - {name: a, type: workflow, workflow: deploy.yaml, needs: [], inputs: {env: staging, version: "1"}}
        - {name: b, type: workflow, workflow: deploy.yaml, needs: [], inputs: {env: production, version: "2"}}
        - name: c
          image: alpine
          commands: ['echo "${tasks.a.outputs.url} ${tasks.b.outputs.url}"']
    """)
    assert run.state == "succeeded"
    assert {s.parent_task: s.outputs["url"] for s in e.store.sub_runs(run.id)} == {
        "a": "https://staging.example.org/1", "b": "https://production.example.org/2"}
    assert "https://staging.example.org/1 https://production.example.org/2" in e.logs(run.id, "c")


def test_threads_do_not_deadlock_when_sub_runs_end_together(env: Callable[..., Env]) -> None:
    e = env({".clarity/fast.yaml": SLOW.replace("sleep 30", "true")})
    tasks = "\n".join(f"    - {{name: t{i}, type: workflow, workflow: fast.yaml, needs: []}}" for i in range(6))
    done = threading.Event()
    result: list[RunRow] = []

    def go() -> None:
        result.append(e.run(f"workflow:\n  name: many\n  tasks:\n{tasks}\n"))
        done.set()

    threading.Thread(target=go, daemon=True).start()
    assert done.wait(20), "the run did not end: a deadlock?"
    assert result[0].state == "succeeded" and len(e.store.sub_runs(result[0].id)) == 6
