"""`POST /api/v1/events/{name}`: a custom event, which starts every workflow with an event trigger
of that name (`- {type: event, name: NAME}`, see controller.events).

The body, a JSON object (optional), is the event's payload: the runs read it as
`${trigger.payload.KEY}`. It is kept in each run's audit, so it is held to `PAYLOAD_MAX` bytes.
"""

from __future__ import annotations

import re

from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.body import parse_object
from controller.api.errors import BadRequest, PayloadTooLarge
from controller.api.routing import ApiRoute, Call, Doc, reply, started
from controller.services import Services

PAYLOAD_MAX = 64 * 1024
NAME_MAX = 200
_BAD_NAME = re.compile(r"[\x00-\x20\x7f]")

PAYLOAD_BODY = {"type": "object", "description": "The event's payload, read by the runs as ${trigger.payload.KEY} "
                                                 f"(optional; at most {PAYLOAD_MAX} bytes)"}


def send_event(call: Call) -> Response:
    """Start the workflows that listen to a custom event."""
    name = str(call.param("name"))
    if not name or len(name) > NAME_MAX or _BAD_NAME.search(name):
        raise BadRequest(f"an event name is 1 to {NAME_MAX} characters, without spaces or control characters",
                         code="invalid_name")
    if len(call.raw) > PAYLOAD_MAX:
        raise PayloadTooLarge(f"the payload is {len(call.raw)} bytes; an event's payload is kept with each run it "
                              f"starts, and is at most {PAYLOAD_MAX} bytes")
    payload = parse_object(call.raw)
    only = call.request.query_params.get("repo")
    repo = call.services.repos.get(only) if only else None  # 404 for an unknown repository
    fired = call.services.events.custom(name, payload, by=call.by, repo=repo)
    body: dict[str, object] = {"runs": fired.runs, "started": started(call, fired.runs), "skipped": fired.skipped}
    if not fired.listening:
        where = f"of {repo.name} " if repo is not None else ""
        body["message"] = (f"no workflow {where}listens to the event '{name}' (a `type: event` trigger with "
                           f"`name: {name}` on the repository's default branch)")
    return reply(body, 202 if fired.runs else 200)


def routes(services: Services) -> list[BaseRoute]:
    return [
        ApiRoute("POST", "/api/v1/events/{name}", send_event, services, Doc(
            "Send a custom event", body=PAYLOAD_BODY, tag="events",
            query={"repo": "only the workflows of this repository (owner/name); default: every repository"},
            description="Starts every workflow whose default branch declares `- {type: event, name: NAME}`, at "
                        "that branch's head. The body (a JSON object, optional) is the payload, read as "
                        "`${trigger.payload.KEY}`. The answer lists the runs started and, per "
                        "`owner/repo:workflow file`, why a listening workflow did not run; when no workflow "
                        "listens, `runs` is empty and `message` says so.",
            responses={202: "Runs started", 200: "No run started: nothing listens (see `message`), or see `skipped`",
                       400: "Invalid name or payload", 404: "No such repository", 413: "The payload is too large"}),
            raw_body=True),
    ]
