"""The command line's client of a running controller's API (`--controller`, `CLARITY_API_KEY`)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
KEY_FILE = "api-key"  # in CLARITY_HOME: written by `clarity up` when it made the first key


class ClientError(Exception):
    """The controller refused or could not be reached: a sentence for the user."""


def find_key(home: Path, explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if os.environ.get("CLARITY_API_KEY"):
        return os.environ["CLARITY_API_KEY"]
    if os.environ.get("CLARITY_API_KEY_FILE"):
        return Path(os.environ["CLARITY_API_KEY_FILE"]).read_text().strip()
    saved = home / KEY_FILE
    return saved.read_text().strip() if saved.exists() else None


class Client:
    def __init__(self, base_url: str, api_key: str | None, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        ca_file = os.environ.get("CLARITY_CA_FILE")  # a controller served over HTTPS with a private CA
        try:
            verify: Any = ssl.create_default_context(cafile=ca_file) if ca_file else True
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"CLARITY_CA_FILE={ca_file}: {getattr(exc, 'strerror', None) or exc}") from None
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, verify=verify)

    def call(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach the controller at {self.base_url} ({exc}); is it running? "
                              "(`clarity up`, or --controller URL)") from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                message = error.get("message") or error.get("code")
            except (ValueError, KeyError, TypeError):
                message = response.text[:200] or response.reason_phrase
            if response.status_code == 401:
                message += " (set CLARITY_API_KEY, or pass --api-key; `clarity apikey create` makes one)"
            raise ClientError(f"{response.status_code}: {message}")
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
