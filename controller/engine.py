"""The run scheduler: a run's DAG, driven by the database.

Nothing about a run lives only in memory. When a run starts, `when` conditions are settled; then
each time something happens (a run starts, a task ends, a lease expires, a user cancels) the
scheduler `advance`s the run: every pending task whose upstream has finished is rendered into a
`TaskSpec` (expressions resolved against the stored outputs) and enqueued, or skipped when
something it needs did not succeed. Runners lease from the queue (`controller.store.queue`)
through `runner.protocol.Peer`; `controller.peer.InProcessPeer` calls back into `leased`,
`logged` and `finished` here. A controller killed mid-run resumes from the tables (`resume`).

Retries: only an ERRORED task (infrastructure) is retried without being asked to; a FAILED or
TIMED_OUT one only when the task declares `retries`.

Composition (controller.workflow.compose): a ready task of `type: workflow` is not enqueued; the
scheduler reads the workflow it names (through `sources_for(run)`), checks its inputs and makes
a sub-run (`runs.parent_run`/`parent_task`), then starts it. The task is `running` while the
sub-run runs and ends with its result when the sub-run ends (`_sub_run_over`), its outputs the
sub-run's declared `outputs`; `wait: false` ends it once the sub-run is made. Cancelling a run
cancels the sub-runs of its running tasks. Everything is in the database: `advance` settles a
running `workflow` task whose sub-run is over (or was never made: a restart in between), so a
restarted controller finishes the parent. A run's `outputs:` are evaluated when it succeeds.
No run's lock is held while another's is taken: sub-runs are started and cancelled, and a parent
told that its sub-run ended, once the run's lock is let go.
"""

from __future__ import annotations

import dataclasses
import threading

import sqlalchemy as sa
import structlog
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from controller.store.queue import Item, Queue
from controller.store.runs import NotFound, RunRow, Store, TaskRow
from controller.workflow import compose, dag
from controller.workflow.compile import (GitInfo, RenderError, RunContext, render_inputs, render_outputs, render_task,
                                         when_skip_reason)
from controller.workflow.lint import lint_text
from controller.workflow.model import Task, Workflow
from controller.workflow.select import select_tasks
from controller.workflow.sources import Loaded, Sources
from runner.masking import Masker
from runner.protocol import LogLine
from runner.spec import Outcome, TaskResult, Workspace

log = structlog.get_logger("clarity.scheduler")

AUTO_RETRIES_ERRORED = 1
FAILING = (Outcome.FAILED, Outcome.TIMED_OUT, Outcome.ERRORED, Outcome.CANCELED)
FINAL_TASK = {o.value for o in Outcome}
OPEN_RUN = ("queued", "running", "canceling")


class Listener(Protocol):
    """Who watches a run as it happens (the terminal; later the API's event stream)."""

    def task_started(self, task: str, attempt: int) -> None: ...
    def task_log(self, task: str, line: str) -> None: ...
    def task_finished(self, task: str, result: TaskResult, will_retry: bool) -> None: ...


SecretSource = Callable[[RunRow], Mapping[str, str]]
SourcesFor = Callable[[RunRow], Sources]  # how the sub-workflows of a run's `workflow` tasks are read


def run_state(outcomes: Sequence[Outcome]) -> Outcome:
    """One verdict for a run from its tasks' outcomes."""
    for worst in (Outcome.CANCELED, Outcome.FAILED, Outcome.TIMED_OUT, Outcome.ERRORED):
        if worst in outcomes:
            return Outcome.FAILED if worst is Outcome.TIMED_OUT else worst
    return Outcome.SUCCEEDED


def row_result(row: TaskRow) -> TaskResult:
    return TaskResult(
        outcome=Outcome(row.state), exit_code=row.exit_code, started_at=row.started_at,
        finished_at=row.finished_at, output=row.output, outputs=row.outputs or {},
        artifacts_dir=row.artifacts_dir, error=row.error,
    )


