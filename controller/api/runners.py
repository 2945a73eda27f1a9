"""`/api/v1/runners` and `/api/v1/runner-tokens`: the admin's side of remote runner agents.

List runners (labels, capacity, last seen, what each runs now), disable or enable one; create a
one-time registration token (its secret is in the 201 answer only), list and revoke them. The
runners' own side of the protocol is `controller.api.runner`.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.errors import Forbidden
from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.services import Services
from controller.store import tables
from controller.store.runners import SEEN_S, Runners

def routes(services: Services) -> list[BaseRoute]:
    runners = Runners(services.store.engine)

    def list_runners(call: Call) -> Response:
        """The registered runners, by name, with what each runs now."""
        q = tables.queue
        with services.store.engine.connect() as conn:
            counts = sa.select(q.c.lease_owner, sa.func.count()).where(q.c.state == "leased").group_by(q.c.lease_owner)
            busy = {str(owner): int(n) for owner, n in conn.execute(counts)}
        now = time.time()
        return reply({"runners": [
            {**r.public(), "running": int(busy.get(r.name, 0)),
             "online": r.last_seen_at is not None and now - r.last_seen_at < SEEN_S and not r.disabled}
            for r in runners.list()]})

    def disable(call: Call) -> Response:
        """Disable a runner: its credential is refused from now on (its leases expire and run elsewhere)."""
        return reply(runners.disable(call.param("name")).public())

    def enable(call: Call) -> Response:
        """Enable a disabled runner again."""
        return reply(runners.enable(call.param("name")).public())

    def create_token(call: Call) -> Response:
        """Make a one-time registration token; the token is in this answer only."""
        f = call.fields()
        labels = f.texts("labels") if f.raw("labels", None) is not None else None
        f.done()
        token, secret = runners.create_token(labels)
        return reply({"token": secret, **token.public()}, 201)

    def list_tokens(call: Call) -> Response:
        """Registration tokens (prefixes only), oldest first."""
        if call.key is not None and call.key.role != "admin":
            raise Forbidden(f"API key '{call.key.name}' has role '{call.key.role}': runner tokens are for admins")
        return reply({"tokens": [t.public() for t in runners.tokens()]})

    def revoke_token(call: Call) -> Response:
        """Revoke an unused registration token."""
        runners.revoke_token(call.param("prefix"))
        return Response(status_code=204)

    return [
        ApiRoute("GET", "/api/v1/runners", list_runners, services,
                 Doc("List runners", tag="runners", responses={200: "{runners: [...]}"})),
        ApiRoute("POST", "/api/v1/runners/{name}/disable", disable, services,
                 Doc("Disable a runner", tag="runners", responses={200: "The runner", 404: "No such runner"}),
                 reads_body=False),
        ApiRoute("POST", "/api/v1/runners/{name}/enable", enable, services,
                 Doc("Enable a runner", tag="runners", responses={200: "The runner", 404: "No such runner"}),
                 reads_body=False),
        ApiRoute("POST", "/api/v1/runner-tokens", create_token, services,
                 Doc("Create a runner registration token", tag="runners", body={
                     "type": "object", "additionalProperties": False, "properties": {
                         "labels": {"type": "array", "items": {"type": "string"},
                                    "description": "labels of a runner that registers without its own"}}},
                     responses={201: "{token, prefix, labels, ...}: the token is shown only now", 400: "Bad labels"})),
        ApiRoute("GET", "/api/v1/runner-tokens", list_tokens, services,
                 Doc("List runner registration tokens", tag="runners", responses={200: "{tokens: [...]}"})),
        ApiRoute("DELETE", "/api/v1/runner-tokens/{prefix}", revoke_token, services,
                 Doc("Revoke a runner registration token", tag="runners",
                     responses={204: "Revoked", 404: "No unused token with that prefix"})),
    ]
