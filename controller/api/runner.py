"""`/api/v1/runner/...`: the runner protocol (`runner.protocol`) over HTTP, for remote agents.

Each route is one verb of `runner.protocol.Peer`, with the same meaning and the same
idempotence; `runner.client.HttpPeer` is the other end. Every request carries
`Clarity-Protocol: 1`; a runner speaking another version is told so (400) instead of being
misunderstood. `LeaseLost` is a 409 with code `lease_lost`.

A runner registers once (`register`: a one-time registration token for its own credential,
`controller.store.runners`); every other call carries `Authorization: Bearer <credential>`. A bad,
unknown or disabled runner's credential is a 401 (and a warning in the controller's log). A runner
leases with the labels it registered with, under its registered name, and may act only on its own
leases: a lease of another runner is, to it, a lost one (409), so it never sees that task's spec,
secrets included.

Artifacts travel through the controller, since a downstream task may run on another machine: a
runner uploads a task's collected artifacts (`PUT /api/v1/runner/artifacts?lease=...`, a tar.gz)
before it reports the task, and reports the answered ref (`controller:<run_id>/<task>`) as the
result's `artifacts_dir`; the runner of a downstream task downloads them by that ref (`GET`). Both
need a live lease of the caller; a download, a ref of the lease's run (or one the leased task's
spec names: a rerun reuses the artifacts of an earlier run).

The controller proves itself in turn: every answer to a runner that sent a `Clarity-Nonce` is
signed (`Clarity-Signature`, `runner.signature`) with the key of the credential it authenticated,
or of the registration token; a lost lease (409) too, since a runner stops its task on one.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from controller import artifacts
from controller.api.body import Fields
from controller.api.errors import BadRequest, Forbidden, Unauthorized, error_response
from controller.api.metrics import Metrics
from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.services import Services
from controller.store.queue import Item
from controller.store.runners import Runner, Runners, TokenRefused
from runner import signature
from runner.protocol import PROTOCOL_VERSION, Lease, LeaseLost, LogLine
from runner.spec import Outcome, TaskResult

HEADER = "Clarity-Protocol"
SUPPORTED = (PROTOCOL_VERSION,)
MAX_WAIT_S = 30.0
MAX_LINES = 10_000
CHUNK = 1 << 16

log = structlog.get_logger("clarity.api.runner")


class RunnerUnauthorized(Unauthorized):
    """A request of the runner protocol without a live runner credential."""


class TokenUnauthorized(Unauthorized):
    """A registration with a bad, revoked or used registration token."""

    code = "invalid_token"


def check_protocol(request: Request) -> None:
    sent = request.headers.get(HEADER)
    versions = ", ".join(str(v) for v in SUPPORTED)
    if sent is None:
        raise BadRequest(f"the runner protocol needs the header '{HEADER}: {PROTOCOL_VERSION}' "
                         f"(this controller supports runner protocol {versions})", code="protocol_version")
    if sent.strip() not in {str(v) for v in SUPPORTED}:
        raise BadRequest(f"this controller speaks runner protocol {versions}, the runner sent {sent!r}: "
                         "upgrade the runner (or the controller) to the same Clarity version", code="protocol_version")


def authenticate_runner(runners: Runners, request: Request) -> Runner:
    """The enabled runner whose credential the request carries; RunnerUnauthorized (401, and a
    warning in the log) otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    ip = request.client.host if request.client else None
    if scheme.lower() != "bearer" or not credential:
        log.warning("runner call without a credential", path=request.url.path, ip=ip)
        raise RunnerUnauthorized("a runner credential is required: send 'Authorization: Bearer <credential>' "
                                 "(register the runner with `clarity runner --token ...`)", invalid=bool(header))
    runner = runners.check(credential)
    if runner is None:
        log.warning("runner credential refused", path=request.url.path, ip=ip, prefix=credential[:13])
        raise RunnerUnauthorized("the runner credential is not valid (unknown, or the runner is disabled): "
                                 "ask an admin (`clarity runners list`), or register again with a new token",
                                 invalid=True)
    runners.touch(runner, ip)
    request.state.sign_key = runner.key
    return runner


def _verb(path: str) -> str:
    """What a signature covers of the path: the verb after `/api/v1/runner/`, whatever prefix a
    proxy in between adds or strips."""
    return path.rsplit("/api/v1/runner/", 1)[-1]


def _nonce(request: Request) -> str | None:
    nonce = request.headers.get(signature.NONCE_HEADER)
    return nonce if nonce is not None and signature.NONCE.fullmatch(nonce) else None


