"""Fixtures of the controller tests: real git repositories, a Store in tmp_path, the FakeBackend.

No Docker, and nothing outside tmp_path: CLARITY_HOME points into it for every test.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from controller.engine import RunSpec, Scheduler
from controller.peer import InProcessPeer
from controller.store.queue import Queue
from runner.agent import Agent
from controller.store.runs import Store, TaskRow
from controller.workflow.compile import GitInfo, RunContext
from controller.workflow.lint import lint_text
from controller.workflow.model import Workflow
from runner.backends.fake import FakeBackend
from runner.spec import Outcome, TaskResult, Workspace
from runner.workspace import WorkspaceCache

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dev One", "GIT_AUTHOR_EMAIL": "dev1@example.org",
    "GIT_COMMITTER_NAME": "Dev One", "GIT_COMMITTER_EMAIL": "dev1@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def clarity_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CLARITY_HOME in tmp_path, and no CLARITY_* / secret variables leaking in from outside."""
    for key in list(os.environ):
        if key.startswith("CLARITY_") and key != "CLARITY_REQUIRE_DOCKER":
            monkeypatch.delenv(key)
    home = tmp_path / "clarity-home"
    monkeypatch.setenv("CLARITY_HOME", str(home))
    monkeypatch.setenv("CLARITY_PARALLEL", "4")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    return home


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Repo:
    path: Path

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            p = self.path / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(textwrap.dedent(text))

    def commit(self, files: dict[str, str] | None = None, message: str = "change") -> str:
        self.write(files or {})
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD")


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Repo]:
    counter = [0]

    def make(files: dict[str, str] | None = None, *, message: str = "initial", branch: str = "main") -> Repo:
        counter[0] += 1
        path = tmp_path / f"repo{counter[0]}"
        path.mkdir()
        git(path, "init", "-q", "-b", branch)
        repo = Repo(path)
        if files is not None:
            repo.commit(files, message)
        return repo

    return make


def load_workflow(text: str, file: str = ".clarity/ci.yaml") -> Workflow:
    """The model of a workflow text (dedented); fails the test on a lint error."""
    wf, diags = lint_text(textwrap.dedent(text), file)
    assert wf is not None, "\n".join(d.format() for d in diags)
    return wf


# -- the engine harness ------------------------------------------------------------------------


@dataclass
class Recorder:
    """A Listener keeping every event, with its time."""

    events: list[tuple[float, str, str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_log: Callable[[str, str], None] | None = None

    def task_started(self, task: str, attempt: int) -> None:
        with self.lock:
            self.events.append((time.monotonic(), "started", task, attempt))

    def task_log(self, task: str, line: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), "log", task, line))
        if self.on_log is not None:
            self.on_log(task, line)

    def task_finished(self, task: str, result: TaskResult, will_retry: bool) -> None:
        with self.lock:
            self.events.append((time.monotonic(), "finished", task, (result, will_retry)))

    def kinds(self, task: str) -> list[str]:
        return [kind for _, kind, name, _ in self.events if name == task]


@dataclass
class EngineRun:
    verdict: Outcome
    store: Store
    run_id: int
    recorder: Recorder

    @property
    def tasks(self) -> dict[str, TaskRow]:
        return {t.name: t for t in self.store.list_tasks(self.run_id)}

    def states(self) -> dict[str, str]:
        return {name: row.state for name, row in self.tasks.items()}

    def logs(self, task: str | None = None) -> list[str]:
        return [line for _, _, line in self.store.logs(self.run_id, task)]


@dataclass
class Harness:
    tmp: Path
    store: Store
    workspace_dir: Path

    def run(
        self,
        text: str,
        *,
        parallel: int = 2,
        cancel: threading.Event | None = None,
        recorder: Recorder | None = None,
        **ctx: Any,
    ) -> EngineRun:
        """Run one workflow through the scheduler, the queue and an in-process agent with
        `parallel` slots on the FakeBackend; ctx: RunSpec fields (git, event, inputs, ...) and
        `secrets`."""
        wf = load_workflow(text)
        secrets = ctx.pop("secrets", {})
        ctx.setdefault("git", GitInfo(sha="a" * 40, ref="refs/heads/main", branch="main"))
        ctx.setdefault("event", "push")
        queue = Queue(self.store.engine)
        scheduler = Scheduler(self.store, queue, secrets=lambda run: secrets)
        run_id = scheduler.create_run(RunSpec(
            workflow=wf, workflow_text=textwrap.dedent(text), repo=str(self.workspace_dir), dirty=True,
            workspace=Workspace(repo=str(self.workspace_dir), dirty_path=str(self.workspace_dir)), **ctx,
        ))
        assert run_id is not None
        agent = Agent(InProcessPeer(queue, scheduler), FakeBackend(), self.tmp / "work",
                      WorkspaceCache(self.tmp / "cache"), slots=parallel, poll_s=0.05, heartbeat_s=0.1,
                      log_flush_s=0.02)
        recorder = recorder or Recorder()
        scheduler.watch(run_id, recorder)
        agent.start()
        try:
            if cancel is not None and cancel.is_set():
                scheduler.cancel(run_id)
            scheduler.start(run_id)
            verdict = Outcome(scheduler.wait(run_id, cancel))
        finally:
            agent.stop()
        return EngineRun(verdict, self.store, run_id, recorder)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'db' / 'clarity.db'}")
    yield s
    s.engine.dispose()


@pytest.fixture
def harness(tmp_path: Path, store: Store) -> Harness:
    ws = tmp_path / "src"
    ws.mkdir()
    (ws / "hello.txt").write_text("hello from the workspace\n")
    return Harness(tmp_path, store, ws)
