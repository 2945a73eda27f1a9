"""`POST /api/v1/hooks/{forge}`: forge webhooks, verified and stored, answered at once.

Everything the request path does is cheap and local: read the body (capped), find the
repository the payload names, authenticate the exact bytes with that repository's secret,
classify the event (`Forge.parse` is pure), store it. No git and no run creation here: the
intake worker (`controller.intake`) does that off the request path, so a slow clone never makes
the forge time out and retry.

Answers (always a JSON body: the forge's "recent deliveries" page is where users debug hooks):
- 200 `{"status": "pong"}` for a ping (not stored);
- 202 `{"status": "accepted", "delivery": id}`: stored, the worker will act on it;
- 202 `{"status": "ignored", "delivery": id}`: an event Clarity does not act on (stored, `ignored`);
- 202 `{"status": "duplicate"}`: this delivery id was stored before (a redelivery makes no new run);
- 4xx `{"error": {"code", "message"}}`; nothing is stored before the signature checks out.
"""

from __future__ import annotations

from typing import Any, Mapping

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.forges import FORGES, HookError, not_acted_on
from controller.services import Services
from controller.store import deliveries as store_deliveries
from controller.store.deliveries import Deliveries
from controller.triggers.events import PingEvent

log = structlog.get_logger("clarity.hooks")

CODES = {400: "bad_delivery", 401: "unauthorized", 404: "not_found", 413: "payload_too_large",
         422: "unprocessable"}


def error(status: int, message: str, code: str | None = None) -> JSONResponse:
    """The API's error shape (same as controller/api/errors.py)."""
    return JSONResponse({"error": {"code": code or CODES.get(status, "error"), "message": message}},
                        status_code=status)


class _TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past `limit` bytes: by Content-Length before reading anything, and by
    counting while reading (a chunked body, or a lying header)."""
    declared = request.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        raise _TooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def routes(services: Services) -> list[Route]:
    store = Deliveries(services.store.engine)

    async def receive(request: Request) -> Response:
        """Receive a forge webhook (github, gitlab, gitea): verified with the repository's secret, stored, 202."""
        name = request.path_params["forge"]
        if name not in FORGES:
            return error(404, f"no forge {name!r}: use /api/v1/hooks/{{{'|'.join(sorted(FORGES))}}}", "unknown_forge")
        limit = services.settings.max_body_bytes
        try:
            body = await read_body(request, limit)
        except _TooLarge:
            return error(413, f"body is over the {limit}-byte limit (CLARITY_MAX_BODY_BYTES)")
        # The rest touches the database: off the event loop.
        return await run_in_threadpool(handle, services, store, name, dict(request.headers), body)

    return [Route("/api/v1/hooks/{forge}", receive, methods=["POST"], name="hook")]


def handle(services: Services, store: Deliveries, name: str, headers: Mapping[str, str], body: bytes) -> Response:
    forge = FORGES[name]
    try:
        delivery = forge.delivery(headers, body)
    except HookError as exc:
        return error(exc.status, exc.message)
    if delivery.repo is None:
        return error(404, "the payload names no repository (organisation-wide hooks are not supported): "
                          "add the webhook on the repository", "unknown_repo")
    try:
        repo = services.repos.get(delivery.repo)
    except LookupError:
        # Before verification, so nothing from the payload is trusted or stored.
        return error(404, f"no repository {delivery.repo!r} is registered in Clarity: add it with the "
                          f"webhook's secret", "unknown_repo")
    if repo.forge not in (name, "generic"):
        return error(400, f"{repo.name} is registered as a {repo.forge} repository, but this delivery came to "
                          f"the {name} endpoint: use /api/v1/hooks/{repo.forge}", "wrong_forge")
    try:
        forge.verify(headers, body, repo.webhook_secret)
    except HookError as exc:
        log.warning("webhook refused", forge=name, repo=repo.name, delivery=delivery.delivery_id, reason=exc.message)
        return error(exc.status, exc.message)

    state, note, status = "received", None, "accepted"
    try:
        event = forge.parse(delivery)  # pure; the worker parses the stored payload again
    except HookError as exc:
        # Authentic but unreadable: kept as failed so it shows in the delivery list.
        store.record(name, delivery.delivery_id, repo.id, delivery.event_name, _stored(delivery.payload),
                     state="failed", error=exc.message)
        return error(exc.status, exc.message)
    if isinstance(event, PingEvent):
        return JSONResponse({"status": "pong"}, status_code=200)
    if event is None:
        state, note, status = "ignored", not_acted_on(delivery.event_name, delivery.payload), "ignored"
    elif not repo.enabled:
        state, note, status = "ignored", f"repository {repo.name} is disabled", "ignored"
    row_id = store.record(name, delivery.delivery_id, repo.id, delivery.event_name, _stored(delivery.payload),
                          state=state, error=note)
    if row_id is None:
        log.info("webhook redelivered", forge=name, repo=repo.name, delivery=delivery.delivery_id)
        return JSONResponse({"status": "duplicate"}, status_code=202)
    log.info("webhook stored", forge=name, repo=repo.name, delivery=delivery.delivery_id,
             hook_event=delivery.event_name, state=state)
    if state == "received":
        store_deliveries.notify()
    answer: dict[str, Any] = {"status": status, "delivery": row_id}
    if note:
        answer["reason"] = note
    return JSONResponse(answer, status_code=202)


def _stored(payload: dict[str, Any]) -> dict[str, Any]:
    # Old Gitea/Gogs copy the hook secret into the body: never keep it where the API can show it.
    return {k: v for k, v in payload.items() if k != "secret"}