@dataclass(frozen=True)
class RunSpec:
    """What a run is made from: the workflow (as loaded) and where and why it runs."""

    workflow: Workflow
    workflow_text: str
    workspace: Workspace
    git: GitInfo
    event: str
    repo: str
    blob_sha: str | None = None
    dirty: bool = False
    trigger: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    inputs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    changed_files: tuple[str, ...] | None = None
    selected: tuple[str, ...] | None = None  # --task: the workflow is cut down to these
    owner: str | None = None
    repo_id: int | None = None
    dedupe_key: str | None = None
    no_secrets: bool = False  # a pull request from a fork: its code never sees a secret
    grants: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)  # plugin -> permissions
    storage_root: str | None = None
    parent_run: int | None = None  # a sub-run: the run and `type: workflow` task that made it
    parent_task: str | None = None
    workflow_source: Mapping[str, Any] | None = None  # a sub-run: its file as read (Loaded.record)
    files: tuple[Mapping[str, Any], ...] = ()  # every file that went into the workflow (Loaded.record): it, its bases

    def plugins(self) -> dict[str, str]:
        """Task -> `plugin version`, for the tasks of plugin types (recorded on the run)."""
        from controller.plugins.compile import label

        return {t.name: found for t in self.workflow.tasks if (found := label(t)) is not None}

    def context_json(self) -> dict[str, Any]:
        return {
            "plugins": self.plugins(),
            "grants": {k: sorted(v) for k, v in self.grants.items()},
            "storage_root": self.storage_root,
            "workspace": dataclasses.asdict(self.workspace), "git": dataclasses.asdict(self.git),
            "trigger": dict(self.trigger), "inputs": dict(self.inputs),
            "changed_files": list(self.changed_files) if self.changed_files is not None else None,
            "selected": list(self.selected) if self.selected is not None else None,
            "no_secrets": self.no_secrets, "files": [dict(f) for f in self.files],
            **({"workflow_source": dict(self.workflow_source)} if self.workflow_source is not None else {}),
        }


@dataclass
class _Loaded:
    ctx: RunContext
    tasks: dict[str, Task]
    order: list[str]
    edges: dict[str, tuple[str, ...]]
    masker: Masker


class RunLoadError(Exception):
    pass


@dataclass
class _Step:
    """What one `advance` leaves to do once the run's lock is let go."""

    enqueued: int = 0
    to_start: list[int] = dataclasses.field(default_factory=list)  # sub-runs made
    to_cancel: list[int] = dataclasses.field(default_factory=list)  # sub-runs of a run being canceled
    over: bool = False


@dataclass
class _SubListener:
    """A sub-run's events, shown by its parent's listener as `TASK/SUBTASK`."""

    parent: Listener
    prefix: str

    def task_started(self, task: str, attempt: int) -> None:
        self.parent.task_started(self.prefix + task, attempt)

    def task_log(self, task: str, line: str) -> None:
        self.parent.task_log(self.prefix + task, line)

    def task_finished(self, task: str, result: TaskResult, will_retry: bool) -> None:
        self.parent.task_finished(self.prefix + task, result, will_retry)


def sub_depth(trigger: Any) -> int:
    """How deep a run is in sub-runs (its `trigger` JSON): 0 for a run not made by a workflow task."""
    depth = trigger.get("depth") if isinstance(trigger, Mapping) and trigger.get("by") == "workflow" else None
    return depth if isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0 else 0


