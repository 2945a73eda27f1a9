"""`ApiRoute`: one operation of the API, with its auth, its body handling and its documentation.

A handler is a plain function `handler(call) -> Response`; it runs in a worker thread (the store
and the queue are blocking), after the route has authenticated the caller and read the JSON body
within `settings.max_body_bytes`. The `doc` feeds the OpenAPI document (`controller.api.openapi`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.api.auth import authenticate
from controller.api.body import Fields, Upload, parse_object, read_body
from controller.api.errors import Unauthorized
from controller.services import Services
from controller.store.repos import ApiKey


@dataclass(frozen=True)
class Doc:
    """What the OpenAPI document says about an operation."""

    summary: str
    description: str = ""
    body: Mapping[str, Any] | None = None  # JSON Schema of the request body
    query: Mapping[str, str] = field(default_factory=dict)  # name -> description
    responses: Mapping[int, str] = field(default_factory=lambda: {200: "OK"})
    tag: str = "api"
    media: str = "application/json"  # the media type of the request body


@dataclass(frozen=True)
class Call:
    """One request, as a handler sees it."""

    request: Request
    services: Services
    key: ApiKey | None
    body: dict[str, Any]
    raw: bytes = b""  # the body as it came, for a route with `raw_body` (the JSON `body` is then empty)
    upload: Upload | None = None  # the body, unread, for a route with `upload` (a limit in bytes)

    def fields(self) -> Fields:
        return Fields(self.body)

    def param(self, name: str) -> Any:
        value = self.request.path_params[name]
        if isinstance(value, int) and not 0 <= value < 2**63:  # no such row can exist
            raise LookupError(f"no {name} {value}")
        return value

    @property
    def by(self) -> str:
        return f"api-key:{self.key.name}" if self.key is not None else "anonymous"


Handler = Callable[[Call], Response]


class ApiRoute(Route):
    def __init__(self, method: str, path: str, handler: Handler, services: Services, doc: Doc, *,
                 public: bool = False, reads_body: bool | None = None, raw_body: bool = False,
                 upload: int | None = None, before: Callable[[Request], None] | None = None) -> None:
        self.doc, self.public = doc, public
        wants_body = method in ("POST", "PUT", "PATCH") if reads_body is None else reads_body
        limit = services.settings.max_body_bytes

        async def endpoint(request: Request) -> Response:
            if before is not None:
                before(request)
            key = None if public else await run_in_threadpool(_authenticate, services, request)
            if upload is not None:  # streamed by the handler, after it has checked who is sending
                return await run_in_threadpool(handler, Call(request, services, key, {}, upload=Upload(request, upload)))
            if raw_body:  # not JSON: handed over as bytes, within the same limit
                return await run_in_threadpool(handler, Call(request, services, key, {}, await read_body(request, limit)))
            body = parse_object(await read_body(request, limit)) if wants_body else {}
            return await run_in_threadpool(handler, Call(request, services, key, body))

        endpoint.__doc__ = handler.__doc__
        super().__init__(path, endpoint, methods=[method], name=handler.__name__)


def _authenticate(services: Services, request: Request) -> ApiKey:
    """The request's API key (`authenticate`), counted against the rate limit: per key, or per client
    address when the key is missing or bad."""
    try:
        key = authenticate(services.keys, request)
    except Unauthorized:
        address = request.client.host if request.client is not None else "unknown"
        services.limiter.hit(f"address:{address}", f"the address {address}, without a valid API key,")
        raise
    services.limiter.hit(f"key:{key.id}", f"API key '{key.name}'")
    return key


def started(call: Call, run_ids: list[int]) -> list[dict[str, Any]]:
    """The runs a request started, each as a line of it needs to be shown: id, repository,
    workflow, file and state (so a client need not read each back)."""
    runs = [call.services.store.get_run(i) for i in run_ids]
    return [{"id": r.id, "repo": r.repo, "workflow": r.workflow, "workflow_file": r.workflow_file, "state": r.state}
            for r in runs]


def reply(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status, headers=headers)
