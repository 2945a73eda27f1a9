"""`/api/v1/repos`: register, list, show, change and remove repositories; trigger a manual run.

The forge settings (where and as whom results are reported, see docs/reporting.md) are checked
here, against each other and the repository's forge. A `forge_token` is sealed with the
controller's key (controller.secretbox) before it is stored, and never shown again: only
`forge_token_set`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.body import Fields, kind
from controller.api.errors import ApiError
from controller.api.routing import ApiRoute, Call, Doc, reply, started
from controller.report import STATUS_FORGES  # the forges with a status API ("generic" has none)
from controller.secretbox import SecretBox, SecretBoxError
from controller.plugins.manifest import NAME as PLUGIN_NAME
from controller.services import Services
from controller.settings import PERMISSIONS
from controller.store.repos import FORGES, RepoRow
from controller.workflow.units import parse_duration

NAME = re.compile(r"(?!\.{1,2}/)[A-Za-z0-9_.-]+/(?!\.{1,2}$)[A-Za-z0-9_.-]+")  # no "." or ".." part
PLACEHOLDER = "{workflow}"
CONTEXT_MAX = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

FORGE_PROPERTIES: dict[str, Any] = {
    "forge_url": {"type": "string", "description": "the forge's API base URL (http or https), e.g. "
                  "https://github.example/api/v3; default: the forge's own, from `url`"},
    "forge_token": {"type": "string", "writeOnly": True, "description": "a token allowed to set commit statuses; "
                    "sealed with the controller's key and never shown again (see forge_token_set)"},
    "forge_token_file": {"type": "string", "description": "or: an absolute path, on the controller's machine, of a "
                         "file holding the token, read each time a status is sent (not with forge_token)"},
    "github_app_id": {"type": "integer", "minimum": 1, "description": "forge github: report check runs as this "
                      "GitHub App (needs github_app_key_file)"},
    "github_app_key_file": {"type": "string", "description": "absolute path, on the controller's machine, of the "
                            "App's private key (PEM)"},
    "github_installation_id": {"type": "integer", "minimum": 1, "description": "the App's installation on the "
                               "repository; default: looked up"},
    "status_context": {"type": "string", "maxLength": CONTEXT_MAX, "description": "the status' name: a fixed "
                       "string, or a template whose only placeholder is {workflow}; default: clarity/{workflow}"},
    "notes": {"type": "boolean", "default": False, "description": "write each run's result as a git note "
              "(refs/notes/clarity) and push it"},
}
BASE_PROPERTIES: dict[str, Any] = {
    "webhook_secret": {"type": "string", "description": "the secret the forge signs deliveries with"},
    "poll_interval": {"type": ["string", "number"], "description": "poll the remote this often: 60s, 5m, or seconds"},
}
PLUGIN_PERMISSIONS: dict[str, Any] = {
    "type": ["object", "null"], "propertyNames": {"pattern": PLUGIN_NAME},
    "additionalProperties": {"type": "array", "items": {"type": "string", "enum": list(PERMISSIONS)},
                             "uniqueItems": True},
    "description": "the repository's own plugin grants, {plugin: [permission, ...]} (docs/plugins.md): they "
                   "replace the controller's setting plugin_permissions, whole, for this repository; a plugin not "
                   "named gets nothing, `[]` grants nothing; null (the default): the setting applies",
    "example": {"notification": ["network", "secrets"], "storage": ["host_paths"]},
}
REPO_BODY = {
    "type": "object", "required": ["name", "url"], "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME.pattern, "description": "owner/repo, as the forge names it"},
        "url": {"type": "string", "description": "a git URL the controller can fetch (https, ssh, file)"},
        "forge": {"type": "string", "enum": list(FORGES), "default": "generic"},
        **BASE_PROPERTIES,
        **FORGE_PROPERTIES,
        "plugin_permissions": PLUGIN_PERMISSIONS,
    },
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**{k: v for k, v in schema.items() if k != "default"}, "type": [*kinds, "null"]}


PATCH_BODY = {
    "type": "object", "additionalProperties": False,
    "properties": {
        **{k: _nullable(v) for k, v in BASE_PROPERTIES.items()},
        "enabled": {"type": "boolean", "description": "false: no runs from webhooks or polling"},
        **{k: (v if v["type"] == "boolean" else _nullable(v)) for k, v in FORGE_PROPERTIES.items()},
        "plugin_permissions": {**PLUGIN_PERMISSIONS, "description": "replaces the repository's own plugin grants, "
                               "whole (send every plugin that keeps a grant); null: back to the controller's "
                               "setting plugin_permissions"},
    },
}
TRIGGER_BODY = {
    "type": "object", "required": ["ref"], "additionalProperties": False,
    "properties": {
        "ref": {"type": "string", "description": "branch, tag, refs/... or a full commit sha"},
        "workflow": {"type": "string", "description": "one workflow file, e.g. .clarity/ci.yaml (default: every "
                                                      "workflow with a manual trigger)"},
        "inputs": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
    },
}


def _name(call: Call) -> str:
    return f"{call.param('owner')}/{call.param('name')}"


def list_repos(call: Call) -> Response:
    """The registered repositories, by name."""
    return reply({"repos": [_public(call, r) for r in call.services.repos.list()]})


class SecretKeyError(ApiError):
    """The controller's secret key cannot be used: the operator's to fix, not the caller's."""

    status, code = 500, "secret_key"


