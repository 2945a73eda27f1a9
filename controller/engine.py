"""The run executor: walks a run's DAG, renders each ready task, hands it to a runner, keeps state.

Order and conditions are settled before the first task starts (`when` decides who is skipped);
then tasks start as soon as everything they need has finished, up to `parallel` at a time. A task
whose upstream failed is skipped; only an ERRORED task (infrastructure) is retried without being
asked to, a FAILED or TIMED_OUT one only when the task declares `retries`.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from controller.store.runs import Store
from controller.workflow import dag
from controller.workflow.compile import RenderError, RunContext, render_task, when_skip_reason
from controller.workflow.model import Task
from runner.backends.base import Backend
from runner.execute import execute
from runner.masking import Masker
from runner.spec import Outcome, TaskResult
from runner.workspace import WorkspaceCache

AUTO_RETRIES_ERRORED = 1
LOG_FLUSH_LINES = 200
LOG_FLUSH_SECONDS = 0.5

FAILING = (Outcome.FAILED, Outcome.TIMED_OUT, Outcome.ERRORED, Outcome.CANCELED)


class Listener(Protocol):
    """Who watches a run as it happens (the terminal, later the API's event stream)."""

    def task_started(self, task: str, attempt: int) -> None: ...
    def task_log(self, task: str, line: str) -> None: ...
    def task_finished(self, task: str, result: TaskResult, will_retry: bool) -> None: ...


class _NullListener:
    def task_started(self, task: str, attempt: int) -> None:
        pass

    def task_log(self, task: str, line: str) -> None:
        pass

    def task_finished(self, task: str, result: TaskResult, will_retry: bool) -> None:
        pass


def run_state(outcomes: list[Outcome]) -> Outcome:
    """One verdict for a run from its tasks' outcomes."""
    for worst in (Outcome.CANCELED, Outcome.FAILED, Outcome.TIMED_OUT, Outcome.ERRORED):
        if worst in outcomes:
            return Outcome.FAILED if worst is Outcome.TIMED_OUT else worst
    return Outcome.SUCCEEDED


class _LogSink:
    """Buffers a task's (already masked) lines and writes them to the store in batches."""

    def __init__(self, store: Store, run_id: int, task: str, listener: Listener) -> None:
        self.store, self.run_id, self.task, self.listener = store, run_id, task, listener
        self.lock = threading.Lock()
        self.buffer: list[tuple[float, str]] = []
        self.last_flush = time.monotonic()

    def __call__(self, line: str) -> None:
        self.listener.task_log(self.task, line)
        with self.lock:
            self.buffer.append((time.time(), line))
            if len(self.buffer) >= LOG_FLUSH_LINES or time.monotonic() - self.last_flush > LOG_FLUSH_SECONDS:
                self._flush()

    def _flush(self) -> None:
        batch, self.buffer = self.buffer, []
        self.last_flush = time.monotonic()
        self.store.append_logs(self.run_id, self.task, batch)

    def flush(self) -> None:
        with self.lock:
            self._flush()


@dataclass
class Engine:
    store: Store
    backend: Backend
    workspaces: WorkspaceCache
    work_root: Path
    parallel: int = 2
    retry_delay_s: float = 1.0

    def execute(self, ctx: RunContext, cancel: threading.Event, listener: Listener | None = None) -> Outcome:
        """Run every task of the run `ctx.run_id` (already created in the store); return its verdict."""
        return _Run(self, ctx, cancel, listener or _NullListener()).go()


class _Run:
    def __init__(self, engine: Engine, ctx: RunContext, cancel: threading.Event, listener: Listener) -> None:
        self.e, self.ctx, self.cancel, self.listener = engine, ctx, cancel, listener
        self.tasks: dict[str, Task] = {t.name: t for t in ctx.workflow.tasks}
        self.edges = dag.edges(ctx.workflow)
        self.order = [t.name for t in ctx.workflow.tasks]
        self.results: dict[str, TaskResult] = {}
        self.attempts: dict[str, int] = {}
        self.blocked: set[str] = set()
        self.masker = Masker(ctx.secrets.values())
        # Containers are removed beside the next task, not before it starts; drained at the end.
        self.cleanups = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cleanup")  # for the engine's own lines; the runner masks the task's  # skipped because something they need did not succeed

    def go(self) -> Outcome:
        try:
            return self._go()
        finally:
            self.cleanups.shutdown(wait=True)

    def _defer(self, cleanup: Callable[[], None], sink: _LogSink) -> None:
        def run() -> None:
            cleanup()
            sink.flush()  # a note from the cleanup itself

        self.cleanups.submit(run)

    def _go(self) -> Outcome:
        store, run_id = self.e.store, self.ctx.run_id
        store.set_run_state(run_id, "running", started=True)
        for name in self.order:
            reason = when_skip_reason(self.tasks[name].when, self.ctx)
            if reason is not None:
                self._finish(name, TaskResult(Outcome.SKIPPED, error=f"skipped: {reason}"))
        running: dict[Future[TaskResult], str] = {}
        waiting_retry: dict[str, float] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.e.parallel), thread_name_prefix="task") as pool:
            while True:
                if self.cancel.is_set():
                    for name in self.order:
                        if name not in self.results and name not in running.values():
                            self._finish(name, TaskResult(Outcome.CANCELED, error="canceled before it started"))
                    waiting_retry.clear()
                now = time.monotonic()
                for name in self._ready(running, waiting_retry, now):
                    if len(running) >= self.e.parallel:
                        break
                    waiting_retry.pop(name, None)
                    self.attempts[name] = self.attempts.get(name, 0) + 1
                    running[pool.submit(self._run_task, name, self.attempts[name])] = name
                if not running and not waiting_retry and len(self.results) == len(self.order):
                    break
                if not running and waiting_retry:
                    time.sleep(max(0.0, min(waiting_retry.values()) - time.monotonic()))
                    continue
                if not running:  # nothing ready, nothing running: a dependency cannot be met
                    for name in self.order:
                        if name not in self.results:
                            self._finish(name, TaskResult(Outcome.SKIPPED, error="skipped: its dependencies cannot run"))
                    continue
                done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    result = future.result()
                    if self._should_retry(name, result):
                        self.listener.task_finished(name, result, True)
                        delay = self.e.retry_delay_s if result.outcome is Outcome.ERRORED else 0.0
                        waiting_retry[name] = time.monotonic() + delay
                        store.update_task(run_id, name, state="pending", error=result.error)
                    else:
                        self._finish(name, result)
        verdict = run_state([r.outcome for r in self.results.values()])
        store.set_run_state(run_id, verdict.value, finished=True)
        return verdict

    def _ready(self, running: dict[Future[TaskResult], str], retry: dict[str, float], now: float) -> list[str]:
        busy = set(running.values())
        ready: list[str] = []
        for name in self.order:
            if name in self.results or name in busy:
                continue
            if name in retry:
                if retry[name] <= now and not self.cancel.is_set():
                    ready.append(name)
                continue
            needs = self.edges.get(name, ())
            if any(n not in self.results for n in needs):
                continue
            failed = [n for n in needs if self.results[n].outcome in FAILING or n in self.blocked]
            if failed:
                first = failed[0]
                what = "was skipped" if first in self.blocked else self.results[first].outcome.value.replace("_", " ")
                self.blocked.add(name)  # its own dependants are skipped in turn; a `when` skip is not
                # in list order the user wrote no `needs`: name the order instead
                link = "needs" if self.ctx.workflow.uses_needs else "runs after"
                self._finish(name, TaskResult(Outcome.SKIPPED, error=f"skipped: {link} '{first}', which {what}"))
                continue
            if not self.cancel.is_set():
                ready.append(name)
        return ready

    def _should_retry(self, name: str, result: TaskResult) -> bool:
        attempt = self.attempts[name]
        declared = self.tasks[name].retries
        if self.cancel.is_set():
            return False
        if result.outcome is Outcome.ERRORED:
            return attempt <= max(declared, AUTO_RETRIES_ERRORED)
        if result.outcome in (Outcome.FAILED, Outcome.TIMED_OUT):
            return attempt <= declared
        return False

    def _ancestors(self, name: str) -> tuple[str, ...]:
        seen: list[str] = []
        stack = list(self.edges.get(name, ()))
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.append(n)
                stack.extend(self.edges.get(n, ()))
        return tuple(n for n in self.order if n in seen)

    def _run_task(self, name: str, attempt: int) -> TaskResult:
        store, run_id = self.e.store, self.ctx.run_id
        started = time.time()
        store.update_task(run_id, name, state="running", attempt=attempt, started_at=started,
                          finished_at=None, exit_code=None, error=None)
        self.listener.task_started(name, attempt)
        sink = _LogSink(store, run_id, name, self.listener)
        try:
            try:
                spec = render_task(self.tasks[name], self.ctx, self.results, self._ancestors(name), attempt=attempt)
            except RenderError as exc:
                message = self.masker.mask(str(exc))
                sink(f"error: {message}")
                return TaskResult(Outcome.FAILED, started_at=started, finished_at=time.time(), error=message)
            return execute(
                spec, self.e.backend, work_root=self.e.work_root, workspaces=self.e.workspaces,
                on_log=sink, cancel=self.cancel, defer=lambda fn: self._defer(fn, sink),
            )
        except Exception as exc:  # a bug or an infrastructure failure: the run goes on
            message = self.masker.mask(f"internal error: {type(exc).__name__}: {exc}")
            sink(message)
            return TaskResult(Outcome.ERRORED, started_at=started, finished_at=time.time(), error=message)
        finally:
            sink.flush()

    def _finish(self, name: str, result: TaskResult) -> None:
        self.results[name] = result
        self.e.store.update_task(
            self.ctx.run_id, name, state=result.outcome.value, exit_code=result.exit_code,
            error=result.error, output=result.output, outputs=dict(result.outputs) or None,
            artifacts_dir=result.artifacts_dir, started_at=result.started_at, finished_at=result.finished_at,
        )
        self.listener.task_finished(name, result, False)

