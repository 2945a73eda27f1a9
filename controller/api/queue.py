"""`GET /api/v1/queue`: how much work waits for runners, and for how long.

Queued tasks are grouped by the labels they need, so a task no runner can take does not pend
silently: `waiting` has one entry per label set, e.g. `gpu,arm64: 3 tasks waiting 5m`, and when
the runner registry can tell, `no runner with labels gpu,arm64: 3 tasks waiting 5m`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.services import Services
from controller.store import tables

CanTake = Callable[[Sequence[str]], bool]
ITEMS = 100  # items listed per label set (the longest waiting); `tasks` counts them all


def wait_text(seconds: float) -> str:
    """45s, 5m, 2h10m, 3d4h: how long, for people."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60}m" if s % 3600 >= 60 else f"{s // 3600}h"
    return f"{s // 86400}d{(s % 86400) // 3600}h" if s % 86400 >= 3600 else f"{s // 86400}d"


def _can_take(services: Services) -> CanTake | None:
    """The runner registry's check (`Runners.can_take(labels)`: an enabled runner seen lately has
    all these labels), when there is one."""
    return services.runners.can_take


def waiting(rows: Sequence[Any], now: float, can_take: CanTake | None) -> list[dict[str, Any]]:
    """Queued rows (run_id, task, attempt, labels, queued_at) grouped by label set, longest wait
    first. `runner`: whether some runner can take them (None: unknown, or no labels needed, which
    any runner does)."""
    groups: dict[tuple[str, ...], list[Any]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(set(row.labels or ()))), []).append(row)
    out: list[dict[str, Any]] = []
    for labels, items in groups.items():
        oldest = max(0.0, now - min(r.queued_at for r in items))
        runner = can_take(labels) if labels and can_take is not None else None
        shown = ",".join(labels) if labels else "(no labels)"
        count = f"{len(items)} task{'s' if len(items) != 1 else ''} waiting {wait_text(oldest)}"
        out.append({
            "labels": list(labels),
            "tasks": len(items),
            "oldest_wait_s": round(oldest, 3),
            "runner": runner,
            "summary": f"{'no runner with labels ' if runner is False else ''}{shown}: {count}",
            "items": [{"run_id": r.run_id, "task": r.task, "attempt": r.attempt,
                       "wait_s": round(max(0.0, now - r.queued_at), 3)}
                      for r in sorted(items, key=lambda r: (r.queued_at, r.id))[:ITEMS]],
        })
    out.sort(key=lambda g: -g["oldest_wait_s"])
    return out


def queue_status(call: Call) -> Response:
    """Queued and leased tasks, the oldest queued task's wait, and the queued tasks grouped by the
    runner labels they need (`waiting`)."""
    q = tables.queue
    with call.services.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(q.c.id, q.c.run_id, q.c.task, q.c.attempt, q.c.labels, q.c.queued_at)
            .where(q.c.state == "queued").order_by(q.c.queued_at, q.c.id)).all()
        leased = conn.execute(sa.select(sa.func.count()).select_from(q).where(q.c.state == "leased")).scalar_one()
    now = time.time()
    oldest = min((r.queued_at for r in rows), default=None)
    wait = None if oldest is None else round(max(0.0, now - oldest), 3)
    return reply({"depth": len(rows), "leased": leased, "oldest_wait_s": wait,
                  "waiting": waiting(rows, now, _can_take(call.services) if rows else None)})


def routes(services: Services) -> list[BaseRoute]:
    return [ApiRoute("GET", "/api/v1/queue", queue_status, services, Doc("Queue depth and wait, by runner labels",
                                                                          tag="queue"))]