def add_repo(call: Call) -> Response:
    """Register a repository."""
    f = call.fields()
    name = f.text("name")
    if not NAME.fullmatch(name):
        raise f.invalid("name", f"expected owner/repo, got {name!r}")
    url = f.text("url")
    forge = f.text("forge", "generic")
    if forge not in FORGES:
        raise f.invalid("forge", f"expected one of {', '.join(FORGES)}, got {forge!r}")
    secret = f.text("webhook_secret", None)
    interval = _interval(f)
    changes, warnings = _forge_settings(f, call, forge, None)
    grants = _plugin_permissions(f, warnings)
    f.done()
    _seal(call, changes)
    row = call.services.repos.add(name=name, url=url, forge=forge, webhook_secret=secret, poll_interval_s=interval,
                                  plugin_permissions=grants, **changes)
    return reply(_shown(call, row, warnings), 201, headers={"Location": f"/api/v1/repos/{row.name}"})


def update_repo(call: Call) -> Response:
    """Change a repository's settings: only the fields sent change, and `null` clears one."""
    f = call.fields()
    current = call.services.repos.get(_name(call))
    changes: dict[str, Any] = {}
    if "webhook_secret" in f.data:
        changes["webhook_secret"] = f.text("webhook_secret", None)
    if "poll_interval" in f.data:
        changes["poll_interval_s"] = _interval(f)
    if "enabled" in f.data:
        changes["enabled"] = _flag(f, "enabled")
    forge_changes, warnings = _forge_settings(f, call, current.forge, current)
    changes.update(forge_changes)
    if "plugin_permissions" in f.data:
        changes["plugin_permissions"] = _plugin_permissions(f, warnings)
    f.done()
    _seal(call, changes)
    row = call.services.repos.update(current.name, **changes) if changes else current
    return reply(_shown(call, row, warnings))


def _public(call: Call, row: RepoRow) -> dict[str, Any]:
    """The repository as the API shows it, with the plugin grants its runs get and where they come
    from: its own `plugin_permissions`, or the controller's setting."""
    effective = call.services.starter.grants_for(row)
    return {**row.public(),
            "effective_plugin_permissions": {p: sorted(perms) for p, perms in sorted(effective.items())},
            "plugin_permissions_source": "controller" if row.plugin_permissions is None else "repository"}


def _shown(call: Call, row: RepoRow, warnings: list[str]) -> dict[str, Any]:
    shown = _public(call, row)
    return {**shown, "warnings": warnings} if warnings else shown


