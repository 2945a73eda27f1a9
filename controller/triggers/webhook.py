"""`webhook` triggers: which paths can be served, and whether a payload passes a trigger's `filter`.

Pure functions, shared by the linter (a declared path Clarity cannot serve is an error in the
file) and the inbound route (`controller.api.inbound`). See docs/triggers.md.

- A path is served when it starts with `/api/v1/webhook` (`/api/v1/webhook`,
  `/api/v1/webhooks/deploy`, ...), uses only letters, digits and `- . _ ~ /`, has no empty,
  `.` or `..` segment and no trailing `/`, and is not the key API (`/api/v1/webhook-keys...`).
- A filter maps dotted paths into the JSON payload (`repository.private`, `commits.0.id`) to an
  expected value or a list of accepted values; every entry must match. Values compare as JSON
  values: `true` is not `"true"` and not `1`; `1` and `1.0` are equal; a missing path never matches.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

PREFIX = "/api/v1/webhook"  # every served path starts with it (one catch-all route serves them)
KEYS_PATH = "/api/v1/webhook-keys"  # the API that manages the keys: never a webhook
SIGNATURES = ("none", "sha256")
FILTER_PATH_PATTERN = r"^[^.\s]+(\.[^.\s]+)*$"  # dotted keys into the payload (digits index a list)
_SAFE = re.compile(r"[A-Za-z0-9._~/-]+")
MISSING: Any = object()  # what `lookup` gives for a path the payload does not have


def path_problem(path: str) -> tuple[str, str] | None:
    """Why a declared webhook path cannot be served, as (message, hint); None when it can."""
    if not path.startswith(PREFIX):
        last = path.rstrip("/").rsplit("/", 1)[-1]
        example = f"{PREFIX}s/{last}" if last and _SAFE.fullmatch(last) and last not in (".", "..") else PREFIX
        return (f"webhook path '{path}' is not served: Clarity serves inbound webhooks under {PREFIX}",
                f"e.g. path: {example} (the controller answers POST requests there)")
    if path == KEYS_PATH or path.startswith(KEYS_PATH + "/"):
        return (f"webhook path '{path}' is taken by the API that manages webhook keys",
                f"use another name, e.g. path: {PREFIX}s/deploy")
    if not _SAFE.fullmatch(path):
        bad = sorted({c for c in path if not _SAFE.fullmatch(c)})
        return (f"webhook path '{path}' has characters a path cannot use as they are: "
                f"{' '.join(repr(c) for c in bad)}", "letters, digits and - . _ ~ / only")
    if path.endswith("/"):
        return f"webhook path '{path}' ends with '/'", f"path: {path.rstrip('/')} (a request to {path} reaches it too)"
    if any(part in ("", ".", "..") for part in path[1:].split("/")):
        return f"webhook path '{path}' has an empty, '.' or '..' segment", "write the path as it is requested"
    return None


def request_path(path: str) -> str:
    """The declared path a request to `path` is for: a trailing '/' is not part of it."""
    return path.rstrip("/") or "/"


def lookup(payload: Any, path: str) -> Any:
    """The value at a dotted path of the payload; `MISSING` when there is none."""
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value



def same(value: Any, expected: Any) -> bool:
    """JSON equality: a boolean is only a boolean, null only null, a number any number."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    if value is None or expected is None:
        return value is None and expected is None
    if isinstance(value, (int, float)) and isinstance(expected, (int, float)):
        return bool(value == expected)
    return type(value) is type(expected) and bool(value == expected)


def filter_miss(rules: Mapping[str, Any] | None, payload: Mapping[str, Any]) -> str | None:
    """None when the payload passes every rule of the filter, else why it does not."""
    for path, expected in (rules or {}).items():
        accepted = expected if isinstance(expected, list) else [expected]
        value = lookup(payload, path)
        if value is MISSING:
            return f"the payload has no {path}"
        if not any(same(value, a) for a in accepted):
            shown = json.dumps(value, sort_keys=True, default=str)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            wanted = json.dumps(expected, default=str)
            return f"{path} is {shown}, not {'one of ' if isinstance(expected, list) else ''}{wanted}"
    return None
