"""Re-running a run: the whole run, or only what failed, as a new run of the same commit.

The new run is made from what the old one recorded (the workflow text read from the commit, the
git context, the trigger and inputs), so it runs exactly the same workflow, whatever happened to
the branch since. With `failed_only`, the tasks that failed, errored, timed out or were canceled
run again, with every task that depends on them; the others are copied over as they ended (state,
outputs, logs), so the tasks that run again read the same outputs as the first time.
"""

from __future__ import annotations

import sqlalchemy as sa

from controller.engine import FAILING, FINAL_TASK, RunSpec, Scheduler
from controller.store import tables
from controller.store.repos import Conflict
from controller.store.runs import RunRow
from controller.workflow import dag
from controller.workflow.compile import GitInfo
from controller.workflow.lint import lint_text
from controller.workflow.select import select_tasks
from runner.spec import Workspace

FAILING_STATES = frozenset(o.value for o in FAILING)
COPIED = ("state", "attempt", "exit_code", "error", "output", "outputs", "artifacts_dir", "started_at", "finished_at")


def rerun(scheduler: Scheduler, run_id: int, *, failed_only: bool, by: str) -> int:
    """Make and start the new run; return its id. NotFound for an unknown run, Conflict for a run
    that cannot be re-run (still open, a working-tree run, or nothing failed)."""
    store = scheduler.store
    old = store.get_run(run_id)
    if old.state not in FINAL_TASK:
        raise Conflict(f"run {run_id} is {old.state}: cancel it or wait for it to end before re-running it")
    spec = _spec(old, by=by, failed_only=failed_only)
    tasks = {t.name: t for t in store.list_tasks(run_id)}
    again = set(tasks)
    if failed_only:
        edges = dag.edges(spec.workflow)
        failed = {name for name, t in tasks.items() if t.state in FAILING_STATES}
        if not failed:
            raise Conflict(f"run {run_id} has no failed, errored, timed-out or canceled task to re-run")
        again = _with_dependants(failed, edges)
    new_id = scheduler.create_run(spec)
    assert new_id is not None  # no dedupe key: never a duplicate
    keep = [name for name in tasks if name not in again]
    for name in keep:
        store.update_task(new_id, name, **{c: getattr(tasks[name], c) for c in COPIED})
    with store.engine.begin() as conn:
        conn.execute(tables.runs.update().where(tables.runs.c.id == new_id).values(rerun_of=run_id))
        if keep:
            logs = tables.logs
            conn.execute(logs.insert().from_select(
                ["run_id", "task", "seq", "ts", "line"],
                sa.select(sa.literal(new_id), logs.c.task, logs.c.seq, logs.c.ts, logs.c.line)
                .where(logs.c.run_id == run_id, logs.c.task.in_(keep)),
            ))
    scheduler.start(new_id)
    return new_id


def _with_dependants(names: set[str], edges: dag.Edges) -> set[str]:
    out = set(names)
    grew = True
    while grew:
        grew = False
        for task, needs in edges.items():
            if task not in out and out.intersection(needs):
                out.add(task)
                grew = True
    return out


def _spec(old: RunRow, *, by: str, failed_only: bool) -> RunSpec:
    ctx = old.context
    if old.workflow_text is None or not isinstance(ctx, dict):
        raise Conflict(f"run {old.id} failed before any task ran ({old.message or 'no workflow recorded'}): "
                       "push a fix instead of re-running it")
    if old.dirty or ctx.get("workspace", {}).get("dirty_path"):
        raise Conflict(f"run {old.id} ran a working tree (--dirty), not a commit: it cannot be re-run")
    wf, diagnostics = lint_text(old.workflow_text, old.workflow_file)
    if wf is None:
        raise Conflict(f"run {old.id}'s workflow no longer loads: "
                       + "; ".join(d.format() for d in diagnostics if d.severity == "error"))
    selected = tuple(ctx["selected"]) if ctx.get("selected") else None
    if selected:
        wf = select_tasks(wf, selected)
    trigger = {**(old.trigger if isinstance(old.trigger, dict) else {}),
               "rerun_of": old.id, "rerun_by": by, "failed_only": failed_only}
    return RunSpec(
        workflow=wf, workflow_text=old.workflow_text, workspace=Workspace(**ctx["workspace"]),
        git=GitInfo(**ctx["git"]), event=old.event, repo=old.repo, blob_sha=old.blob_sha, trigger=trigger,
        inputs=dict(ctx.get("inputs") or {}),
        changed_files=tuple(ctx["changed_files"]) if ctx.get("changed_files") is not None else None,
        selected=selected, repo_id=old.repo_id, no_secrets=bool(ctx.get("no_secrets")),
        grants={k: frozenset(v) for k, v in (ctx.get("grants") or {}).items()}, storage_root=ctx.get("storage_root"),
        files=tuple(ctx.get("files") or ()),
        workflow_source=ctx.get("workflow_source"),  # a sub-run's own file: what its sub-workflows are next to
    )

