"""Every failure of the API becomes `{"error": {"code": ..., "message": ...}}`, here and only here.

Domain code raises its own exceptions (`NotFound`, `Conflict`, `StartError`, `LeaseLost`, ...);
`exception_handlers()` maps each class to a status and a code. Bad input is always a 4xx with a
sentence naming what was wrong; anything unexpected is a 500 with a generic message, logged
with its traceback.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Callable, Mapping

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from controller.ratelimit import RateLimited
from controller.starter import StartError
from controller.store.repos import Conflict
from controller.triggers.manual import InputError
from runner.protocol import LeaseLost

log = structlog.get_logger("clarity.api")


class ApiError(Exception):
    """An error the API answers as it is: status, code, message (and headers)."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    """Malformed JSON, a missing field, a value of the wrong type: the message names the field."""


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str, *, invalid: bool = False) -> None:
        challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _code(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such path: {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = exc.detail
    return error_response(exc.status_code, _code(exc.status_code), message, exc.headers)


def _mapped(status: int, code: str) -> Callable[[Request, Exception], Response]:
    def handle(request: Request, exc: Exception) -> Response:
        return error_response(status, code, str(exc) or HTTPStatus(status).phrase)
    return handle


def _rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimited)
    return error_response(429, "too_many_requests", str(exc), {"Retry-After": str(exc.wait_s)})


def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error", method=request.method, path=request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error: the controller's log has the details")


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Response]]:
    """For `Starlette(exception_handlers=...)`. A class is matched by its MRO: the most specific wins."""
    return {
        ApiError: _api_error,
        RateLimited: _rate_limited,
        HTTPException: _http,
        LookupError: _mapped(404, "not_found"),  # includes store.runs.NotFound
        KeyError: _unexpected,  # a LookupError too, but a bug, not a missing resource
        IndexError: _unexpected,
        Conflict: _mapped(409, "conflict"),
        LeaseLost: _mapped(409, "lease_lost"),
        StartError: _mapped(422, "cannot_start"),
        InputError: _mapped(422, "invalid_input"),
        ValueError: _mapped(400, "invalid"),
        Exception: _unexpected,  # Starlette hands this one to ServerErrorMiddleware: a 500
    }
