"""Triggers declared in workflow files, as of each repository's default branch head, and the
schedule ticks fired.

`replace` makes a repository's rows what its files declare now: a trigger that is gone from the
file is deleted (a removed schedule stops), one that is unchanged keeps its state (`last_tick`).
A tick fires once across any number of controllers: `fire` inserts its row, and only the one
insert that succeeds starts the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, List, Mapping, Sequence

import sqlalchemy as sa

from controller.store import tables

t = tables.triggers
ticks = tables.schedule_ticks


@dataclass(frozen=True)
class Declared:
    """A trigger as a workflow file declares it."""

    key: str
    workflow_file: str
    workflow: str
    type: str
    config: Mapping[str, Any]
    blob_sha: str


@dataclass(frozen=True)
class TriggerRow:
    id: int
    key: str
    repo_id: int
    workflow_file: str
    workflow: str
    type: str
    config: Mapping[str, Any]
    ref: str
    commit_sha: str
    blob_sha: str
    last_tick: float | None
    created_at: float
    updated_at: float

    def public(self) -> dict[str, Any]:
        return {"key": self.key, "workflow_file": self.workflow_file, "workflow": self.workflow, "type": self.type,
                "config": dict(self.config), "ref": self.ref, "commit_sha": self.commit_sha,
                "last_tick": self.last_tick}


class Triggers:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def replace(self, repo_id: int, ref: str, commit_sha: str, declared: Sequence[Declared]) -> tuple[int, int]:
        """The repository's triggers are now `declared` (read at `commit_sha` of `ref`): (added, removed)."""
        now = time.time()
        wanted = {d.key: d for d in declared}
        with self.engine.begin() as conn:
            have = {r.key: r.id for r in conn.execute(sa.select(t.c.key, t.c.id).where(t.c.repo_id == repo_id))}
            gone = [have[k] for k in have if k not in wanted]
            if gone:
                conn.execute(t.delete().where(t.c.id.in_(gone)))
            for key, d in wanted.items():
                values = dict(workflow_file=d.workflow_file, workflow=d.workflow, type=d.type, config=dict(d.config),
                              ref=ref, commit_sha=commit_sha, blob_sha=d.blob_sha, updated_at=now)
                if key in have:
                    conn.execute(t.update().where(t.c.id == have[key]).values(**values))
                else:
                    try:
                        with conn.begin_nested():
                            conn.execute(t.insert().values(key=key, repo_id=repo_id, created_at=now, **values))
                    except sa.exc.IntegrityError:  # another controller read the same file at the same time
                        pass
        return len(set(wanted) - set(have)), len(gone)

    def list(self, type: str | None = None, repo_id: int | None = None) -> "List[TriggerRow]":
        query = sa.select(t).order_by(t.c.id)
        if type is not None:
            query = query.where(t.c.type == type)
        if repo_id is not None:
            query = query.where(t.c.repo_id == repo_id)
        with self.engine.connect() as conn:
            return [TriggerRow(**r) for r in conn.execute(query).mappings()]

    def get(self, key: str) -> TriggerRow:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.key == key)).mappings().first()
        if row is None:
            raise LookupError(f"no trigger {key}")
        return TriggerRow(**row)

    def advance(self, trigger_id: int, tick: float) -> None:
        """Record that ticks up to `tick` are handled (never moves back)."""
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == trigger_id, sa.or_(t.c.last_tick.is_(None), t.c.last_tick < tick))
                         .values(last_tick=tick))

    def fire(self, key: str, tick: float, backfill_id: int | None = None) -> bool:
        """Claim a tick: True for the one caller that gets to start its run."""
        try:
            with self.engine.begin() as conn:
                conn.execute(ticks.insert().values(trigger_key=key, tick_at=tick, backfill_id=backfill_id,
                                                   fired_at=time.time()))
            return True
        except sa.exc.IntegrityError:
            return False

    def fired(self, key: str, tick: float, run_id: int | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(ticks.update().where(ticks.c.trigger_key == key, ticks.c.tick_at == tick)
                         .values(run_id=run_id))

    def ticks(self, key: str) -> "List[tuple[float, int | None]]":
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ticks.c.tick_at, ticks.c.run_id).where(ticks.c.trigger_key == key)
                                .order_by(ticks.c.tick_at))
            return [(r.tick_at, r.run_id) for r in rows]
