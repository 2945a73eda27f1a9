"""The client side of the commands that manage a running controller through its API: where the
controller is (--controller, CLARITY_CONTROLLER, the URL the last `clarity up` saved), its API key,
calls whose failures become user errors, and the options every such command takes."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from controller.settings import Settings

if TYPE_CHECKING:
    from controller.client import Client

DEFAULT_CONTROLLER = "http://127.0.0.1:8080"
URL_FILE = "controller-url"  # in CLARITY_HOME: where the last `clarity up`/`controller` listens


def user_error(message: str) -> Exception:
    from controller.errors import UserError

    return UserError(message)


def base_url(args: argparse.Namespace) -> str:
    """--controller, CLARITY_CONTROLLER, the one the last `clarity up` on this machine saved, or the default."""
    saved = Settings.from_env().home / URL_FILE
    url: str = (args.controller or os.environ.get("CLARITY_CONTROLLER")
                or (saved.read_text().strip() if saved.exists() else DEFAULT_CONTROLLER))
    return url.rstrip("/")


def make_client(args: argparse.Namespace) -> Client:
    from controller.client import Client, find_key

    return Client(base_url(args), find_key(Settings.from_env().home, args.api_key))


def remote_call(args: argparse.Namespace, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
    from controller.client import ClientError

    try:
        return make_client(args).call(method, path, body, params)
    except ClientError as exc:
        raise user_error(str(exc)) from None


def repo_path(name: str) -> str:
    if name.count("/") < 1:
        raise user_error(f"repository names are the forge's owner/repo, like acme/app (got {name!r})")
    return "/api/v1/repos/" + name


def print_json(value: Any) -> None:
    """--json: the API's answer as it is, for scripts."""
    print(json.dumps(value, indent=2))


def ago(ts: float | None) -> str:
    import time

    if ts is None:
        return "never"
    s = max(0.0, time.time() - ts)
    return f"{s:.0f}s ago" if s < 120 else (f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.0f}h ago")


def json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the API's answer as JSON (for scripts)")


def remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controller", metavar="URL", help=f"the controller's URL (default: CLARITY_CONTROLLER or {DEFAULT_CONTROLLER})")
    p.add_argument("--api-key", metavar="KEY", help="API key (default: CLARITY_API_KEY, CLARITY_API_KEY_FILE, or the key `clarity up` saved)")
