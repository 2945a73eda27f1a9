"""Inbound webhooks: `POST /api/v1/webhook...` starts the workflow whose `webhook` trigger declares
that path, for a caller holding that workflow file's webhook key; and `/api/v1/webhook-keys`, where
admins make, list and revoke the keys. See docs/triggers.md.

A request to a served path (the declared `path`; a trailing '/' does not count) carries the key
as `Authorization: Bearer clwh_...` or `X-Clarity-Key: clwh_...`, and, when the trigger says
`signature: sha256`, `X-Clarity-Signature: sha256=<hex HMAC-SHA256 of the raw body with the key>`.
The key names its row by its prefix; the row's sealed key is opened and compared with the one
presented in constant time; the triggers at the path must include one of the key's (repository,
workflow file). Answers:

- 202 `{"runs": [id], "delivery": ...}`: a run started;
- 204: authenticated, but the trigger's `filter` does not match the payload (no run);
- 400: the body is not a JSON object (an empty body is `{}`); 413 past `max_body_bytes`;
- 404 `{"error": {"code": "not_found", ...}}` for ANY authentication failure: no key, an
  unknown, wrong or revoked key, a key of another workflow, no trigger at the path, a missing or
  bad signature. The body is the same whichever part was wrong, and the same work is done
  (one key lookup, one trigger lookup, one unsealing, one HMAC, constant-time comparisons) before
  the answer is chosen; the reason is logged on the controller only;
- 409: the repository is disabled; 422: the run cannot start (e.g. the branch is gone).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import uuid
from typing import Any

import structlog
from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.body import parse_object
from controller.api.errors import ApiError, BadRequest, Forbidden, error_response
from controller.api.repos import SecretKeyError
from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.secretbox import SecretBox, SecretBoxError
from controller.services import Services
from controller.store.triggers import TriggerRow, Triggers
from controller.store.webhook_keys import KEY_PREFIX, WebhookKey, WebhookKeys, prefix_of
from controller.triggers.webhook import KEYS_PATH, PREFIX, filter_miss, request_path

log = structlog.get_logger("clarity.inbound")

WORKFLOW_FILE = re.compile(r"\.clarity/[^/\x00-\x1f]+\.ya?ml")
NAME_MAX = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DELIVERY = re.compile(r"[\x21-\x7e]{1,200}")  # an X-Request-Id we keep as the delivery id
SIGNATURE_HEADER = "x-clarity-signature"
KEY_HEADER = "x-clarity-key"

KEY_BODY = {
    "type": "object", "required": ["repo", "workflow"], "additionalProperties": False,
    "properties": {
        "repo": {"type": "string", "description": "the repository (owner/repo)"},
        "workflow": {"type": "string", "description": "the workflow file whose webhook triggers the key starts, "
                                                      "e.g. .clarity/deploy.yaml (a bare name is read in .clarity/)"},
        "name": {"type": "string", "maxLength": NAME_MAX, "description": "who or what uses the key; runs say "
                 "`webhook-key:<name>` (default: the key's prefix)"},
    },
}


class RepoDisabled(ApiError):
    status, code = 409, "repo_disabled"


def not_found(path: str) -> Response:
    """The one answer to every authentication failure at `path`."""
    return error_response(404, "not_found", f"no webhook at {path} for this request: check the path, the key "
                                            "(Authorization: Bearer clwh_... or X-Clarity-Key) and, if the trigger "
                                            "asks for one, the signature (X-Clarity-Signature: sha256=...)")


class Inbound:
    """The checks of an inbound request, with the controller's secret box (made on first use)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.keys = WebhookKeys(services.store.engine)
        self.triggers = Triggers(services.store.engine)
        self._box: tuple[SecretBox, str] | None = None
        self._lock = threading.Lock()

    def box(self) -> tuple[SecretBox, str]:
        """The controller's box, and a decoy sealed key (opened when the presented key has no row,
        so that every request unseals one key)."""
        with self._lock:
            if self._box is None:
                try:
                    box = SecretBox.for_home(self.services.settings.home)
                except SecretBoxError as exc:
                    raise SecretKeyError(f"webhook keys cannot be checked: {exc}") from None
                self._box = (box, box.seal(KEY_PREFIX + secrets.token_urlsafe(32)))
            return self._box

    def seal(self, key: str) -> str:
        return self.box()[0].seal(key)

    def verify(self, path: str, presented: str, signature: str,
               body: bytes) -> tuple[WebhookKey | None, list[TriggerRow], str | None]:
        """(the key, its webhook triggers at `path`, None) when the request is authentic, else
        (..., the reason, for the log). Every step runs whatever fails: the time taken does not
        say which part was wrong."""
        box, decoy = self.box()
        row = self.keys.find(prefix_of(presented))
        at_path = [t for t in self.triggers.list("webhook") if t.config.get("path") == path]
        problem = None
        try:
            secret = box.open(row.sealed if row is not None else decoy)
        except SecretBoxError as exc:
            problem = f"the stored key cannot be opened: {exc}"
            secret = box.open(decoy)
        key_ok = hmac.compare_digest(hashlib.sha256(secret.encode()).digest(),
                                     hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest())
        repo_id, workflow_file = (row.repo_id, row.workflow_file) if row is not None else (-1, "")
        mine = [t for t in at_path if t.repo_id == repo_id and t.workflow_file == workflow_file]
        signed = any(t.config.get("signature") == "sha256" for t in mine)
        expected = ("sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()).encode()
        sig_ok = hmac.compare_digest(expected, signature.strip().lower().encode("latin-1", "replace"))
        if not presented:
            why = "no key (Authorization: Bearer or X-Clarity-Key)"
        elif row is None:
            why = "unknown key"
        elif problem is not None:
            why = problem
        elif not key_ok:
            why = "wrong key (its prefix is known, the rest does not match)"
        elif row.revoked_at is not None:
            why = "revoked key"
        elif not at_path:
            why = "no webhook trigger declares this path"
        elif not mine:
            why = f"the key is for {row.workflow_file}, which declares no webhook trigger at this path"
        elif signed and not signature:
            why = "missing signature (the trigger asks for X-Clarity-Signature)"
        elif signed and not sig_ok:
            why = "bad signature"
        else:
            return row, mine, None
        return row, mine, why


def _presented(call: Call) -> str:
    scheme, _, token = call.request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return call.request.headers.get(KEY_HEADER, "").strip()


def _delivery(call: Call) -> str:
    given = call.request.headers.get("x-request-id", "").strip()
    return given if _DELIVERY.fullmatch(given) else str(uuid.uuid4())


def _workflow_file(value: str) -> str:
    path = value if "/" in value else f".clarity/{value}"
    if not WORKFLOW_FILE.fullmatch(path):
        raise BadRequest(f"field 'workflow': expected a workflow file in .clarity/, like .clarity/deploy.yaml, "
                         f"got {value!r}", code="invalid_field")
    return path


def routes(services: Services) -> list[BaseRoute]:
    inbound = Inbound(services)
    keys, triggers = inbound.keys, inbound.triggers

    def receive(call: Call) -> Response:
        """Start a workflow through its webhook trigger (a webhook key of the workflow file)."""
        path = request_path(PREFIX + str(call.request.path_params.get("rest", "")))
        presented = _presented(call)
        key, mine, why = inbound.verify(path, presented, call.request.headers.get(SIGNATURE_HEADER, ""), call.raw)
        if key is None or why is not None:
            shown = prefix_of(presented) if presented.startswith(KEY_PREFIX) else None
            client = call.request.client.host if call.request.client is not None else None
            log.warning("webhook refused", path=path, reason=why, key=shown, client=client)
            address = client or "unknown"  # guessing keys is as slow as guessing API keys
            services.limiter.hit(f"address:{address}", f"the address {address}, without a valid key,")
            return not_found(path)
        services.limiter.hit(f"webhook-key:{key.prefix}", f"webhook key {key.prefix}…")
        payload = parse_object(call.raw)
        repo = services.repos.get_id(key.repo_id)
        if not repo.enabled:
            raise RepoDisabled(f"repository {repo.name} is disabled: no runs from webhooks "
                               f"(clarity repo set {repo.name} --enable)")
        misses = [filter_miss(t.config.get("filter"), payload) for t in mine]
        keys.used(key.id)
        passing = [t for t, miss in zip(mine, misses) if miss is None]
        if not passing:
            log.info("webhook filtered out", path=path, repo=repo.name, workflow=key.workflow_file, key=key.prefix,
                     reason="; ".join(str(m) for m in misses))
            return Response(status_code=204)
        delivery = _delivery(call)
        outcome = services.starter.webhook(repo, passing[0], payload, key.name, delivery=delivery)
        log.info("webhook run", path=path, repo=repo.name, workflow=key.workflow_file, key=key.prefix,
                 runs=outcome.runs, delivery=delivery, skipped=outcome.skipped or None)
        body: dict[str, Any] = {"runs": outcome.runs, "delivery": delivery}
        if outcome.skipped:
            body["skipped"] = outcome.skipped
        return reply(body, 202)

    def create_key(call: Call) -> Response:
        """Make a webhook key for one workflow file of a repository; the key is in this answer only."""
        f = call.fields()
        repo_name = f.text("repo")
        workflow = _workflow_file(f.text("workflow"))
        name = f.text("name", None)
        f.done()
        if name is not None and (len(name) > NAME_MAX or _CONTROL.search(name) or name != name.strip()):
            raise f.invalid("name", f"at most {NAME_MAX} characters, no control characters or spaces at either end")
        repo = services.repos.get(repo_name)
        key, secret = keys.create(repo.id, workflow, inbound.seal, name=name, created_by=call.by)
        paths = [str(t.config.get("path")) for t in triggers.list("webhook", repo.id) if t.workflow_file == workflow]
        answer: dict[str, Any] = {"key": secret, **key.public(repo.name), "paths": paths}
        if not paths:
            answer["warnings"] = [f"{workflow} of {repo.name} declares no webhook trigger on its default branch (as "
                                  "last read): requests are refused until it does (the triggers are read again "
                                  "every minute and after a push)"]
        log.info("webhook key made", repo=repo.name, workflow=workflow, key=key.prefix, by=call.by)
        return reply(answer, 201)

    def list_keys(call: Call) -> Response:
        """Webhook keys (prefixes only), oldest first; `?repo=` for one repository."""
        if call.key is not None and call.key.role != "admin":
            raise Forbidden(f"API key '{call.key.name}' has role '{call.key.role}': webhook keys are for admins")
        wanted = call.request.query_params.get("repo")
        names = {r.id: r.name for r in services.repos.list()}
        repo_id = services.repos.get(wanted).id if wanted else None
        return reply({"keys": [k.public(names.get(k.repo_id)) for k in keys.list(repo_id)]})

    def revoke_key(call: Call) -> Response:
        """Revoke a webhook key: requests with it are refused from now on."""
        key = keys.revoke(call.param("prefix"))
        log.info("webhook key revoked", key=key.prefix, by=call.by)
        return Response(status_code=204)

    return [  # the key routes first: the catch-all below would take their paths
        ApiRoute("POST", KEYS_PATH, create_key, services, Doc(
            "Create a webhook key", body=KEY_BODY, tag="webhooks",
            description="For one workflow file of a repository: it starts that file's `webhook` triggers. The key "
                        "is in the 201 answer only (with `paths`, the file's webhook paths as last read, and "
                        "`warnings` when there are none).",
            responses={201: "{key, prefix, repo, workflow_file, name, paths, ...}: the key is shown only now",
                       400: "Invalid body", 404: "No such repository"})),
        ApiRoute("GET", KEYS_PATH, list_keys, services, Doc(
            "List webhook keys", tag="webhooks", query={"repo": "only this repository's keys"},
            responses={200: "{keys: [...]}", 404: "No such repository"})),
        ApiRoute("DELETE", KEYS_PATH + "/{prefix}", revoke_key, services, Doc(
            "Revoke a webhook key", tag="webhooks", responses={204: "Revoked", 404: "No live key with that prefix"})),
        ApiRoute("POST", PREFIX + "{rest:path}", receive, services, Doc(
            "Start a workflow through its webhook trigger", tag="webhooks", media="application/json",
            body={"type": "object", "description": "any JSON object (or an empty body): ${trigger.payload.*}"},
            description="At the `path` a `webhook` trigger declares (under /api/v1/webhook), with a webhook key "
                        "of that workflow file: `Authorization: Bearer clwh_...` or `X-Clarity-Key`; with "
                        "`signature: sha256` also `X-Clarity-Signature: sha256=<hex HMAC-SHA256 of the body>`. "
                        "Every authentication failure is the same 404.",
            responses={202: "{runs: [id], delivery}: a run started", 204: "The trigger's filter says no",
                       400: "The body is not a JSON object", 404: "No webhook here for this request",
                       409: "The repository is disabled", 413: "The body is too large",
                       422: "The run cannot start"}), public=True, raw_body=True),
    ]
