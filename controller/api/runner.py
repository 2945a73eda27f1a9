"""`/api/v1/runner/...`: the runner protocol (`runner.protocol`) over HTTP, for remote agents.

Each route is one verb of `runner.protocol.Peer`, with the same meaning and the same
idempotence; `runner.client.HttpPeer` is the other end. Every request carries
`Clarity-Protocol: 1`; a runner speaking another version is told so (400) instead of being
misunderstood. `LeaseLost` is a 409 with code `lease_lost`. For now a runner authenticates with an
admin API key.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.body import Fields
from controller.api.errors import BadRequest
from controller.api.metrics import Metrics
from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.services import Services
from runner.protocol import PROTOCOL_VERSION, Lease, LogLine
from runner.spec import Outcome, TaskResult

HEADER = "Clarity-Protocol"
MAX_WAIT_S = 30.0
MAX_LINES = 10_000


def check_protocol(request: Request) -> None:
    sent = request.headers.get(HEADER)
    if sent is None:
        raise BadRequest(f"the runner protocol needs the header '{HEADER}: {PROTOCOL_VERSION}'", code="protocol_version")
    if sent.strip() != str(PROTOCOL_VERSION):
        raise BadRequest(f"this controller speaks runner protocol {PROTOCOL_VERSION}, the runner sent {sent!r}: "
                         "run a runner of the controller's version", code="protocol_version")


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
        oom_killed=f.boolean("oom_killed", False),
    )
    f.done()
    return result


def routes(services: Services, metrics: Metrics) -> list[BaseRoute]:
    queue, scheduler = services.queue, services.scheduler

    def lease(call: Call) -> Response:
        """Lease one task whose labels the runner has; waits up to `wait_s` (204: nothing came)."""
        f = call.fields()
        runner = f.text("runner")
        labels = f.texts("labels")
        wait_s = f.number("wait_s", 0.0, low=0, high=MAX_WAIT_S)
        f.done()
        item = queue.lease(runner, labels, wait_s)
        if item is None:
            return Response(status_code=204)
        scheduler.leased(item)
        metrics.leased(item)
        assert item.lease_id is not None and item.lease_expires_at is not None
        return reply(Lease(item.lease_id, item.spec, item.lease_expires_at).to_json())

    def heartbeat(call: Call) -> Response:
        """Extend a lease; says whether the run was canceled."""
        f = call.fields()
        lease_id = f.text("lease_id")
        f.done()
        beat = queue.heartbeat(lease_id)
        return reply({"expires_at": beat.expires_at, "cancel": beat.cancel})

    def logs(call: Call) -> Response:
        """Store a batch of masked log lines (a batch sent twice is stored once)."""
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
        scheduler.logged(queue.check(lease_id), lines)
        return Response(status_code=204)

    def finish(call: Call) -> Response:
        """Report the task's result; ends the lease (a repeated call is a no-op)."""
        f = call.fields()
        lease_id = f.text("lease_id")
        f.obj("result")
        result = parse_result(Fields(call.body["result"], "result."))
        f.done()
        item = queue.finish(lease_id, result)
        if item is not None:  # None: this lease's result is already in (a retried call)
            scheduler.finished(item, result)
            metrics.finished(result)
        return Response(status_code=204)

    def route(verb: str, handler: Any, doc: Doc) -> ApiRoute:
        return ApiRoute("POST", f"/api/v1/runner/{verb}", handler, services, doc, before=check_protocol)

    lost = {409: "The lease is lost (expired or taken back): stop the task", 400: "Bad body or protocol version"}
    return [
        route("lease", lease, Doc("Lease a task (long poll)", tag="runner", body={
            "type": "object", "required": ["runner"], "properties": {
                "runner": {"type": "string"}, "labels": {"type": "array", "items": {"type": "string"}},
                "wait_s": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S}}},
            responses={200: "A lease: {lease_id, spec, expires_at}", 204: "Nothing to do within wait_s",
                       400: "Bad body or protocol version"})),
        route("heartbeat", heartbeat, Doc("Extend a lease", tag="runner", body={
            "type": "object", "required": ["lease_id"], "properties": {"lease_id": {"type": "string"}}},
            responses={200: "{expires_at, cancel}", **lost})),
        route("logs", logs, Doc("Send log lines", tag="runner", body={
            "type": "object", "required": ["lease_id", "lines"], "properties": {
                "lease_id": {"type": "string"}, "lines": {"type": "array", "items": {
                    "type": "object", "required": ["seq", "ts", "line"], "properties": {
                        "seq": {"type": "integer", "minimum": 1}, "ts": {"type": "number"},
                        "line": {"type": "string"}}}}}},
            responses={204: "Stored", **lost})),
        route("finish", finish, Doc("Report a task's result", tag="runner", body={
            "type": "object", "required": ["lease_id", "result"], "properties": {
                "lease_id": {"type": "string"}, "result": {"type": "object", "description": "runner.spec.TaskResult"}}},
            responses={204: "Recorded", **lost})),
    ]


def _line(entry: Fields) -> str:
    value = entry.raw("line")
    if not isinstance(value, str):
        raise entry.invalid("line", "expected a string")
    return value