def seal(request: Request, response: Response) -> Response:
    """Sign the answer for a runner that sent a nonce and proved who it is (`sign_key` is set by
    the authentication of the call); anything else is left as it is."""
    key, nonce = getattr(request.state, "sign_key", None), _nonce(request)
    if key and nonce and signature.SIGNATURE_HEADER not in response.headers and hasattr(response, "body"):
        response.headers[signature.SIGNATURE_HEADER] = signature.sign(
            key, request.method, _verb(request.url.path), nonce, response.status_code, bytes(response.body))
    return response


def sealed(handler: Any) -> Any:
    """The handler, its answers signed, a lost lease included (mapped to its 409 here, so that
    the runner can trust it)."""
    def run(call: Call) -> Response:
        try:
            response = handler(call)
        except LeaseLost as exc:
            response = error_response(409, "lease_lost", str(exc))
        return seal(call.request, response)

    run.__name__, run.__doc__ = handler.__name__, handler.__doc__
    return run


def _own(item: Item, runner: Runner) -> Item:
    """The item, if this runner holds its lease; to any other runner the lease is lost."""
    if item.lease_owner != runner.name:
        log.warning("runner acted on a lease it does not hold", runner=runner.name, lease_owner=item.lease_owner,
                    run=item.run_id, task=item.task)
        raise LeaseLost(f"lease {item.lease_id} is not held by runner {runner.name}")
    return item


def _optional(f: Fields, name: str, types: tuple[type, ...], expected: str) -> Any:
    value = f.raw(name, None)
    if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
        raise f.invalid(name, f"expected {expected}")
    return value


def parse_result(f: Fields) -> TaskResult:
    outcome = f.text("outcome")
    if outcome not in {o.value for o in Outcome}:
        raise f.invalid("outcome", f"expected one of {', '.join(o.value for o in Outcome)}, got {outcome!r}")
    number = (int, float)
    outputs = f.obj("outputs", {})
    if not all(isinstance(v, str) for v in outputs.values()):
        raise f.invalid("outputs", "expected an object of strings")
    result = TaskResult(
        outcome=Outcome(outcome), exit_code=_optional(f, "exit_code", (int,), "a whole number or null"),
        started_at=_optional(f, "started_at", number, "a number or null"),
        finished_at=_optional(f, "finished_at", number, "a number or null"),
        output=f.raw("output", None), outputs=outputs,
        artifacts_dir=_optional(f, "artifacts_dir", (str,), "a string or null"),
        error=_optional(f, "error", (str,), "a string or null"),
        oom_killed=f.boolean("oom_killed", False), retryable=f.boolean("retryable", True),
    )
    f.done()
    return result


