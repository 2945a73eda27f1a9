"""Webhook deliveries: stored before they are answered, then claimed and processed off the request path.

A delivery is recorded once per (forge, delivery id): the unique constraint, not a prior SELECT,
decides, so two replicas receiving one redelivery at the same instant still store one row. A
worker claims a row with a compare-and-set `UPDATE ... WHERE id = ? AND state = 'received'`
(as the task queue leases): of two workers exactly one sees rowcount 1, on SQLite and PostgreSQL,
without row locks held across a round trip.

While a row is `processing`, `error` holds the claiming process (runner.owner) and `processed_at`
the claim time: that is what `recover` reads after a crash. Processing twice is harmless anyway:
the Starter makes one run per (repo, event, ref, commit, file).

States: received -> processing -> processed | ignored | failed.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa

from controller.store import tables

d = tables.deliveries

STATES = ("received", "processing", "processed", "ignored", "failed")
FINAL = ("processed", "ignored", "failed")
CANDIDATES = 20  # received rows tried per claim before giving up to the other workers


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    forge: str
    delivery_id: str
    repo_id: int | None
    event: str
    payload: Any
    state: str
    error: str | None
    received_at: float
    processed_at: float | None

    def public(self) -> dict[str, Any]:
        """What the API shows: the payload stays out (it is large, and the forge has it)."""
        return {
            "id": self.id, "forge": self.forge, "delivery_id": self.delivery_id, "repo_id": self.repo_id,
            "event": self.event, "state": self.state, "error": self.error, "received_at": self.received_at,
            "processed_at": self.processed_at,
        }


# Wakes the intake workers of this process when a delivery is stored. Events, not one Condition,
# so a notification sent while a worker is busy is not lost: it finds its event set next time.
_waiters: "weakref.WeakSet[threading.Event]" = weakref.WeakSet()
_waiters_lock = threading.Lock()


def subscribe(event: threading.Event) -> None:
    with _waiters_lock:
        _waiters.add(event)


def notify() -> None:
    with _waiters_lock:
        for event in list(_waiters):
            event.set()


class Deliveries:
    """Thread-safe: every method uses its own short transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def record(self, forge: str, delivery_id: str, repo_id: int | None, event: str, payload: Any, *,
               state: str = "received", error: str | None = None) -> int | None:
        """Store a verified delivery; its row id, or None when (forge, delivery_id) is stored already.
        `state` is `received` (for the worker), or final for what needs no work (`ignored`)."""
        if state not in ("received", *FINAL):
            raise ValueError(f"cannot record a delivery as {state!r}")
        now = time.time()
        try:
            with self.engine.begin() as conn:
                key: Any = conn.execute(d.insert().values(
                    forge=forge, delivery_id=delivery_id, repo_id=repo_id, event=event, payload=payload,
                    state=state, error=error, received_at=now, processed_at=None if state == "received" else now,
                )).inserted_primary_key
        except sa.exc.IntegrityError:
            if self._find(forge, delivery_id) is None:
                raise  # another constraint (a repository removed meanwhile): not a redelivery
            return None
        return int(key[0])

    def claim_next(self, owner: str) -> DeliveryRow | None:
        """Move the oldest `received` delivery to `processing` for `owner` and return it; None when
        there is none (or every candidate was taken by another worker meanwhile)."""
        with self.engine.connect() as conn:
            ids = [r.id for r in conn.execute(
                sa.select(d.c.id).where(d.c.state == "received").order_by(d.c.id).limit(CANDIDATES))]
        for row_id in ids:
            # The read above and this write are separate transactions: an SQLite read transaction
            # cannot be upgraded to a write once another writer committed (SQLITE_BUSY_SNAPSHOT).
            with self.engine.begin() as conn:
                taken = conn.execute(d.update().where(d.c.id == row_id, d.c.state == "received")
                                     .values(state="processing", error=owner, processed_at=time.time())).rowcount
            if taken == 1:
                return self.get(row_id)
        return None

    def done(self, row_id: int, state: str, error: str | None = None) -> None:
        if state not in FINAL:
            raise ValueError(f"a delivery ends processed, ignored or failed, not {state!r}")
        with self.engine.begin() as conn:
            conn.execute(d.update().where(d.c.id == row_id)
                         .values(state=state, error=error, processed_at=time.time()))

    def recover(self, is_orphan: Callable[[str | None], bool], stale_s: float) -> list[int]:
        """Put back to `received` what a dead process left `processing`: rows whose owner is gone
        (this host can tell), or claimed longer than `stale_s` ago (another host's worker died)."""
        cutoff = time.time() - stale_s
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(d.c.id, d.c.error, d.c.processed_at)
                                .where(d.c.state == "processing")).all()
        back: list[int] = []
        for row in rows:
            if not (is_orphan(row.error) or (row.processed_at or 0) < cutoff):
                continue
            with self.engine.begin() as conn:
                if conn.execute(d.update().where(d.c.id == row.id, d.c.state == "processing",
                                                 d.c.error == row.error)
                                .values(state="received", error=None, processed_at=None)).rowcount == 1:
                    back.append(row.id)
        return back

    def get(self, row_id: int) -> DeliveryRow:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(d).where(d.c.id == row_id)).mappings().first()
        if row is None:
            raise LookupError(f"no delivery {row_id}")
        return DeliveryRow(**row)

    def recent(self, limit: int = 50, repo_id: int | None = None) -> list[DeliveryRow]:
        query = sa.select(d).order_by(d.c.id.desc()).limit(limit)
        if repo_id is not None:
            query = query.where(d.c.repo_id == repo_id)
        with self.engine.connect() as conn:
            return [DeliveryRow(**r) for r in conn.execute(query).mappings()]

    def _find(self, forge: str, delivery_id: str) -> int | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(d.c.id).where(d.c.forge == forge, d.c.delivery_id == delivery_id)).first()
        return None if found is None else int(found.id)
