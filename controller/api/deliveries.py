"""`GET /api/v1/deliveries`: the webhook deliveries received, and what became of each (runs made,
why nothing ran, or why processing failed), since that happens after the forge got its 202."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.api.body import query_int
from controller.api.runs import MAX_LIMIT
from controller.services import Services
from controller.store.deliveries import Deliveries


def list_deliveries(call: Call) -> Response:
    """Recent deliveries, newest first; `repo` narrows to one repository."""
    limit = query_int(call.request, "limit", 50, low=1, high=MAX_LIMIT)
    assert limit is not None
    name = call.request.query_params.get("repo")
    repo_id = call.services.repos.get(name).id if name else None
    rows = Deliveries(call.services.store.engine).recent(limit, repo_id=repo_id)
    return reply({"deliveries": [row.public() for row in rows]})


def routes(services: Services) -> list[BaseRoute]:
    return [ApiRoute("GET", "/api/v1/deliveries", list_deliveries, services, Doc(
        "List webhook deliveries and what became of them", tag="webhooks",
        query={"repo": "owner/repo", "limit": "1 to 200 (default 50)"}))]
