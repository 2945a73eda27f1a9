"""The outbox: what is to be sent to a forge (a commit status, a git note), kept in the database so
that nothing is lost while the forge is down or the controller restarts.

One row per thing on the forge (`key`: a status per repository, commit and context; a note per
run). A new payload for a key replaces the one not sent yet and bumps `version`: the newest state
wins, and a commit's statuses can never arrive out of order. A sender claims a due row with a
compare-and-set on `claimed_until` (several controllers on one database send each version once),
and records the outcome for the version it sent: a newer version that came meanwhile stays due.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import sqlalchemy as sa

from controller.store import tables

t = tables.outbox
CLAIM_S = 120.0  # a sender that died mid-send: its claim runs out after this


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: str
    key: str
    repo_id: int
    run_id: int | None
    payload: Mapping[str, Any]
    version: int
    sent_version: int
    handle: str | None
    attempts: int
    next_at: float
    claimed_until: float | None
    last_error: str | None
    created_at: float
    updated_at: float
    sent_at: float | None

    @property
    def pending(self) -> bool:
        return self.version > self.sent_version

    def public(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "state": self.payload.get("state"),
                "context": self.payload.get("context"), "sent": not self.pending, "attempts": self.attempts,
                "next_attempt_at": self.next_at if self.pending else None, "last_error": self.last_error,
                "sent_at": self.sent_at}


class Outbox:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def put(self, kind: str, key: str, repo_id: int, run_id: int | None, payload: Mapping[str, Any], *,
            new_handle: bool = False) -> None:
        """Queue `payload` for `key`, replacing an unsent one. A row waiting out a backoff keeps
        waiting (a rate limit holds for the new state too). `new_handle`: forget the forge's id of
        what was sent before (a new run on the commit gets a new check run)."""
        now = time.time()
        for _ in range(3):  # an insert racing another's: update theirs
            with self.engine.begin() as conn:
                row = conn.execute(sa.select(t.c.id, t.c.attempts, t.c.run_id).where(t.c.key == key)).first()
                if row is None:
                    try:
                        with conn.begin_nested():
                            conn.execute(t.insert().values(
                                kind=kind, key=key, repo_id=repo_id, run_id=run_id, payload=dict(payload), version=1,
                                sent_version=0, attempts=0, next_at=now, created_at=now, updated_at=now))
                        return
                    except sa.exc.IntegrityError:
                        continue
                values: dict[str, Any] = {"payload": dict(payload), "version": t.c.version + 1, "run_id": run_id,
                                          "updated_at": now}
                if new_handle:
                    values["handle"] = None
                if row.attempts == 0:
                    values["next_at"] = now
                conn.execute(t.update().where(t.c.id == row.id).values(**values))
                return
        raise RuntimeError(f"outbox: could not queue {key}")

    def due(self, now: float | None = None, limit: int = 20) -> list[OutboxRow]:
        now = time.time() if now is None else now
        query = (sa.select(t).where(t.c.version > t.c.sent_version, t.c.next_at <= now,
                                    sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until < now))
                 .order_by(t.c.next_at, t.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [OutboxRow(**r) for r in conn.execute(query).mappings()]

    def claim(self, row: OutboxRow, now: float | None = None) -> OutboxRow | None:
        """The row as claimed by this sender, or None when another one has it (or it changed)."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            done = conn.execute(t.update().where(
                t.c.id == row.id, sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until < now),
                t.c.version > t.c.sent_version).values(claimed_until=now + CLAIM_S))
            if done.rowcount != 1:
                return None
            fresh = conn.execute(sa.select(t).where(t.c.id == row.id)).mappings().one()
        return OutboxRow(**fresh)

    def sent(self, row: OutboxRow, handle: str | None) -> None:
        """`row.version` reached the forge."""
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == row.id).values(
                sent_version=sa.func.max(t.c.sent_version, row.version) if conn.dialect.name == "sqlite"
                else sa.func.greatest(t.c.sent_version, row.version),
                handle=handle, attempts=0, last_error=None, sent_at=time.time(), claimed_until=None))

    def retry(self, row: OutboxRow, error: str, next_at: float) -> None:
        """Not sent; try again at `next_at`."""
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == row.id).values(
                attempts=t.c.attempts + 1, last_error=error, next_at=next_at, claimed_until=None))

    def give_up(self, row: OutboxRow, error: str) -> None:
        """`row.version` cannot be sent (refused by the forge, or too old): kept with the error; a
        newer version is still sent."""
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == row.id).values(
                sent_version=sa.func.max(t.c.sent_version, row.version) if conn.dialect.name == "sqlite"
                else sa.func.greatest(t.c.sent_version, row.version),
                attempts=0, last_error=error, claimed_until=None))

    def for_run(self, run_id: int) -> list[OutboxRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.run_id == run_id).order_by(t.c.id)).mappings()
            return [OutboxRow(**r) for r in rows]

    def get(self, key: str) -> OutboxRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.key == key)).mappings().first()
        return None if row is None else OutboxRow(**row)