def _plugin_permissions(f: Fields, warnings: list[str]) -> dict[str, list[str]] | None:
    """`plugin_permissions`: {plugin: [permission, ...]}, each permission one of PERMISSIONS
    (stored sorted, once each); None (absent or null): the controller's setting applies. A plugin
    that is not installed on the controller is accepted with a warning (it may be installed later)."""
    raw = f.raw("plugin_permissions", None)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise f.invalid("plugin_permissions", f"expected an object {{plugin: [permission, ...]}} (or null), got "
                        f"{kind(raw)}")
    grants: dict[str, list[str]] = {}
    for plugin, perms in raw.items():
        where = f"plugin_permissions.{plugin}"
        if not re.fullmatch(PLUGIN_NAME, plugin):
            raise f.invalid(where, "expected a plugin's name (lowercase letters, digits, '_' and '-', starting with a "
                                   "letter)")
        if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
            raise f.invalid(where, f"expected an array of permissions ({', '.join(PERMISSIONS)}), got "
                                   f"{kind(perms) if not isinstance(perms, list) else 'an array with a non-string'}")
        unknown = sorted(set(perms) - set(PERMISSIONS))
        if unknown:
            raise f.invalid(where, f"unknown permission(s) {', '.join(map(repr, unknown))} "
                                   f"(known: {', '.join(PERMISSIONS)})")
        grants[plugin] = sorted(set(perms))
    installed = _installed_plugins()
    if installed is not None:
        for plugin in sorted(set(grants) - installed):
            warnings.append(f"field 'plugin_permissions': plugin {plugin} is not installed on the controller; the "
                            "grant applies once it is")
    return grants


def _installed_plugins() -> set[str] | None:
    """The names of the plugins installed on the controller (None: they cannot be listed)."""
    from controller.starter import installed_plugins

    try:
        return set(installed_plugins().plugins)
    except Exception:  # noqa: BLE001 - only a warning depends on it
        return None


def _interval(f: Fields) -> float | None:
    raw = f.raw("poll_interval", None)
    try:
        return None if raw is None else parse_duration(raw)
    except ValueError as exc:
        raise f.invalid("poll_interval", str(exc)) from None


def _flag(f: Fields, name: str) -> bool:
    if f.raw(name, None) is None:
        raise f.invalid(name, "expected true or false, got null")
    return f.boolean(name, False)


def _seal(call: Call, changes: dict[str, Any]) -> None:
    """Seal a new forge_token in place (after every check: sealing may create the key file)."""
    if changes.get("forge_token") is not None:
        try:
            box = SecretBox.for_home(call.services.settings.home)
        except SecretBoxError as exc:
            raise SecretKeyError(f"the token cannot be stored: {exc}") from None
        changes["forge_token"] = box.seal(changes["forge_token"])


def _forge_settings(f: Fields, call: Call, forge: str, current: RepoRow | None) -> tuple[dict[str, Any], list[str]]:
    """The forge settings of the body as column values, checked against each other, the forge and
    what stays of `current` (a PATCH; None for a new repository, then every field counts). The
    token is still in clear: `_seal` it. Also the warnings to answer with."""
    patch = current is not None
    sent = [n for n in FORGE_PROPERTIES if n in f.data]
    warnings: list[str] = []
    home = call.services.settings.home
    ch: dict[str, Any] = {}
    for n in sent:
        if n == "forge_url":
            ch[n] = _forge_url(f)
        elif n == "forge_token":
            ch[n] = _token(f)
        elif n in ("forge_token_file", "github_app_key_file"):
            ch[n] = _file_ref(f, n, home, warnings)
        elif n in ("github_app_id", "github_installation_id"):
            ch[n] = None if f.raw(n, None) is None else f.integer(n, low=1)
        elif n == "status_context":
            ch[n] = _context(f)
        elif n == "notes":
            ch[n] = _flag(f, n) if patch else f.boolean(n, False)
    if patch:  # a new token replaces a token file and the other way round; no App, no App settings
        if ch.get("forge_token") is not None and "forge_token_file" not in ch:
            ch["forge_token_file"] = None
        if ch.get("forge_token_file") is not None and "forge_token" not in ch:
            ch["forge_token"] = None
        if "github_app_id" in ch and ch["github_app_id"] is None:
            ch.setdefault("github_app_key_file", None)
            ch.setdefault("github_installation_id", None)
    state: dict[str, Any] = {n: (getattr(current, n) if current is not None else None) for n in FORGE_PROPERTIES}
    state.update(ch)

    def first(*names: str) -> str:
        """The field to name in a complaint: the first of `names` that was sent."""
        return next((n for n in names if n in ch), names[0])

    reporting = [n for n in FORGE_PROPERTIES if n != "notes" and state[n] is not None]
    if forge not in STATUS_FORGES and reporting:
        raise f.invalid(first(*reporting), f"the {forge} forge has no status API: statuses are sent to github, "
                        "gitlab and gitea only (register the repository with its forge); git notes work with any forge")
    app = [n for n in ("github_app_id", "github_app_key_file", "github_installation_id") if state[n] is not None]
    if forge != "github" and app:
        raise f.invalid(first(*app), f"GitHub App settings are for forge github; this repository's forge is {forge}")
    if state["forge_token"] is not None and state["forge_token_file"] is not None:
        raise f.invalid(first("forge_token_file", "forge_token"), "give forge_token or forge_token_file, not both")
    if state["github_app_id"] is not None and state["github_app_key_file"] is None:
        raise f.invalid("github_app_key_file", "required with github_app_id: the App's private key (PEM)")
    if state["github_app_id"] is None and state["github_app_key_file"] is not None:
        raise f.invalid("github_app_id", "required with github_app_key_file")
    if state["github_app_id"] is None and state["github_installation_id"] is not None:
        raise f.invalid("github_installation_id", "needs github_app_id: an installation belongs to a GitHub App")
    if (current is not None and current.forge_token and "forge_token" not in ch
            and "forge_url" in ch and ch["forge_url"] != current.forge_url):
        raise f.invalid("forge_url", "the stored forge_token is only ever sent to the URL it was given for: "
                        "send forge_token again with the new forge_url (or forge_token: null)")
    return ch, warnings


