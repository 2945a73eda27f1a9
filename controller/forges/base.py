"""The contract of a forge's webhook side, and the helpers every forge shares.

How the API layer uses a forge (`POST /api/v1/hooks/{forge}`):

1. `delivery(headers, body)`: read the event and delivery-id headers and the JSON body. Only
   to learn which repository the body claims to be about, so its secret can be looked up;
   nothing in it is trusted yet.
2. `verify(headers, body, secret)`: authenticate the raw bytes against that repository's
   secret. Raises `Unauthorized` (401) on any doubt, including when no secret is configured:
   an unauthenticated hook would let anyone on the network start builds, so Clarity refuses
   it and says to set a secret rather than accepting silently.
3. `parse(delivery)`: the neutral event, or None for an event Clarity ignores (issue
   comments, labels, `create`...). The caller answers 202 with `{"status": "ignored"}` for
   None and 202 with the delivery id otherwise: always a body, because the forge's
   "recent deliveries" page is where a user debugs a hook, and a 204 shows them nothing.

`BadDelivery` and `Unauthorized` carry their HTTP status, so one handler maps them.
Implementations are stateless and safe to share between threads and requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Mapping, Protocol

from controller.triggers.events import Delivery, Event

# GitHub's own cap ("a webhook will not be fired" above 25 MB); beyond it, not a forge.
MAX_BODY = 25 * 1024 * 1024


class HookError(Exception):
    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadDelivery(HookError):
    """The request is not a delivery Clarity can read (400, 413, 422)."""


class Unauthorized(HookError):
    """The delivery could not be authenticated (401). The message never echoes a secret."""

    status = 401


class Forge(Protocol):
    """One forge's webhooks: read, authenticate, and translate deliveries to neutral events.

    All three methods are pure (no I/O, no state) and may be called concurrently. The caller
    must call `verify` before acting on anything `parse` returns.
    """

    name: str

    def delivery(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """Read the headers and JSON body. `BadDelivery(400)` for a missing event header or a
        body that is not a JSON object; an unknown event name is still a Delivery (`parse`
        decides). Header names are matched case-insensitively."""
        ...

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> None:
        """Authenticate `body` (the exact bytes received) with the repository's secret, in
        constant time (`hmac.compare_digest`). `Unauthorized` when the signature or token is
        missing, empty or wrong, and when `secret` is None or empty."""
        ...

    def parse(self, delivery: Delivery) -> Event | None:
        """The neutral event of a verified delivery, or None when Clarity ignores it.
        `BadDelivery(422)` when a field an event needs is missing."""
        ...


def header(headers: Mapping[str, str], *names: str) -> str | None:
    """The first of `names` present (case-insensitively); a blank value counts as absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value is not None and value.strip():
            return value.strip()
    return None


def read_delivery(forge: str, headers: Mapping[str, str], body: bytes, *, event_headers: tuple[str, ...],
                  id_headers: tuple[str, ...], repo_path: tuple[str, ...]) -> Delivery:
    event = header(headers, *event_headers)
    if event is None:
        raise BadDelivery(f"missing {event_headers[0]} header: is this a {forge} webhook?")
    payload = decode_body(body)
    repo: Any = payload
    for key in repo_path:
        repo = repo.get(key) if isinstance(repo, dict) else None
    # A forge that sends no id still gets deduplicated: identical bytes are the same delivery.
    delivery_id = header(headers, *id_headers) or "sha256:" + hashlib.sha256(body).hexdigest()
    return Delivery(forge=forge, delivery_id=delivery_id, event_name=event,
                    repo=repo if isinstance(repo, str) and repo else None, payload=payload)


def decode_body(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY:
        raise BadDelivery(f"body of {len(body)} bytes is over the {MAX_BODY}-byte limit", 413)
    if body.startswith(b"payload="):
        raise BadDelivery("body is form-encoded: set the webhook's content type to application/json")
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadDelivery("body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadDelivery(f"body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(payload, dict):
        raise BadDelivery(f"body is JSON but not an object (got {type(payload).__name__})")
    return payload


def require_secret(secret: str | None, forge: str) -> bytes:
    # An empty key would make every HMAC computable by anyone: treat it as no secret at all.
    if not secret:
        raise Unauthorized(f"no webhook secret is set for this repository in Clarity: set one, and the "
                           f"same secret on the {forge} webhook (unauthenticated hooks are refused)")
    return secret.encode("utf-8")


def same(given: str, expected: str | bytes) -> bool:
    """Constant-time equality; bytes so a non-ASCII header cannot raise inside compare_digest."""
    want = expected.encode("utf-8") if isinstance(expected, str) else expected
    return hmac.compare_digest(given.encode("utf-8", "replace"), want)


def check_hmac_sha256(given: str | None, body: bytes, key: bytes, *, header_name: str, prefix: str = "") -> None:
    if given is None:
        raise Unauthorized(f"missing {header_name} header: the webhook has no secret on the forge side")
    expected = prefix + hmac.new(key, body, hashlib.sha256).hexdigest()
    # Hex case carries no secret; forges send lowercase but a proxy might not.
    if not same(given.lower(), expected):
        raise Unauthorized(f"{header_name} does not match the body signed with this repository's secret")
