"""`GET /api/v1/queue`: how much work waits for runners, and for how long."""

from __future__ import annotations

import time

import sqlalchemy as sa
from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.services import Services
from controller.store import tables


def queue_status(call: Call) -> Response:
    """Queued and leased tasks, and the oldest queued task's wait."""
    q = tables.queue
    with call.services.store.engine.connect() as conn:
        depth, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(q.c.queued_at)).where(q.c.state == "queued")).one()
        leased = conn.execute(sa.select(sa.func.count()).select_from(q).where(q.c.state == "leased")).scalar_one()
    wait = None if oldest is None else round(max(0.0, time.time() - oldest), 3)
    return reply({"depth": depth, "leased": leased, "oldest_wait_s": wait})


def routes(services: Services) -> list[BaseRoute]:
    return [ApiRoute("GET", "/api/v1/queue", queue_status, services, Doc("Queue depth and wait", tag="queue"))]
