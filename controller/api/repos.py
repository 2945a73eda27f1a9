"""`/api/v1/repos`: register, list, show and remove repositories; trigger a manual run."""

from __future__ import annotations

import re

from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.services import Services
from controller.store.repos import FORGES
from controller.workflow.units import parse_duration

NAME = re.compile(r"(?!\.{1,2}/)[A-Za-z0-9_.-]+/(?!\.{1,2}$)[A-Za-z0-9_.-]+")  # no "." or ".." part

REPO_BODY = {
    "type": "object", "required": ["name", "url"], "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME.pattern, "description": "owner/repo, as the forge names it"},
        "url": {"type": "string", "description": "a git URL the controller can fetch (https, ssh, file)"},
        "forge": {"type": "string", "enum": list(FORGES), "default": "generic"},
        "webhook_secret": {"type": "string", "description": "the secret the forge signs deliveries with"},
        "poll_interval": {"type": ["string", "number"], "description": "poll the remote this often: 60s, 5m, or seconds"},
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
    return reply({"repos": [r.public() for r in call.services.repos.list()]})


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
    raw_interval = f.raw("poll_interval", None)
    try:
        interval = None if raw_interval is None else parse_duration(raw_interval)
    except ValueError as exc:
        raise f.invalid("poll_interval", str(exc)) from None
    f.done()
    row = call.services.repos.add(name=name, url=url, forge=forge, webhook_secret=secret, poll_interval_s=interval)
    return reply(row.public(), 201, headers={"Location": f"/api/v1/repos/{row.name}"})


def get_repo(call: Call) -> Response:
    """One repository."""
    return reply(call.services.repos.get(_name(call)).public())


def delete_repo(call: Call) -> Response:
    """Forget a repository (its past runs stay)."""
    call.services.repos.remove(_name(call))
    return Response(status_code=204)


def trigger(call: Call) -> Response:
    """Start the workflows of a ref by hand (a `manual` event)."""
    f = call.fields()
    ref = f.text("ref")
    workflow = f.text("workflow", None)
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
    body = {"runs": outcome.runs, "skipped": outcome.skipped}
    return reply(body, 201 if outcome.runs else 200)


def routes(services: Services) -> list[BaseRoute]:
    one = "/api/v1/repos/{owner}/{name}"
    return [
        ApiRoute("GET", "/api/v1/repos", list_repos, services, Doc("List repositories", tag="repos")),
        ApiRoute("POST", "/api/v1/repos", add_repo, services, Doc(
            "Register a repository", body=REPO_BODY, tag="repos",
            responses={201: "Created", 400: "Invalid body", 409: "The name is registered already"})),
        ApiRoute("GET", one, get_repo, services, Doc("Show a repository", tag="repos",
                                                     responses={200: "OK", 404: "No such repository"})),
        ApiRoute("DELETE", one, delete_repo, services, Doc("Remove a repository", tag="repos",
                                                           responses={204: "Removed", 404: "No such repository"})),
        ApiRoute("POST", one + "/trigger", trigger, services, Doc(
            "Trigger a manual run", body=TRIGGER_BODY, tag="repos",
            description="Runs every workflow of the ref that has a `manual` trigger (or the one named).",
            responses={201: "Runs created", 200: "Nothing to run (see `skipped`)", 404: "No such repository",
                       422: "The ref or workflow cannot be started, or the inputs are invalid"})),
    ]
