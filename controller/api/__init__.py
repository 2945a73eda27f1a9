"""The controller's REST API: `routes(services)` for the app, `exception_handlers()` beside them.

One module per resource (repos, runs, queue, runner, runners, ops, openapi); auth in `auth.py`, the
mapping of errors to HTTP in `errors.py`. The webhooks (`hooks.py`) are mounted by the app.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from controller.api import deliveries, events, openapi, ops, queue, repos, runner, runners, runs, schedules, secrets
from controller.api import inbound  # its routes go last: a catch-all POST under /api/v1/webhook
from controller.api.errors import exception_handlers
from controller.api.metrics import Metrics
from controller.services import Services

__all__ = ["Metrics", "exception_handlers", "routes"]


def routes(services: Services, metrics: Metrics | None = None) -> list[BaseRoute]:
    """Every route but the webhooks'. Pass `metrics` to share it with an in-process runner
    (`Metrics.leased` / `Metrics.finished`); by default the API makes its own."""
    metrics = metrics or Metrics(services.store)
    return [
        *ops.routes(services, metrics),
        *openapi.routes(services),
        *repos.routes(services),
        *secrets.routes(services),
        *runs.routes(services),
        *queue.routes(services),
        *deliveries.routes(services),
        *runner.routes(services, metrics),
        *runners.routes(services),
        *events.routes(services),
        *schedules.routes(services),
        *inbound.routes(services),  # keep last: a catch-all under /api/v1/webhook
    ]
