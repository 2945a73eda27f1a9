"""Request bodies and query strings, read strictly: every complaint names the field."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import anyio.from_thread
from starlette.requests import Request

from controller.api.errors import BadRequest, PayloadTooLarge

_MISSING: Any = object()


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused past `limit` bytes: by Content-Length before reading, and by
    counting while reading (a chunked body, or a header that lies)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest(f"Content-Length is not a number: {declared!r}")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the body is {int(declared)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Upload:
    """A request body too large to hold in memory (a route with `upload`), for a handler running
    in a worker thread: `save` streams it into a file, pulling chunks from the event loop, so that
    the handler can refuse the caller before a byte is read."""

    def __init__(self, request: Request, limit: int) -> None:
        self.request, self.limit = request, limit

    def save(self, directory: Path) -> tuple[Path, int]:
        """The body in a new temporary file in `directory` (the caller moves or deletes it), and
        its size. PayloadTooLarge past the limit (the partial file is removed)."""
        declared = self.request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise BadRequest(f"Content-Length is not a number: {declared!r}")
            if int(declared) > self.limit:
                raise PayloadTooLarge(f"the body is {int(declared)} bytes; the limit is {self.limit}")
        stream = self.request.stream().__aiter__()

        async def next_chunk() -> bytes | None:
            try:
                return await stream.__anext__()
            except StopAsyncIteration:
                return None

        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".upload.", suffix=".tmp")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while (chunk := anyio.from_thread.run(next_chunk)) is not None:
                    size += len(chunk)
                    if size > self.limit:
                        raise PayloadTooLarge(f"the body is larger than the limit of {self.limit} bytes")
                    out.write(chunk)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name), size


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_object(raw: bytes) -> dict[str, Any]:
    """A JSON object; an empty body is `{}` (every field then counts as missing)."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both
        raise BadRequest(f"the body is not valid JSON: {exc}", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, got {kind(data)}")
    return data


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class Fields:
    """Typed access to a JSON object's fields. `where` prefixes names (`result.outcome`)."""

    def __init__(self, data: Mapping[str, Any], where: str = "") -> None:
        self.data, self.where = data, where
        self._seen: set[str] = set()

    def _name(self, name: str) -> str:
        return f"{self.where}{name}"

    def _get(self, name: str, default: Any) -> Any:
        self._seen.add(name)
        value = self.data.get(name, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise BadRequest(f"field '{self._name(name)}' is required", code="missing_field")
            return default
        return value

    def _wrong(self, name: str, expected: str, value: Any) -> BadRequest:
        return BadRequest(f"field '{self._name(name)}': expected {expected}, got {kind(value)}", code="invalid_field")

    def invalid(self, name: str, why: str) -> BadRequest:
        return BadRequest(f"field '{self._name(name)}': {why}", code="invalid_field")

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        """The value as sent (`default` when absent or null)."""
        return self._get(name, default)

    def text(self, name: str, default: Any = _MISSING) -> Any:
        """A non-empty string (or `default` when absent or null)."""
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self._wrong(name, "a string", value)
        if not value.strip():
            raise self.invalid(name, "must not be empty")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._wrong(name, "true or false", value)
        return value

    def number(self, name: str, default: Any = _MISSING, *, low: float | None = None,
               high: float | None = None) -> float:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self._wrong(name, "a number", value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.invalid(name, f"must be between {low} and {high}, got {value}")
        return float(value)

    def integer(self, name: str, default: Any = _MISSING, *, low: int | None = None) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(name, "a whole number", value)
        if low is not None and value < low:
            raise self.invalid(name, f"must be at least {low}, got {value}")
        return value

    def texts(self, name: str, default: Sequence[str] = ()) -> list[str]:
        value = self._get(name, list(default))
        if not isinstance(value, list):
            raise self._wrong(name, "an array of strings", value)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self._wrong(f"{name}[{i}]", "a string", item)
        return list(value)

    def objects(self, name: str) -> list[Fields]:
        value = self._get(name, _MISSING)
        if not isinstance(value, list):
            raise self._wrong(name, "an array of objects", value)
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self._wrong(f"{name}[{i}]", "an object", item)
            out.append(Fields(item, f"{self._name(name)}[{i}]."))
        return out

    def obj(self, name: str, default: Any = _MISSING) -> dict[str, Any]:
        value = self._get(name, default)
        if not isinstance(value, dict):
            raise self._wrong(name, "an object", value)
        return value

    def done(self) -> None:
        """Refuse fields nobody asked for: a typo must not pass silently."""
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(self._name(u) for u in unknown)}", code="unknown_field")


def query_int(request: Request, name: str, default: int | None, *, low: int, high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        limits = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise BadRequest(f"query parameter '{name}': expected a whole number {limits}, got {raw!r}",
                         code="invalid_query")
    return int(raw)