def routes(services: Services, metrics: Metrics) -> list[BaseRoute]:
    queue, scheduler = services.queue, services.scheduler
    runners = Runners(services.store.engine)

    def me(call: Call) -> Runner:
        return authenticate_runner(runners, call.request)

    def owned(runner: Runner, lease_id: str) -> Item:
        return _own(queue.get(lease_id), runner)

    def register(call: Call) -> Response:
        """Trade a one-time registration token for the runner's own credential (shown once)."""
        f = call.fields()
        token = f.text("token")
        name = f.text("name")
        labels = f.texts("labels") if f.raw("labels", None) is not None else None
        capacity = f.integer("capacity", 1, low=1)
        version = _optional(f, "version", (str,), "a string or null")
        f.done()
        try:
            runner, credential = runners.register(token, name, labels, capacity, version)
        except TokenRefused as exc:
            ip = call.request.client.host if call.request.client else None
            log.warning("runner registration refused", name=name, ip=ip, reason=str(exc))
            raise TokenUnauthorized(str(exc), invalid=True) from None
        call.request.state.sign_key = signature.key_of(token)
        log.info("runner registered", runner=runner.name, labels=list(runner.labels), capacity=runner.capacity,
                 version=runner.version)
        return reply({"credential": credential, "runner": runner.public()}, 201)

    def hello(call: Call) -> Response:
        """Who the controller takes the runner for: its registration (name, labels, capacity)."""
        runner = me(call)
        call.fields().done()
        return reply(runner.public())

    def lease(call: Call) -> Response:
        """Lease one task whose labels are all among the runner's registered labels; waits up to
        `wait_s` (204: nothing came). `runner` and `labels` of the body are ignored: the
        controller knows who the runner is."""
        runner = me(call)
        f = call.fields()
        f.raw("runner", None)
        f.texts("labels")
        wait_s = f.number("wait_s", 0.0, low=0, high=MAX_WAIT_S)
        f.done()
        item = queue.lease(runner.name, runner.labels, wait_s)
        if item is None:
            return Response(status_code=204)
        scheduler.leased(item)
        metrics.leased(item)
        assert item.lease_id is not None and item.lease_expires_at is not None
        return reply(Lease(item.lease_id, item.spec, item.lease_expires_at).to_json())

    def heartbeat(call: Call) -> Response:
        """Extend a lease; says whether the run was canceled."""
        runner = me(call)
        f = call.fields()
        lease_id = f.text("lease_id")
        f.done()
        owned(runner, lease_id)
        beat = queue.heartbeat(lease_id)
        return reply({"expires_at": beat.expires_at, "cancel": beat.cancel})

    def logs(call: Call) -> Response:
        """Store a batch of masked log lines (a batch sent twice is stored once)."""
        runner = me(call)
        f = call.fields()
        lease_id = f.text("lease_id")
        lines = []
        entries = f.objects("lines")
        if len(entries) > MAX_LINES:
            raise f.invalid("lines", f"at most {MAX_LINES} lines a batch, got {len(entries)}")
        for entry in entries:
            lines.append(LogLine(seq=entry.integer("seq", low=1), ts=entry.number("ts"), line=_line(entry)))
            entry.done()
        f.done()
        owned(runner, lease_id)
        scheduler.logged(queue.check(lease_id), lines)
        return Response(status_code=204)

    def finish(call: Call) -> Response:
        """Report the task's result; ends the lease (a repeated call is a no-op)."""
        runner = me(call)
        f = call.fields()
        lease_id = f.text("lease_id")
        f.obj("result")
        result = parse_result(Fields(call.body["result"], "result."))
        f.done()
        owned(runner, lease_id)
        item = queue.finish(lease_id, result)
        if item is not None:  # None: this lease's result is already in (a retried call)
            scheduler.finished(item, result)
            metrics.finished(result)
        return Response(status_code=204)

    home = services.settings.home

    def _lease_param(call: Call) -> str:
        lease_id = call.request.query_params.get("lease", "")
        if not lease_id:
            raise BadRequest("the query parameter 'lease' (the lease id) is required")
        return lease_id

    def put_artifacts(call: Call) -> Response:
        """Store the collected artifacts (a tar.gz) of the task this runner holds the lease of."""
        runner = me(call)
        item = _own(queue.check(_lease_param(call)), runner)  # before a byte of the body is read
        assert call.upload is not None
        upload, size = call.upload.save(artifacts.incoming(home))
        try:
            if size == 0:
                raise BadRequest("the body is empty: send the artifacts as a tar.gz")
            ref = artifacts.ref(item.run_id, item.task)
            artifacts.adopt(home, ref, upload)
        finally:
            upload.unlink(missing_ok=True)
        log.info("artifacts stored", runner=runner.name, run=item.run_id, task=item.task, bytes=size)
        return reply({"ref": ref}, 201)

    def get_artifacts(call: Call) -> Response:
        """The artifacts (a tar.gz) of a task of the run whose task this runner holds the lease of."""
        runner = me(call)
        item = _own(queue.check(_lease_param(call)), runner)
        ref = call.request.query_params.get("ref", "")
        try:
            run_id, _task = artifacts.parse(ref)
        except artifacts.BadRef as exc:
            raise BadRequest(str(exc), code="invalid_ref") from None
        path = artifacts.path(home, ref)
        named = {a.source for a in item.spec.artifacts_in}
        if run_id != item.run_id and ref not in named:
            log.warning("runner asked for artifacts of another run", runner=runner.name, run=item.run_id, ref=ref)
            raise Forbidden(f"lease {item.lease_id} is of run {item.run_id}: no artifacts of another run")
        try:
            f = open(path, "rb")  # one open file, signed then sent: a new upload meanwhile changes neither
        except FileNotFoundError:
            raise LookupError(f"no artifacts {ref}") from None
        headers = {}
        nonce = _nonce(call.request)
        if nonce:
            headers[signature.SIGNATURE_HEADER] = signature.sign(
                runner.key, "GET", _verb(call.request.url.path), nonce, 200, iter(lambda: f.read(CHUNK), b""))
            f.seek(0)

        def chunks() -> Any:
            with f:
                yield from iter(lambda: f.read(CHUNK), b"")

        return StreamingResponse(chunks(), media_type="application/gzip", headers=headers)

    def route(verb: str, handler: Any, doc: Doc) -> ApiRoute:
        # `public`: not an API key; the handler checks the runner's credential (or, for register,
        # the registration token) itself.
        return ApiRoute("POST", f"/api/v1/runner/{verb}", sealed(handler), services, doc, before=check_protocol,
                        public=True)

    auth = "Authenticated with `Authorization: Bearer <runner credential>` (from /api/v1/runner/register)."
    refused = {401: "No runner credential, or a bad one (unknown, or the runner is disabled)"}
    lost = {409: "The lease is lost (expired, taken back, or another runner's): stop the task",
            400: "Bad body or protocol version", **refused}
    return [
        route("register", register, Doc(
            "Register a runner", description="A one-time registration token (POST /api/v1/runner-tokens) for "
            "the runner's own credential, shown only in this answer. Without `labels`, the token's labels.",
            tag="runner", body={
                "type": "object", "required": ["token", "name"], "properties": {
                    "token": {"type": "string"}, "name": {"type": "string"},
                    "labels": {"type": "array", "items": {"type": "string"}},
                    "capacity": {"type": "integer", "minimum": 1}, "version": {"type": "string"}}},
            responses={201: "{credential, runner}", 400: "Bad body or protocol version",
                       401: "The registration token is unknown, revoked or used already",
                       409: "A runner of that name exists"})),
        route("hello", hello, Doc("Check a runner's credential", description=auth + " The runner's registration: "
                                  "name, labels, capacity.", tag="runner", body={"type": "object"},
                                  responses={200: "The runner", 400: "Protocol version", **refused})),
        route("lease", lease, Doc("Lease a task (long poll)", description=auth, tag="runner", body={
            "type": "object", "properties": {
                "runner": {"type": "string"}, "labels": {"type": "array", "items": {"type": "string"}},
                "wait_s": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S}}},
            responses={200: "A lease: {lease_id, spec, expires_at}", 204: "Nothing to do within wait_s",
                       400: "Bad body or protocol version", **refused})),
        route("heartbeat", heartbeat, Doc("Extend a lease", description=auth, tag="runner", body={
            "type": "object", "required": ["lease_id"], "properties": {"lease_id": {"type": "string"}}},
            responses={200: "{expires_at, cancel}", **lost})),
        route("logs", logs, Doc("Send log lines", description=auth, tag="runner", body={
            "type": "object", "required": ["lease_id", "lines"], "properties": {
                "lease_id": {"type": "string"}, "lines": {"type": "array", "items": {
                    "type": "object", "required": ["seq", "ts", "line"], "properties": {
                        "seq": {"type": "integer", "minimum": 1}, "ts": {"type": "number"},
                        "line": {"type": "string"}}}}}},
            responses={204: "Stored", **lost})),
        route("finish", finish, Doc("Report a task's result", description=auth, tag="runner", body={
            "type": "object", "required": ["lease_id", "result"], "properties": {
                "lease_id": {"type": "string"}, "result": {"type": "object", "description": "runner.spec.TaskResult"}}},
            responses={204: "Recorded", **lost})),
        ApiRoute("PUT", "/api/v1/runner/artifacts", sealed(put_artifacts), services, Doc(
            "Upload a task's artifacts", description=auth + " The body is a tar.gz of the task's collected "
            "artifacts (paths relative to the workspace), at most `max_artifact_bytes`, streamed to disk; stored for "
            "the leased task, "
            "replacing an earlier attempt's. Report the answered ref as the result's `artifacts_dir`.",
            tag="runner", body={"type": "string", "format": "binary"}, media="application/gzip",
            query={"lease": "The lease id (required)"},
            responses={201: "{ref}: controller:<run_id>/<task>", 413: "The body is larger than max_artifact_bytes",
                       **lost}), before=check_protocol, public=True, upload=services.settings.max_artifact_bytes),
        ApiRoute("GET", "/api/v1/runner/artifacts", sealed(get_artifacts), services, Doc(
            "Download a task's artifacts", description=auth + " The tar.gz stored for `ref`, a ref of the "
            "lease's run (or one named by the leased task's spec).", tag="runner",
            query={"lease": "The lease id (required)", "ref": "controller:<run_id>/<task> (required)"},
            responses={200: "The tar.gz", 403: "A ref of another run", 404: "No artifacts stored for ref",
                       **lost}), before=check_protocol, public=True),
    ]


def _line(entry: Fields) -> str:
    value = entry.raw("line")
    if not isinstance(value, str):
        raise entry.invalid("line", "expected a string")
    return value
