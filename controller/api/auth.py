"""API keys: `Authorization: Bearer <key>`. Role `read` may only read; `admin` may do anything."""

from __future__ import annotations

from starlette.requests import Request

from controller.api.errors import Forbidden, Unauthorized
from controller.store.repos import ApiKey, ApiKeys

READ_METHODS = frozenset({"GET", "HEAD"})


def authenticate(keys: ApiKeys, request: Request) -> ApiKey:
    """The live key of the request, allowed to do what the request does; Unauthorized (401) or
    Forbidden (403) otherwise. The key is compared in constant time (`ApiKeys.check`)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <key>'", invalid=True)
    key = keys.check(token)
    if key is None:
        raise Unauthorized("the API key is not valid (unknown or revoked)", invalid=True)
    if request.method not in READ_METHODS and key.role != "admin":
        raise Forbidden(f"API key '{key.name}' has role '{key.role}': it may only read")
    return key
