"""Runs, their tasks and their logs: the one write path for run state."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import sqlalchemy as sa

from controller.store import tables
from controller.store.migrations import migrate


class _Timed:
    started_at: float | None
    finished_at: float | None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class RunRow(_Timed):
    id: int
    repo: str
    workflow: str
    workflow_file: str
    blob_sha: str | None
    commit_sha: str | None
    ref: str | None
    event: str
    dirty: bool
    state: str
    trigger: Any
    owner: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    repo_id: int | None = None
    dedupe_key: str | None = None
    context: Any = None
    workflow_text: str | None = None
    rerun_of: int | None = None
    message: str | None = None
    outputs: Any = None  # v8: the workflow's declared outputs (a run that succeeded)
    parent_run: int | None = None  # v8: a sub-run's parent run and task
    parent_task: str | None = None


@dataclass(frozen=True)
class TaskRow(_Timed):
    run_id: int
    name: str
    position: int
    state: str
    attempt: int
    image: str | None
    exit_code: int | None
    error: str | None
    output: Any
    outputs: Any
    artifacts_dir: str | None
    started_at: float | None
    finished_at: float | None


class NotFound(LookupError):
    pass


def open_engine(url: str) -> sa.Engine:
    if url.startswith(("postgresql://", "postgres://")):  # the driver Clarity installs: psycopg 3
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():  # it holds webhook secrets: readable by its owner only
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class Store:
    """Thread-safe: every method opens its own short transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._seq_lock = threading.Lock()
        migrate(engine)

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(open_engine(url))

    # runs

    def create_run(
        self,
        *,
        repo: str,
        workflow: str,
        workflow_file: str,
        blob_sha: str | None,
        commit_sha: str | None,
        ref: str | None,
        event: str,
        dirty: bool,
        trigger: Any,
        tasks: Sequence[tuple[str, str | None]],
        owner: str | None = None,
        context: Any = None,
        workflow_text: str | None = None,
        repo_id: int | None = None,
        dedupe_key: str | None = None,
        state: str = "queued",
        message: str | None = None,
        parent_run: int | None = None,
        parent_task: str | None = None,
    ) -> int:
        """Create a queued run with its tasks (name, image) pending; return the run id."""
        now = time.time()
        with self.engine.begin() as conn:
            run_id: Any = conn.execute(
                tables.runs.insert().values(
                    repo=repo, workflow=workflow, workflow_file=workflow_file, blob_sha=blob_sha,
                    commit_sha=commit_sha, ref=ref, event=event, dirty=dirty, state=state, message=message,
                    trigger=trigger, owner=owner, created_at=now, context=context,
                    workflow_text=workflow_text, repo_id=repo_id, dedupe_key=dedupe_key,
                    parent_run=parent_run, parent_task=parent_task,
                )
            ).inserted_primary_key
            run_id = run_id[0]
            if tasks:
                conn.execute(
                    tables.tasks.insert(),
                    [
                        {"run_id": run_id, "name": name, "position": i, "state": "pending",
                         "attempt": 0, "image": image}
                        for i, (name, image) in enumerate(tasks)
                    ],
                )
        return int(run_id)

    def set_run_state(self, run_id: int, state: str, *, started: bool = False, finished: bool = False,
                      outputs: dict[str, str] | None = None, message: str | None = None) -> None:
        values: dict[str, Any] = {"state": state}
        if outputs is not None:
            values["outputs"] = outputs
        if message is not None:
            values["message"] = message
        if started:
            values["started_at"] = time.time()
        if finished:
            values["finished_at"] = time.time()
        with self.engine.begin() as conn:
            conn.execute(tables.runs.update().where(tables.runs.c.id == run_id).values(**values))

    def get_run(self, run_id: int) -> RunRow:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tables.runs).where(tables.runs.c.id == run_id)).mappings().first()
        if row is None:
            raise NotFound(f"no run {run_id}")
        return RunRow(**row)

    def finished_at(self, run_ids: Sequence[int]) -> dict[int, float | None]:
        """When each of these runs finished (None: not yet); a run that does not exist is left out."""
        found: dict[int, float | None] = {}
        for start in range(0, len(run_ids), 500):
            chunk = list(run_ids[start:start + 500])
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(tables.runs.c.id, tables.runs.c.finished_at)
                                    .where(tables.runs.c.id.in_(chunk))).all()
            found.update({int(r.id): r.finished_at for r in rows})
        return found

    def sub_runs(self, run_id: int, task: str | None = None) -> list[RunRow]:
        """The sub-runs a run's `type: workflow` tasks started (of one task), oldest first."""
        query = sa.select(tables.runs).where(tables.runs.c.parent_run == run_id).order_by(tables.runs.c.id)
        if task is not None:
            query = query.where(tables.runs.c.parent_task == task)
        with self.engine.connect() as conn:
            return [RunRow(**row) for row in conn.execute(query).mappings()]

    def run_by_dedupe(self, key: str) -> RunRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tables.runs).where(tables.runs.c.dedupe_key == key)).mappings().first()
        return None if row is None else RunRow(**row)

    def list_runs(self, limit: int = 20, repo: str | None = None) -> list[RunRow]:
        query = sa.select(tables.runs).order_by(tables.runs.c.id.desc()).limit(limit)
        if repo is not None:
            query = query.where(tables.runs.c.repo == repo)
        with self.engine.connect() as conn:
            return [RunRow(**row) for row in conn.execute(query).mappings()]

    def reap_orphans(self, is_orphan: Callable[[str | None], bool]) -> list[int]:
        """Runs left queued or running by a process that is gone (killed, or interrupted twice)
        are marked canceled, with their unfinished tasks; return their ids."""
        with self.engine.begin() as conn:
            open_runs = conn.execute(
                sa.select(tables.runs.c.id, tables.runs.c.owner).where(tables.runs.c.state.in_(("queued", "running")))
            ).all()
            # Runs without an owner belong to a controller, which resumes them itself.
            reaped = [r.id for r in open_runs if r.owner is not None and is_orphan(r.owner)]
            if reaped:
                now = time.time()
                conn.execute(tables.runs.update().where(tables.runs.c.id.in_(reaped))
                             .values(state="canceled", finished_at=now))
                conn.execute(
                    tables.tasks.update()
                    .where(tables.tasks.c.run_id.in_(reaped), tables.tasks.c.state.in_(("pending", "running")))
                    .values(state="canceled", error="interrupted: the clarity process running it is gone")
                )
        return reaped

    # tasks

    def update_task(self, run_id: int, name: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                tables.tasks.update()
                .where(tables.tasks.c.run_id == run_id, tables.tasks.c.name == name)
                .values(**values)
            )

    def task(self, run_id: int, name: str) -> TaskRow:
        query = sa.select(tables.tasks).where(tables.tasks.c.run_id == run_id, tables.tasks.c.name == name)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"run {run_id} has no task {name}")
        return TaskRow(**row)

    def list_tasks(self, run_id: int) -> list[TaskRow]:
        query = sa.select(tables.tasks).where(tables.tasks.c.run_id == run_id).order_by(tables.tasks.c.position)
        with self.engine.connect() as conn:
            return [TaskRow(**row) for row in conn.execute(query).mappings()]

    # logs

    @staticmethod
    def max_seq(conn: sa.Connection, run_id: int, task: str) -> int:
        return int(conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(tables.logs.c.seq), 0)).where(
                tables.logs.c.run_id == run_id, tables.logs.c.task == task)
        ).scalar_one())

    def append_logs(self, run_id: int, task: str, lines: Iterable[tuple[float, str]]) -> None:
        """Lines after the last stored one (the controller's own notes about a task)."""
        batch = list(lines)
        if not batch:
            return
        with self._seq_lock, self.engine.begin() as conn:
            start = self.max_seq(conn, run_id, task)
            conn.execute(tables.logs.insert(), [
                {"run_id": run_id, "task": task, "seq": start + i + 1, "ts": ts, "line": line}
                for i, (ts, line) in enumerate(batch)
            ])

    def put_logs(self, run_id: int, task: str, lines: Sequence[tuple[int, float, str]]) -> None:
        """Lines at given sequence numbers (a runner's batches); a line already stored is kept as
        it is, so a batch sent twice is stored once."""
        if not lines:
            return
        rows = [{"run_id": run_id, "task": task, "seq": seq, "ts": ts, "line": line} for seq, ts, line in lines]
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(tables.logs).on_conflict_do_nothing()
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(tables.logs).on_conflict_do_nothing()
        else:  # pragma: no cover - only the two databases above are supported
            raise RuntimeError(f"unsupported database {dialect}")
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)

    def logs(self, run_id: int, task: str | None = None) -> list[tuple[str, float, str]]:
        """(task, ts, line) in task position order, then line order."""
        t, l = tables.tasks, tables.logs
        query = (
            sa.select(l.c.task, l.c.ts, l.c.line)
            .select_from(l.outerjoin(t, sa.and_(t.c.run_id == l.c.run_id, t.c.name == l.c.task)))
            .where(l.c.run_id == run_id)
            # lines of a task the run does not list (NULL position) first, grouped by task, on both
            # databases (SQLite sorts NULLs first, PostgreSQL last)
            .order_by(t.c.position.asc().nulls_first(), l.c.task, l.c.seq)
        )
        if task is not None:
            query = query.where(l.c.task == task)
        with self.engine.connect() as conn:
            return [(r.task, r.ts, r.line) for r in conn.execute(query)]
