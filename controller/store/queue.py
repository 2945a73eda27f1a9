"""The task queue, in the database: enqueue, atomic lease, heartbeat, finish, reap, cancel.

A lease is taken with a compare-and-set `UPDATE ... WHERE id = ? AND state = 'queued'`: of two
runners racing for one row exactly one sees rowcount 1, on SQLite and PostgreSQL alike, without
row locks held across a round trip. Runners long-poll: a waiter sleeps on a condition that
`enqueue` notifies (same process), and re-checks every `POLL_S` (rows enqueued by another
controller process on the same database).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import sqlalchemy as sa

from controller.store import tables
from runner.protocol import LEASE_S, Beat, LeaseLost
from runner.spec import TaskResult, TaskSpec

POLL_S = 0.5
CANDIDATES = 50  # queued rows looked at per lease attempt (label matching happens here)

q = tables.queue


@dataclass(frozen=True)
class Item:
    id: int
    run_id: int
    task: str
    attempt: int
    spec: TaskSpec
    labels: tuple[str, ...]
    state: str
    lease_id: str | None
    lease_owner: str | None
    lease_expires_at: float | None
    log_offset: int
    queued_at: float
    leased_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> Item:
        return cls(
            id=row.id, run_id=row.run_id, task=row.task, attempt=row.attempt,
            spec=TaskSpec.from_json(row.spec), labels=tuple(row.labels or ()), state=row.state,
            lease_id=row.lease_id, lease_owner=row.lease_owner, lease_expires_at=row.lease_expires_at,
            log_offset=row.log_offset, queued_at=row.queued_at, leased_at=row.leased_at,
        )


class Queue:
    def __init__(self, engine: sa.Engine, lease_s: float = LEASE_S) -> None:
        self.engine = engine
        self.lease_s = lease_s
        self._wake = threading.Condition()
        self._generation = 0
        self._interrupts = 0

    def _notify(self, items: int) -> None:
        # One waiter per new item, not all of them: idle runners do not stampede for one row.
        with self._wake:
            self._generation += 1
            self._wake.notify(items)

    def enqueue(self, conn: sa.Connection, *, run_id: int, task: str, attempt: int, spec: TaskSpec,
                labels: Sequence[str], log_offset: int) -> int:
        """Insert inside the caller's transaction (so the task row and the queue row change
        together); call `notify()` after it commits."""
        result = conn.execute(q.insert().values(
            run_id=run_id, task=task, attempt=attempt, spec=spec.to_json(), labels=list(labels),
            state="queued", queued_at=time.time(), cancel_requested=False, log_offset=log_offset,
        ))
        key: Any = result.inserted_primary_key
        return int(key[0])

    def notify(self, items: int = 1) -> None:
        self._notify(items)

    def interrupt(self) -> None:
        """End every long poll waiting now (with no item): its runner is stopping."""
        with self._wake:
            self._interrupts += 1
            self._generation += 1
            self._wake.notify_all()

    def lease(self, runner: str, labels: Sequence[str], wait_s: float = 0.0) -> Item | None:
        deadline = time.monotonic() + wait_s
        have = set(labels)
        with self._wake:
            interrupts = self._interrupts
        while True:
            with self._wake:
                generation = self._generation
                if self._interrupts != interrupts:
                    return None
            item = self._try_lease(runner, have)
            if item is not None:
                return item
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with self._wake:
                if self._generation == generation:
                    self._wake.wait(min(left, POLL_S))

    def _try_lease(self, runner: str, have: set[str]) -> Item | None:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(q.c.id, q.c.labels).where(q.c.state == "queued")
                .order_by(q.c.queued_at, q.c.id).limit(CANDIDATES)
            ).all()
        for row in rows:
            if not set(row.labels or ()) <= have:
                continue
            now = time.time()
            lease_id = secrets.token_hex(16)
            with self.engine.begin() as conn:
                claimed = conn.execute(
                    q.update().where(q.c.id == row.id, q.c.state == "queued").values(
                        state="leased", lease_id=lease_id, lease_owner=runner, leased_at=now,
                        lease_expires_at=now + self.lease_s,
                    )
                ).rowcount
                if claimed == 1:
                    full = conn.execute(sa.select(q).where(q.c.id == row.id)).one()
                    return Item.from_row(full)
        return None

    def get(self, lease_id: str) -> Item:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(q).where(q.c.lease_id == lease_id)).first()
        if row is None:
            raise LeaseLost(f"no lease {lease_id}")
        return Item.from_row(row)

    def heartbeat(self, lease_id: str) -> Beat:
        now = time.time()
        expires = now + self.lease_s
        with self.engine.begin() as conn:
            updated = conn.execute(
                q.update().where(q.c.lease_id == lease_id, q.c.state == "leased", q.c.lease_expires_at >= now)
                .values(lease_expires_at=expires)
            ).rowcount
            if updated != 1:
                raise LeaseLost(f"lease {lease_id} is no longer held")
            cancel = conn.execute(sa.select(q.c.cancel_requested).where(q.c.lease_id == lease_id)).scalar_one()
        return Beat(expires_at=expires, cancel=bool(cancel))

    def check(self, lease_id: str) -> Item:
        """The item of a live lease, or LeaseLost."""
        item = self.get(lease_id)
        if item.state != "leased" or (item.lease_expires_at or 0) < time.time():
            raise LeaseLost(f"lease {lease_id} is no longer held")
        return item

    def finish(self, lease_id: str, result: TaskResult) -> Item | None:
        """Close a live lease with its result: the item, or None if this lease was already finished
        (a retried call). LeaseLost if the lease expired or was taken back."""
        now = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(
                q.update().where(q.c.lease_id == lease_id, q.c.state == "leased")
                .values(state="done", result=result.to_json(), finished_at=now)
            ).rowcount
            row = conn.execute(sa.select(q).where(q.c.lease_id == lease_id)).first()
        if row is None:
            raise LeaseLost(f"no lease {lease_id}")
        if done == 1:
            return Item.from_row(row)
        if row.state == "done":
            return None
        raise LeaseLost(f"lease {lease_id} is no longer held ({row.state})")

    def renew_all(self, except_prefix: str) -> int:
        """Give every live lease a full `lease_s` from now, but those of runners named
        `except_prefix...` (at a controller start: while it was away no remote runner could
        heartbeat, so a lease that ran out meanwhile says nothing of its runner)."""
        with self.engine.begin() as conn:
            return int(conn.execute(q.update().where(q.c.state == "leased",
                                                     sa.not_(q.c.lease_owner.startswith(except_prefix)))
                                    .values(lease_expires_at=time.time() + self.lease_s)).rowcount)

    def reap(self) -> list[Item]:
        """Take back expired leases (state 'expired': a late finish is refused); return them."""
        now = time.time()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(q.c.id).where(q.c.state == "leased", q.c.lease_expires_at < now)
            ).all()
        taken: list[Item] = []
        for row in rows:
            with self.engine.begin() as conn:
                if conn.execute(
                    q.update().where(q.c.id == row.id, q.c.state == "leased", q.c.lease_expires_at < now)
                    .values(state="expired", finished_at=now)
                ).rowcount == 1:
                    taken.append(Item.from_row(conn.execute(sa.select(q).where(q.c.id == row.id)).one()))
        return taken

    def cancel_run(self, conn: sa.Connection, run_id: int) -> list[str]:
        """Queued items of the run are canceled (their task names returned); leased ones are asked
        to stop at their next heartbeat."""
        names = [r.task for r in conn.execute(
            sa.select(q.c.task).where(q.c.run_id == run_id, q.c.state == "queued"))]
        conn.execute(q.update().where(q.c.run_id == run_id, q.c.state == "queued")
                     .values(state="canceled", finished_at=time.time()))
        conn.execute(q.update().where(q.c.run_id == run_id, q.c.state == "leased")
                     .values(cancel_requested=True))
        return names

    def depth(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(q).where(q.c.state == "queued")).scalar_one())
