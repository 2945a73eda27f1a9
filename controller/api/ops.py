"""`/healthz`, `/readyz`, `/metrics`: for load balancers, orchestrators and Prometheus (no auth)."""

from __future__ import annotations

import sqlalchemy as sa
import structlog
from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.metrics import CONTENT_TYPE, Metrics
from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.services import Services

log = structlog.get_logger("clarity.api")


def healthz(call: Call) -> Response:
    """The process is up."""
    return reply({"status": "ok"})


def readyz(call: Call) -> Response:
    """The database answers."""
    try:
        with call.services.store.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        log.warning("not ready: database", error=str(exc))
        return reply({"status": "unavailable", "database": "not answering"}, 503)
    return reply({"status": "ok", "database": "ok"})


def routes(services: Services, metrics: Metrics) -> list[BaseRoute]:
    def scrape(call: Call) -> Response:
        """Prometheus metrics."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return [
        ApiRoute("GET", "/healthz", healthz, services, Doc("Liveness", tag="ops"), public=True),
        ApiRoute("GET", "/readyz", readyz, services, Doc("Readiness (the database answers)", tag="ops",
                                                         responses={200: "Ready", 503: "The database does not answer"}),
                 public=True),
        ApiRoute("GET", "/metrics", scrape, services, Doc("Prometheus metrics (text format)", tag="ops"), public=True),
    ]