def _forge_url(f: Fields) -> str | None:
    url: str | None = f.text("forge_url", None)
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is not a number raises)
    except ValueError as exc:
        raise f.invalid("forge_url", f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise f.invalid("forge_url", f"expected an http(s) URL with a host, like https://gitea.example/api/v1, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise f.invalid("forge_url", "must not hold credentials: give the token as forge_token or forge_token_file")
    if parts.query or parts.fragment or _CONTROL.search(url) or " " in url:
        raise f.invalid("forge_url", "expected a base URL, without spaces, query or fragment")
    return url.rstrip("/")


def _token(f: Fields) -> str | None:
    token: str | None = f.text("forge_token", None)
    if token is not None and (token != token.strip() or _CONTROL.search(token) or " " in token):
        raise f.invalid("forge_token", "must not contain spaces, line breaks or control characters")
    return token


def _context(f: Fields) -> str | None:
    """A fixed name, or a template whose only placeholder is {workflow}."""
    value: str | None = f.text("status_context", None)
    if value is None:
        return None
    if len(value) > CONTEXT_MAX:
        raise f.invalid("status_context", f"at most {CONTEXT_MAX} characters, got {len(value)}")
    if _CONTROL.search(value) or value != value.strip():
        raise f.invalid("status_context", "no line breaks, control characters, or spaces at either end")
    rest = value.replace(PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        other = re.search(r"\{[^{}]*\}?|\}", rest)
        assert other is not None  # there is a brace
        raise f.invalid("status_context", f"the only placeholder is {PLACEHOLDER}, got {other.group()} "
                        f"(e.g. ci/{PLACEHOLDER}, or a fixed name)")
    return value


def _file_ref(f: Fields, name: str, home: Path, warnings: list[str]) -> str | None:
    """An absolute path on the controller's machine, outside its CLARITY_HOME (the controller's own
    keys and database are never a token to send). A file that is missing or unreadable is accepted
    with a warning: it may be provisioned after the repository is registered."""
    value: str | None = f.text(name, None)
    if value is None:
        return None
    if _CONTROL.search(value):
        raise f.invalid(name, "must not contain control characters")
    if not os.path.isabs(value):
        raise f.invalid(name, f"expected an absolute path on the controller's machine, got {value!r}")
    path = Path(os.path.normpath(value))
    resolved, inside = path.resolve(), home.resolve()
    if resolved == inside or inside in resolved.parents:
        raise f.invalid(name, f"{value} is inside the controller's CLARITY_HOME ({home}), which holds its own keys: "
                        "keep the file elsewhere, e.g. /etc/clarity/")
    if path.is_dir():
        raise f.invalid(name, f"{value} is a directory, not a file")
    if not path.exists():
        warnings.append(f"field '{name}': {path} does not exist on the controller (yet); nothing is reported "
                        "until it does")
    elif not os.access(path, os.R_OK):
        warnings.append(f"field '{name}': the controller cannot read {path}; nothing is reported until it can")
    return str(path)


def get_repo(call: Call) -> Response:
    """One repository."""
    return reply(_public(call, call.services.repos.get(_name(call))))


def delete_repo(call: Call) -> Response:
    """Forget a repository (its past runs stay)."""
    call.services.repos.remove(_name(call))
    return Response(status_code=204)


def trigger(call: Call) -> Response:
    """Start the workflows of a ref by hand (a `manual` event)."""
    f = call.fields()
    ref = f.text("ref")
    workflow = f.text("workflow", None)
    if workflow is not None and "/" not in workflow:  # a bare name is in .clarity/, as `type: workflow` reads it
        workflow = f".clarity/{workflow}"
    raw_inputs = f.obj("inputs", {})
    f.done()
    inputs: dict[str, str] = {}
    for key, value in raw_inputs.items():
        if isinstance(value, bool):
            inputs[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            inputs[key] = str(value)
        else:
            raise f.invalid(f"inputs.{key}", "expected a string, a number or a boolean")
    repo = call.services.repos.get(_name(call))
    outcome = call.services.starter.manual(repo, ref=ref, workflow_file=workflow, inputs=inputs, by=call.by)
    body = {"runs": outcome.runs, "started": started(call, outcome.runs), "skipped": outcome.skipped}
    return reply(body, 201 if outcome.runs else 200)


def routes(services: Services) -> list[BaseRoute]:
    one = "/api/v1/repos/{owner}/{name}"
    return [
        ApiRoute("GET", "/api/v1/repos", list_repos, services, Doc("List repositories", tag="repos")),
        ApiRoute("POST", "/api/v1/repos", add_repo, services, Doc(
            "Register a repository", body=REPO_BODY, tag="repos",
            description="With the forge settings to report results (docs/reporting.md): `forge_token` is sealed "
                        "and never shown again (`forge_token_set`). `plugin_permissions` gives the repository its "
                        "own plugin grants, replacing the controller's setting for it (docs/plugins.md). The answer "
                        "is the repository (with `effective_plugin_permissions` and `plugin_permissions_source`: "
                        "`repository` or `controller`), with `warnings` when a file it names is missing or "
                        "unreadable, or a plugin it grants to is not installed.",
            responses={201: "Created", 400: "Invalid body", 409: "The name is registered already"})),
        ApiRoute("GET", one, get_repo, services, Doc("Show a repository", tag="repos",
                                                     responses={200: "OK", 404: "No such repository"})),
        ApiRoute("PATCH", one, update_repo, services, Doc(
            "Change a repository's settings", body=PATCH_BODY, tag="repos",
            description="Only the fields sent change; `null` clears one (`forge_token: null` forgets the token). "
                        "A new `forge_token` replaces a `forge_token_file` and the other way round. Changing "
                        "`forge_url` while a token is stored needs the token again. `plugin_permissions` replaces "
                        "the repository's own plugin grants whole; `null` goes back to the controller's setting. "
                        "The answer is the repository, with `warnings` when a file it names is missing or "
                        "unreadable, or a plugin it grants to is not installed.",
            responses={200: "Changed", 400: "Invalid body", 404: "No such repository"})),
        ApiRoute("DELETE", one, delete_repo, services, Doc("Remove a repository", tag="repos",
                                                           responses={204: "Removed", 404: "No such repository"})),
        ApiRoute("POST", one + "/trigger", trigger, services, Doc(
            "Trigger a manual run", body=TRIGGER_BODY, tag="repos",
            description="Runs every workflow of the ref that has a `manual` trigger (or the one named).",
            responses={201: "Runs created", 200: "Nothing to run (see `skipped`)", 404: "No such repository",
                       422: "The ref or workflow cannot be started, or the inputs are invalid"})),
    ]
