"""`/api/v1/runs`: list and show runs, read their logs, cancel and re-run them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.body import query_int
from controller.api.errors import BadRequest
from controller.api.rerun import rerun
from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.engine import OPEN_RUN
from controller.services import Services
from controller.store import tables
from controller.store.repos import Conflict
from controller.store.runs import RunRow, Store, TaskRow

MAX_LIMIT = 200
MAX_LINES = 10_000


def run_json(run: RunRow, tasks: list[TaskRow] | None = None) -> dict[str, Any]:
    ctx = run.context if isinstance(run.context, dict) else {}
    data: dict[str, Any] = {
        "id": run.id, "repo": run.repo, "workflow": run.workflow, "workflow_file": run.workflow_file,
        "state": run.state, "event": run.event, "ref": run.ref, "commit_sha": run.commit_sha,
        "blob_sha": run.blob_sha, "dirty": run.dirty, "trigger": run.trigger, "inputs": ctx.get("inputs") or {},
        "plugins": ctx.get("plugins") or {},  # task -> "plugin version", for tasks of plugin types
        "outputs": run.outputs or {}, "parent_run": run.parent_run, "parent_task": run.parent_task,  # composition
        "files": ctx.get("files") or [],  # the workflow file and its bases (extends), as read: Loaded.record
        "rerun_of": run.rerun_of, "message": run.message, "created_at": run.created_at,
        "started_at": run.started_at, "finished_at": run.finished_at, "duration_s": run.duration_s,
    }
    if tasks is not None:
        data["tasks"] = [task_json(t) for t in tasks]
    return data


def sub_runs_json(store: Any, run_id: int, depth: int = 0) -> list[dict[str, Any]]:
    """The sub-runs of a run's `type: workflow` tasks, with the files that went into each (and
    theirs, nested): with the run's own `files`, every file that went into the run."""
    if depth > 10:
        return []
    found = []
    for sub in store.sub_runs(run_id):
        ctx = sub.context if isinstance(sub.context, dict) else {}
        found.append({"id": sub.id, "task": sub.parent_task, "workflow": sub.workflow, "state": sub.state,
                      "files": ctx.get("files") or [], "sub_runs": sub_runs_json(store, sub.id, depth + 1)})
    return found


def task_json(task: TaskRow) -> dict[str, Any]:
    return {
        "name": task.name, "position": task.position, "state": task.state, "attempt": task.attempt,
        "image": task.image, "exit_code": task.exit_code, "error": task.error, "output": task.output,
        "outputs": task.outputs or {}, "started_at": task.started_at, "finished_at": task.finished_at,
        "duration_s": task.duration_s,
    }


RUN_STATES = ("queued", "running", "canceling", "succeeded", "failed", "errored", "canceled")


def query_runs(store: Store, *, repo: str | None, state: str | None, before: int | None, limit: int) -> list[RunRow]:
    r = tables.runs
    query = sa.select(r).order_by(r.c.id.desc()).limit(limit)
    if repo is not None:
        query = query.where(r.c.repo == repo)
    if state is not None:
        query = query.where(r.c.state == state)
    if before is not None:
        query = query.where(r.c.id < before)
    with store.engine.connect() as conn:
        return [RunRow(**row) for row in conn.execute(query).mappings()]


def list_runs(call: Call) -> Response:
    """Runs, newest first; page with `before` = the last id seen."""
    q = call.request.query_params
    limit = query_int(call.request, "limit", 50, low=1, high=MAX_LIMIT)
    before = query_int(call.request, "before", None, low=1)
    assert limit is not None
    state = q.get("state") or None
    if state is not None and state not in RUN_STATES:
        raise BadRequest(f"query parameter 'state' must be one of {', '.join(RUN_STATES)}, got {state!r}",
                         code="invalid_query")
    runs = query_runs(call.services.store, repo=q.get("repo") or None, state=state, before=before, limit=limit)
    page: dict[str, Any] = {"runs": [run_json(r) for r in runs]}
    page["next_before"] = runs[-1].id if len(runs) == limit else None
    return reply(page)