class Scheduler:
    def __init__(self, store: Store, queue: Queue, secrets: SecretSource | None = None,
                 can_take: Callable[[tuple[str, ...]], bool] | None = None,
                 sources_for: SourcesFor | None = None) -> None:
        self.store, self.queue = store, queue
        self.secrets = secrets or (lambda run: {})
        # How a run reads the workflows its `type: workflow` tasks name; None: it cannot (such a
        # task fails, saying so).
        self.sources_for = sources_for
        # Whether some enabled runner has all these labels (the runner registry's answer); None:
        # not known, no note is written.
        self.can_take = can_take
        self._loaded: dict[int, _Loaded] = {}
        self._locks: dict[int, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._listeners: dict[int, Listener] = {}
        self._changed = threading.Condition()
        # Called with a run's id when it is created, starts, and ends (reporting to the forge);
        # each must return quickly and never raise.
        self.on_state: list[Callable[[int], None]] = []

    # -- runs ------------------------------------------------------------------------------

    def create_run(self, spec: RunSpec) -> int | None:
        """The new run's id; None when a run with the same dedupe key exists (made concurrently)."""
        wf = spec.workflow
        plugins = spec.plugins()
        try:
            run_id = self.store.create_run(
                repo=spec.repo, workflow=wf.name, workflow_file=wf.file, blob_sha=spec.blob_sha,
                commit_sha=spec.git.sha or None, ref=spec.git.ref or None, event=spec.event, dirty=spec.dirty,
                trigger=dict(spec.trigger), owner=spec.owner,
                tasks=[(t.name, t.image or plugins.get(t.name) or (f"workflow {t.workflow.shown()}" if t.workflow else None))
                       for t in wf.tasks],
                context=spec.context_json(), workflow_text=spec.workflow_text, repo_id=spec.repo_id,
                dedupe_key=spec.dedupe_key, parent_run=spec.parent_run, parent_task=spec.parent_task,
            )
        except sa.exc.IntegrityError:
            if spec.dedupe_key is None:
                raise
            return None
        self.state_changed(run_id)
        return run_id

    def state_changed(self, run_id: int) -> None:
        """Tell `on_state` that the run was created, started or ended."""
        for hook in self.on_state:
            try:
                hook(run_id)
            except Exception:
                log.exception("run state hook failed", run=run_id)

    def watch(self, run_id: int, listener: Listener) -> None:
        self._listeners[run_id] = listener

    def start(self, run_id: int) -> None:
        """Settle `when` conditions, then enqueue what can run."""
        with self._lock(run_id):
            run = self.store.get_run(run_id)
            if run.state != "queued":
                return
            loaded = self._load_or_fail(run_id)
            if loaded is not None:
                self.store.set_run_state(run_id, "running", started=True)
                log.info("run started", run=run_id, repo=run.repo, workflow=run.workflow_file, sha=run.commit_sha)
                self.state_changed(run_id)
                for name in loaded.order:
                    reason = when_skip_reason(loaded.tasks[name].when, loaded.ctx)
                    if reason is not None:
                        self._finish_task(run_id, name, TaskResult(Outcome.SKIPPED, error=f"skipped: {reason}"))
        if loaded is None:  # errored: its parent's task ends
            self._sub_run_over(run_id)
            return
        self.advance(run_id)

    def cancel(self, run_id: int) -> None:
        with self._lock(run_id):
            run = self.store.get_run(run_id)
            if run.state not in OPEN_RUN:
                return
            with self.store.engine.begin() as conn:
                self.queue.cancel_run(conn, run_id)
            self.store.set_run_state(run_id, "canceling")
            for row in self.store.list_tasks(run_id):
                if row.state in ("pending", "queued"):
                    self._finish_task(run_id, row.name, TaskResult(Outcome.CANCELED, error="canceled before it started"))
        self.advance(run_id)

    def wait(self, run_id: int, cancel: threading.Event | None = None, timeout_s: float | None = None) -> str:
        """Block until the run is over (canceling it once `cancel` is set); return its state."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        asked = False
        while True:
            if cancel is not None and cancel.is_set() and not asked:
                asked = True
                self.cancel(run_id)
            with self._changed:  # checked under the condition: a change cannot slip past unseen
                state = self.store.get_run(run_id).state
                if state not in OPEN_RUN:
                    return state
                if deadline is not None and time.monotonic() > deadline:
                    return state
                self._changed.wait(0.2)

    def resume(self) -> list[int]:
        """After a restart: renew the leases of remote runners (they could not heartbeat while the
        controller was away; a dead runner's lease still runs out `lease_s` later and is reaped
        then), take back expired ones (a built-in runner died with its controller), then move
        every open run on."""
        self.queue.renew_all(except_prefix="builtin-")
        self.reap()
        with self.store.engine.connect() as conn:
            from controller.store import tables

            ids = [r.id for r in conn.execute(
                tables.runs.select().where(tables.runs.c.state.in_(OPEN_RUN)).order_by(tables.runs.c.id))]
        for run_id in ids:
            if self.store.get_run(run_id).state == "queued":
                self.start(run_id)
            else:
                self.advance(run_id)
        return ids

    def reap(self) -> int:
        expired = self.queue.reap()
        for item in expired:
            log.warning("lease expired", run=item.run_id, task=item.task, runner=item.lease_owner)
            self.finished(item, TaskResult(Outcome.ERRORED, started_at=item.leased_at, finished_at=time.time(),
                                           error=f"runner '{item.lease_owner}' stopped answering (its lease expired)"))
        return len(expired)

    # -- the runner side (called by the peer) ------------------------------------------------

    def leased(self, item: Item) -> None:
        self.store.update_task(item.run_id, item.task, state="running", attempt=item.attempt,
                               started_at=time.time(), finished_at=None, exit_code=None, error=None)
        listener = self._listeners.get(item.run_id)
        if listener is not None:
            listener.task_started(item.task, item.attempt)

    def _run_masker(self, run_id: int) -> Masker | None:
        """Every secret of the run: the runner masked a task's lines with that task's own secrets,
        and here they are masked with all of them (a value that reached the task another way, an
        upstream output) before they are stored or shown."""
        loaded = self._loaded.get(run_id)  # the usual case: no lock taken on the log path
        if loaded is None:
            try:
                with self._lock(run_id):
                    loaded = self._load(run_id)
            except RunLoadError:
                return None
        return loaded.masker if loaded.masker else None

    def logged(self, item: Item, lines: Sequence[LogLine]) -> None:
        masker = self._run_masker(item.run_id)
        texts = [masker.mask(l.line) if masker is not None else l.line for l in lines]
        self.store.put_logs(item.run_id, item.task, [(item.log_offset + l.seq, l.ts, text) for l, text in zip(lines, texts)])
        listener = self._listeners.get(item.run_id)
        if listener is not None:
            for text in texts:
                listener.task_log(item.task, text)

    def finished(self, item: Item, result: TaskResult) -> None:
        run_id = item.run_id
        with self._lock(run_id):
            try:
                loaded = self._load(run_id)
            except RunLoadError:
                return
            if loaded.masker:  # see _run_masker
                result = dataclasses.replace(result, error=loaded.masker.mask(result.error) if result.error else result.error,
                                 output=loaded.masker.mask_value(result.output),
                                 outputs={k: loaded.masker.mask(v) for k, v in result.outputs.items()})
            task = loaded.tasks.get(item.task)
            canceling = self.store.get_run(run_id).state == "canceling"
            log.info("task finished", run=run_id, task=item.task, attempt=item.attempt, outcome=result.outcome.value,
                     runner=item.lease_owner, error=result.error)
            if task is not None and not canceling and self._should_retry(task, result, item.attempt):
                self.store.update_task(run_id, item.task, state="pending", error=result.error,
                                       exit_code=result.exit_code)
                listener = self._listeners.get(run_id)
                if listener is not None:
                    listener.task_finished(item.task, result, True)
            else:
                self._finish_task(run_id, item.task, result)
        self.advance(run_id)

    # -- the DAG ---------------------------------------------------------------------------

    def advance(self, run_id: int) -> None:
        """Skip what cannot run, enqueue what can (or make the sub-run of a `workflow` task), and
        close the run when every task is done."""
        step = _Step()
        with self._lock(run_id):
            run = self.store.get_run(run_id)
            if run.state not in ("running", "canceling"):
                return
            loaded = self._load_or_fail(run_id)
            if loaded is not None:
                self._advance(run, loaded, step)
        if loaded is None:  # errored: its parent's task ends
            self._sub_run_over(run_id)
            return
        if step.enqueued:
            self.queue.notify(step.enqueued)
        with self._changed:
            self._changed.notify_all()
        for sub in step.to_cancel:
            self.cancel(sub)
        for sub in step.to_start:
            self.start(sub)
        if step.over:
            self._sub_run_over(run_id)

    def _advance(self, run: RunRow, loaded: _Loaded, step: _Step) -> None:
        """advance's work, under the run's lock."""
        run_id = run.id
        rows = {r.name: r for r in self.store.list_tasks(run_id)}
        for name, row in list(rows.items()):
            task = loaded.tasks.get(name)
            if row.state == "running" and task is not None and task.type == "workflow":
                self._check_sub_run(loaded, run, row, step)
                rows[name] = self.store.task(run_id, name)
        blocked = self._blocked(loaded, rows)
        progress = True
        while progress:
            progress = False
            for name in loaded.order:
                row = rows[name]
                if row.state != "pending":
                    continue
                needs = loaded.edges.get(name, ())
                if any(rows[n].state not in FINAL_TASK for n in needs):
                    continue
                failed = [n for n in needs if Outcome(rows[n].state) in FAILING or n in blocked]
                if failed or run.state == "canceling":
                    result = self._skip_result(loaded, failed, rows, blocked) if failed else \
                        TaskResult(Outcome.CANCELED, error="canceled before it started")
                    blocked.add(name)
                    self._finish_task(run_id, name, result)
                    rows[name] = self.store.task(run_id, name)
                elif loaded.tasks[name].type == "workflow":
                    self._start_sub_run(loaded, run, rows, name, row.attempt + 1, step)
                    rows[name] = self.store.task(run_id, name)
                elif self._enqueue(loaded, rows, name, row.attempt + 1):
                    step.enqueued += 1
                    rows[name] = dataclasses.replace(row, state="queued", attempt=row.attempt + 1)
                else:
                    rows[name] = self.store.task(run_id, name)
                progress = True
        if all(r.state in FINAL_TASK for r in rows.values()):
            verdict = run_state([Outcome(r.state) for r in rows.values()])
            outputs, message = None, None
            wf = loaded.ctx.workflow
            if verdict is Outcome.SUCCEEDED and wf.outputs and not (run.context or {}).get("selected"):
                try:
                    outputs = {k: loaded.masker.mask(v) for k, v in
                               render_outputs(loaded.ctx, {n: row_result(r) for n, r in rows.items()}).items()}
                except RenderError as exc:  # the run did its work but cannot say what it made
                    verdict, message = Outcome.FAILED, loaded.masker.mask(str(exc))
            self.store.set_run_state(run_id, verdict.value, finished=True, outputs=outputs, message=message)
            log.info("run finished", run=run_id, repo=run.repo, workflow=run.workflow_file, state=verdict.value)
            self._loaded.pop(run_id, None)
            self.state_changed(run_id)
            step.over = True

    # -- sub-runs (`type: workflow` tasks) ---------------------------------------------------

    def _start_sub_run(self, loaded: _Loaded, run: RunRow, rows: dict[str, TaskRow], name: str, attempt: int,
                       step: _Step) -> None:
        """The task is ready: mark it running, then make its sub-run (or fail it, saying why)."""
        from controller.store import tables

        with self.store.engine.begin() as conn:
            moved = conn.execute(
                tables.tasks.update()
                .where(tables.tasks.c.run_id == run.id, tables.tasks.c.name == name, tables.tasks.c.state == "pending")
                .values(state="running", attempt=attempt, started_at=time.time(), finished_at=None, exit_code=None,
                        error=None)
            ).rowcount
        if moved != 1:  # another scheduler got there first
            return
        listener = self._listeners.get(run.id)
        if listener is not None:
            listener.task_started(name, attempt)
        results = {n: row_result(r) for n, r in rows.items() if r.state in FINAL_TASK}
        self._make_sub_run(loaded, run, self.store.task(run.id, name), results, step)

    def _make_sub_run(self, loaded: _Loaded, run: RunRow, row: TaskRow, results: Mapping[str, TaskResult],
                      step: _Step) -> None:
        task = loaded.tasks[row.name]
        try:
            sub_id, prepared = self._create_sub_run(loaded, run, task, row.attempt, results)
        except compose.ComposeError as exc:
            self._fail_task(loaded, run.id, row, str(exc))
            return
        except Exception as exc:  # a source that broke: the task fails, the scheduler goes on
            log.exception("sub-run not made", run=run.id, task=row.name)
            self._fail_task(loaded, run.id, row, f"the sub-run could not be made: {exc}")
            return
        note = f"[clarity] sub-run {sub_id}: {prepared.workflow.name} ({prepared.loaded.file})"
        self.store.append_logs(run.id, row.name, [(time.time(), note)])
        listener = self._listeners.get(run.id)
        if listener is not None:
            listener.task_log(row.name, note)
            self.watch(sub_id, _SubListener(listener, f"{row.name}/"))
        step.to_start.append(sub_id)
        if not task.wait:  # it runs on its own: the task is done once it exists
            self._finish_task(run.id, row.name, TaskResult(
                Outcome.SUCCEEDED, started_at=row.started_at, finished_at=time.time(), output={"run": sub_id},
                outputs={"run": str(sub_id)}))

    def _create_sub_run(self, loaded: _Loaded, run: RunRow, task: Task, attempt: int,
                        results: Mapping[str, TaskResult]) -> tuple[int, compose.Prepared]:
        depth = sub_depth(run.trigger) + 1
        if depth > compose.MAX_DEPTH:
            raise compose.ComposeError(
                f"not started: sub-runs nest deeper than {compose.MAX_DEPTH} "
                f"({' -> '.join(self._chain(run))} -> {task.workflow.shown() if task.workflow else '?'})")
        if self.sources_for is None:
            raise compose.ComposeError("this scheduler cannot read other workflow files, so it cannot run a "
                                       "`type: workflow` task")
        try:
            given = render_inputs(task, loaded.ctx, results)
        except RenderError as exc:
            raise compose.ComposeError(str(exc)) from None
        context = run.context if isinstance(run.context, dict) else {}
        relative_to: Loaded | None = compose.loaded_from(context.get("workflow_source"), run.workflow_text or "")
        prepared = compose.prepare(task, self.sources_for(run), relative_to, given)
        dedupe = f"workflow:{run.id}:{task.name}:{attempt}"
        ctx = loaded.ctx
        sub_id = self.create_run(RunSpec(
            workflow=prepared.workflow, workflow_text=prepared.text, workspace=ctx.workspace, git=ctx.git,
            event=run.event, repo=run.repo, blob_sha=prepared.loaded.blob, dirty=run.dirty,
            trigger={"by": "workflow", "parent_run": run.id, "parent_task": task.name, "depth": depth,
                     "inputs": prepared.inputs},
            inputs=prepared.inputs, changed_files=ctx.changed_files, owner=run.owner, repo_id=run.repo_id,
            dedupe_key=dedupe, no_secrets=bool(context.get("no_secrets")), grants=ctx.grants,
            storage_root=ctx.storage_root, parent_run=run.id, parent_task=task.name,
            workflow_source=prepared.loaded.record(), files=compose.files_of(prepared.workflow, prepared.loaded),
        ))
        if sub_id is None:  # made already (by another scheduler, or before a restart)
            existing = self.store.run_by_dedupe(dedupe)
            assert existing is not None
            sub_id = existing.id
        log.info("sub-run made", run=sub_id, parent=run.id, task=task.name, workflow=prepared.loaded.file)
        return sub_id, prepared

    def _chain(self, run: RunRow) -> list[str]:
        """The workflow files from the outermost run down to `run`."""
        chain, current = [run.workflow_file], run
        for _ in range(compose.MAX_DEPTH + 2):
            if current.parent_run is None:
                break
            try:
                current = self.store.get_run(current.parent_run)
            except NotFound:
                break
            chain.insert(0, current.workflow_file)
        return chain

    def _check_sub_run(self, loaded: _Loaded, run: RunRow, row: TaskRow, step: _Step) -> None:
        """A running `workflow` task: settle it when its sub-run is over, cancel the sub-run when
        the run is being canceled, make it when it was never made (a restart in between)."""
        subs = self.store.sub_runs(run.id, row.name)
        if not subs:
            if run.state == "canceling":
                self._finish_task(run.id, row.name, TaskResult(Outcome.CANCELED, error="canceled before its sub-run started"))
            else:
                results = {r.name: row_result(r) for r in self.store.list_tasks(run.id) if r.state in FINAL_TASK}
                self._make_sub_run(loaded, run, row, results, step)
            return
        sub = subs[-1]
        if sub.state in OPEN_RUN:
            if run.state == "canceling":
                step.to_cancel.append(sub.id)
            elif sub.state == "queued":
                step.to_start.append(sub.id)
            return
        self._settle(run, row, sub)

    def _sub_run_over(self, sub_id: int) -> None:
        """A run is over: when it is a sub-run, its parent's task ends with it."""
        sub = self.store.get_run(sub_id)
        if sub.parent_run is None or sub.parent_task is None:
            return
        with self._lock(sub.parent_run):
            try:
                parent = self.store.get_run(sub.parent_run)
                row = self.store.task(parent.id, sub.parent_task)
            except NotFound:
                return
            if row.state != "running":  # wait: false, or settled already
                return
            subs = self.store.sub_runs(parent.id, row.name)
            if not subs or subs[-1].id != sub.id:
                return
            self._settle(parent, row, sub)
        self.advance(parent.id)

    def _settle(self, run: RunRow, row: TaskRow, sub: RunRow) -> None:
        """End a running `workflow` task with the result of its sub-run (which is over)."""
        now = time.time()
        finished = sub.finished_at or now
        if sub.state == Outcome.SUCCEEDED.value:
            outputs = {str(k): str(v) for k, v in (sub.outputs or {}).items()}
            result = TaskResult(Outcome.SUCCEEDED, started_at=row.started_at, finished_at=finished,
                                output={"run": sub.id, "outputs": outputs}, outputs=outputs)
            note = f"[clarity] sub-run {sub.id} succeeded"
        elif sub.state == Outcome.CANCELED.value and run.state == "canceling":
            result = TaskResult(Outcome.CANCELED, started_at=row.started_at, finished_at=finished,
                                error=f"canceled, with its sub-run {sub.id}")
            note = f"[clarity] sub-run {sub.id} canceled"
        else:
            why = self._why(sub)
            error = f"sub-run {sub.id} ({sub.workflow_file}) {sub.state.replace('_', ' ')}" + (f": {why}" if why else "")
            result = TaskResult(Outcome.FAILED, started_at=row.started_at, finished_at=finished, error=error)
            note = f"[clarity] {error}"
        self.store.append_logs(run.id, row.name, [(now, note)])
        self._finish_task(run.id, row.name, result, log_line=note)

    def _why(self, sub: RunRow) -> str:
        """Why a sub-run did not succeed, in a few words."""
        if sub.message:
            return sub.message.splitlines()[0]
        for t in self.store.list_tasks(sub.id):
            if t.state in ("failed", "errored", "timed_out", "canceled"):
                detail = t.error or (f"exit code {t.exit_code}" if t.exit_code not in (None, 0) else "")
                return f"task '{t.name}' {t.state.replace('_', ' ')}" + (f" ({detail})" if detail else "")
        return ""

    def _fail_task(self, loaded: _Loaded, run_id: int, row: TaskRow, message: str) -> None:
        message = loaded.masker.mask(message)
        now = time.time()
        self.store.append_logs(run_id, row.name, [(now, f"error: {message}")])
        self._finish_task(run_id, row.name, TaskResult(Outcome.FAILED, started_at=row.started_at or now,
                                                       finished_at=now, error=message), log_line=f"error: {message}")

    def _skip_result(self, loaded: _Loaded, failed: list[str], rows: dict[str, TaskRow], blocked: set[str]) -> TaskResult:
        first = failed[0]
        what = "was skipped" if first in blocked and rows[first].state == "skipped" else \
            rows[first].state.replace("_", " ")
        link = "needs" if loaded.ctx.workflow.uses_needs else "runs after"  # list order: no `needs` written
        return TaskResult(Outcome.SKIPPED, error=f"skipped: {link} '{first}', which {what}")

    @staticmethod
    def _blocked(loaded: _Loaded, rows: dict[str, TaskRow]) -> set[str]:
        """Skipped tasks that were skipped because something they need did not succeed (their
        own dependants are skipped in turn; a `when` skip lets dependants run)."""
        blocked: set[str] = set()
        for name in dag.topo_order(loaded.edges):
            if rows[name].state == "skipped" and any(
                rows[n].state in {o.value for o in FAILING} or n in blocked for n in loaded.edges.get(name, ())
            ):
                blocked.add(name)
        return blocked

    def _enqueue(self, loaded: _Loaded, rows: dict[str, TaskRow], name: str, attempt: int) -> int:
        """1 when the task was put in the queue, 0 when it failed to render (or another
        scheduler enqueued it first)."""
        run_id = loaded.ctx.run_id
        results = {n: row_result(r) for n, r in rows.items() if r.state in FINAL_TASK}
        try:
            spec = render_task(loaded.tasks[name], loaded.ctx, results, self._ancestors(loaded, name), attempt=attempt)
        except RenderError as exc:
            message = loaded.masker.mask(str(exc))
            self.store.append_logs(run_id, name, [(time.time(), f"error: {message}")])
            now = time.time()
            self._finish_task(run_id, name, TaskResult(Outcome.FAILED, started_at=now, finished_at=now, error=message),
                              log_line=f"error: {message}", attempt=attempt)
            return 0
        from controller.store import tables

        if attempt > 1:  # the attempts' lines follow one another in the log: mark where one starts
            row = rows[name]
            why = loaded.masker.mask(row.error) if row.error else (
                f"exit code {row.exit_code}" if row.exit_code is not None else "")
            note = f"[clarity] attempt {attempt}" + (f" (the previous one: {why})" if why else "")
            self.store.append_logs(run_id, name, [(time.time(), note)])
        labels = loaded.tasks[name].labels
        if labels and self.can_take is not None and not self.can_take(labels):
            # before the queue row: its log_offset must count this line (the runner's lines follow)
            self.store.append_logs(run_id, name, [(time.time(), f"[clarity] waiting: no runner with labels "
                                                                f"{','.join(labels)}")])
        with self.store.engine.begin() as conn:
            moved = conn.execute(
                tables.tasks.update()
                .where(tables.tasks.c.run_id == run_id, tables.tasks.c.name == name, tables.tasks.c.state == "pending")
                .values(state="queued", attempt=attempt)
            ).rowcount
            if moved == 1:  # another scheduler did not get there first
                self.queue.enqueue(conn, run_id=run_id, task=name, attempt=attempt, spec=spec, labels=labels,
                                   log_offset=self.store.max_seq(conn, run_id, name))
        return moved

    @staticmethod
    def _ancestors(loaded: _Loaded, name: str) -> tuple[str, ...]:
        seen: set[str] = set()
        stack = list(loaded.edges.get(name, ()))
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(loaded.edges.get(n, ()))
        return tuple(n for n in loaded.order if n in seen)

    @staticmethod
    def _should_retry(task: Task, result: TaskResult, attempt: int) -> bool:
        if result.outcome is Outcome.ERRORED:  # infrastructure: once more anyway, unless it cannot help
            return result.retryable and attempt <= max(task.retries, AUTO_RETRIES_ERRORED)
        if result.outcome in (Outcome.FAILED, Outcome.TIMED_OUT):
            return attempt <= task.retries
        return False

    # -- state -----------------------------------------------------------------------------

    def _finish_task(self, run_id: int, name: str, result: TaskResult, log_line: str | None = None,
                     attempt: int | None = None) -> None:
        extra = {} if attempt is None else {"attempt": attempt}
        self.store.update_task(
            run_id, name, state=result.outcome.value, exit_code=result.exit_code, error=result.error,
            output=result.output, outputs=dict(result.outputs) or None, artifacts_dir=result.artifacts_dir,
            started_at=result.started_at, finished_at=result.finished_at, **extra,
        )
        listener = self._listeners.get(run_id)
        if listener is not None:
            if log_line is not None:
                listener.task_log(name, log_line)
            listener.task_finished(name, result, False)

    def _fail_run(self, run_id: int, message: str) -> None:
        for row in self.store.list_tasks(run_id):
            if row.state not in FINAL_TASK:
                self.store.update_task(run_id, row.name, state="errored", error=message)
        self.store.set_run_state(run_id, "errored", finished=True)
        self.state_changed(run_id)
        with self._changed:
            self._changed.notify_all()

    def _lock(self, run_id: int) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(run_id, threading.RLock())

    def _load_or_fail(self, run_id: int) -> _Loaded | None:
        """The run, loaded; None (and the run errored, saying why) when it cannot be."""
        try:
            return self._load(run_id)
        except RunLoadError as exc:
            self._fail_run(run_id, str(exc))
            return None

    def _load(self, run_id: int) -> _Loaded:
        if run_id in self._loaded:
            return self._loaded[run_id]
        run = self.store.get_run(run_id)
        if run.workflow_text is None or run.context is None:
            raise RunLoadError(f"run {run_id} was made by an older Clarity and cannot be resumed")
        wf, diagnostics = lint_text(run.workflow_text, run.workflow_file)
        if wf is None:
            raise RunLoadError("; ".join(d.format() for d in diagnostics if d.severity == "error"))
        ctx_json = run.context
        if ctx_json.get("selected"):
            wf = select_tasks(wf, tuple(ctx_json["selected"]))
        secrets = {} if ctx_json.get("no_secrets") else dict(self.secrets(run))
        ctx = RunContext(
            run_id=run_id, workflow=wf, workspace=Workspace(**ctx_json["workspace"]), git=GitInfo(**ctx_json["git"]),
            event=run.event, trigger=ctx_json.get("trigger") or {}, inputs=ctx_json.get("inputs") or {},
            secrets=secrets,
            changed_files=tuple(ctx_json["changed_files"]) if ctx_json.get("changed_files") is not None else None,
            grants={k: frozenset(v) for k, v in (ctx_json.get("grants") or {}).items()},
            storage_root=ctx_json.get("storage_root"),
            secrets_from=run.repo if run.repo_id is not None else None, no_secrets=bool(ctx_json.get("no_secrets")),
        )
        loaded = _Loaded(ctx=ctx, tasks={t.name: t for t in wf.tasks}, order=[t.name for t in wf.tasks],
                         edges=dag.edges(wf), masker=Masker(secrets.values()))
        self._loaded[run_id] = loaded
        return loaded
