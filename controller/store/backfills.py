"""Backfills: a schedule's ticks over a past window, fired on request, a few at a time.

A backfill moves a cursor from `start_at` to `end_at`; the schedule loop fires the ticks after
the cursor while it is `running`. `paused` keeps the cursor, `canceled` ends it, and it is `done`
when the cursor reaches the end. Each tick is claimed like a scheduled one (`schedule_ticks`), so
a tick the schedule fired already is not fired again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, List

import sqlalchemy as sa

from controller.store import tables

t = tables.backfills
STATES = ("running", "paused", "canceled", "done")
MOVES = {"pause": ("running", "paused"), "resume": ("paused", "running"), "cancel": (None, "canceled")}


class BadMove(Exception):
    """A state change a backfill cannot make (resume a canceled one, ...)."""


@dataclass(frozen=True)
class BackfillRow:
    id: int
    trigger_key: str
    repo_id: int
    workflow_file: str
    start_at: float
    end_at: float
    cursor: float
    state: str
    fired: int
    created_by: str | None
    created_at: float
    updated_at: float

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "trigger": self.trigger_key, "workflow_file": self.workflow_file,
                "from": self.start_at, "to": self.end_at, "cursor": self.cursor, "state": self.state,
                "fired": self.fired, "created_by": self.created_by, "created_at": self.created_at,
                "updated_at": self.updated_at}


class Backfills:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, *, trigger_key: str, repo_id: int, workflow_file: str, start_at: float, end_at: float,
               created_by: str | None) -> BackfillRow:
        now = time.time()
        with self.engine.begin() as conn:
            made = conn.execute(t.insert().values(
                trigger_key=trigger_key, repo_id=repo_id, workflow_file=workflow_file, start_at=start_at,
                end_at=end_at, cursor=start_at, state="running", fired=0, created_by=created_by, created_at=now,
                updated_at=now))
            new_id: Any = made.inserted_primary_key[0] if made.inserted_primary_key else None
        return self.get(int(new_id))

    def get(self, backfill_id: int) -> BackfillRow:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == backfill_id)).mappings().first()
        if row is None:
            raise LookupError(f"no backfill {backfill_id}")
        return BackfillRow(**row)

    def list(self, state: str | None = None) -> List[BackfillRow]:
        query = sa.select(t).order_by(t.c.id)
        if state is not None:
            query = query.where(t.c.state == state)
        with self.engine.connect() as conn:
            return [BackfillRow(**r) for r in conn.execute(query).mappings()]

    def move(self, backfill_id: int, verb: str) -> BackfillRow:
        """pause, resume or cancel; BadMove when the backfill is not in a state that allows it."""
        before, after = MOVES[verb]
        current = self.get(backfill_id)
        allowed = ("running", "paused") if before is None else (before,)
        if current.state not in allowed:
            raise BadMove(f"backfill {backfill_id} is {current.state}: it cannot {verb}")
        with self.engine.begin() as conn:
            done = conn.execute(t.update().where(t.c.id == backfill_id, t.c.state.in_(allowed))
                                .values(state=after, updated_at=time.time()))
        if done.rowcount != 1:
            raise BadMove(f"backfill {backfill_id} changed meanwhile: try again")
        return self.get(backfill_id)

    def progress(self, backfill_id: int, cursor: float, fired: int, done: bool) -> None:
        """Move the cursor of a running backfill (a paused or canceled one keeps its state)."""
        values: dict[str, Any] = {"cursor": cursor, "fired": t.c.fired + fired, "updated_at": time.time()}
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == backfill_id, t.c.state == "running", t.c.cursor < cursor)
                         .values(**values, **({"state": "done"} if done else {})))
            if done:  # the cursor may already be at the end
                conn.execute(t.update().where(t.c.id == backfill_id, t.c.state == "running", t.c.cursor >= t.c.end_at)
                             .values(state="done", updated_at=time.time()))