def get_run(call: Call) -> Response:
    """A run with its tasks, and what was reported to the forge for it."""
    store = call.services.store
    run = store.get_run(call.param("id"))
    data = run_json(run, store.list_tasks(run.id))
    data["reports"] = [row.public() for row in call.services.outbox.for_run(run.id)]
    data["sub_runs"] = sub_runs_json(store, run.id)
    return reply(data)


def get_logs(call: Call) -> Response:
    """Log lines of a run (or of one task, from after a sequence number)."""
    store = call.services.store
    run_id: int = call.param("id")
    store.get_run(run_id)
    task = call.request.query_params.get("task") or None
    after = query_int(call.request, "after", 0, low=0)
    if after and task is None:
        raise BadRequest("query parameter 'after' needs 'task': sequence numbers count per task", code="invalid_query")
    if task is not None:
        store.task(run_id, task)  # NotFound for a task the run does not have
    l, t = tables.logs, tables.tasks
    query = (
        sa.select(l.c.task, l.c.seq, l.c.ts, l.c.line)
        .select_from(l.outerjoin(t, sa.and_(t.c.run_id == l.c.run_id, t.c.name == l.c.task)))
        .where(l.c.run_id == run_id)
        .order_by(t.c.position.asc().nulls_first(), l.c.task, l.c.seq)
        .limit(MAX_LINES)
    )
    if task is not None:
        query = query.where(l.c.task == task, l.c.seq > (after or 0))
    with store.engine.connect() as conn:
        lines = [{"task": r.task, "seq": r.seq, "ts": r.ts, "line": r.line} for r in conn.execute(query)]
    return reply({"run": run_id, "lines": lines, "truncated": len(lines) == MAX_LINES})


def cancel_run(call: Call) -> Response:
    """Cancel an open run: queued tasks end at once, running ones at their next heartbeat."""
    scheduler = call.services.scheduler
    run_id: int = call.param("id")
    run = scheduler.store.get_run(run_id)
    if run.state not in OPEN_RUN:
        raise Conflict(f"run {run_id} is over ({run.state}): nothing to cancel")
    scheduler.cancel(run_id)
    return reply(run_json(scheduler.store.get_run(run_id)), 202)


def rerun_run(call: Call) -> Response:
    """Run a finished run again, on the same commit, as a new run."""
    f = call.fields()
    failed_only = f.boolean("failed_only", False)
    f.done()
    new_id = rerun(call.services.scheduler, call.param("id"), failed_only=failed_only, by=call.by)
    run = call.services.store.get_run(new_id)
    return reply(run_json(run, call.services.store.list_tasks(new_id)), 201,
                 headers={"Location": f"/api/v1/runs/{new_id}"})


def routes(services: Services) -> list[BaseRoute]:
    one = "/api/v1/runs/{id:int}"
    missing = {404: "No such run"}
    return [
        ApiRoute("GET", "/api/v1/runs", list_runs, services, Doc(
            "List runs", tag="runs", query={
                "repo": "only this repository (owner/repo)", "state": "only runs in this state",
                "limit": f"at most this many (1-{MAX_LIMIT}, default 50)", "before": "only runs with a smaller id"})),
        ApiRoute("GET", one, get_run, services, Doc("Show a run and its tasks", tag="runs",
                                                    responses={200: "OK", **missing})),
        ApiRoute("GET", one + "/logs", get_logs, services, Doc(
            "Read a run's logs", tag="runs", query={"task": "only this task", "after": "lines after this seq (with task)"},
            responses={200: "OK", **missing})),
        ApiRoute("POST", one + "/cancel", cancel_run, services, Doc(
            "Cancel a run", tag="runs", responses={202: "Canceling", 409: "The run is over", **missing}),
            reads_body=False),
        ApiRoute("POST", one + "/rerun", rerun_run, services, Doc(
            "Re-run a run", tag="runs", body={
                "type": "object", "additionalProperties": False,
                "properties": {"failed_only": {"type": "boolean", "default": False, "description":
                                               "only the failed/errored/timed-out/canceled tasks and their dependants"}}},
            responses={201: "The new run", 409: "The run is open, ran a working tree, or nothing failed", **missing})),
    ]
