"""A repository's secrets for its runs on the controller: set, list (names only) and remove.

`PUT /api/v1/repos/{owner}/{name}/secrets/{SECRET}` with `{"value": "..."}` (admin); the value is
sealed with the controller's key and never shown again. A task gets a secret when it names it
(`secrets: [NAME]` or `${secrets.NAME}`), never a pull request from a fork.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.errors import BadRequest
from controller.api.repos import SecretKeyError, _name
from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.secretbox import SecretBox, SecretBoxError
from controller.services import Services
from controller.store.repo_secrets import MAX_VALUE_BYTES, NAME, RepoSecrets

SECRET_BODY = {"type": "object", "required": ["value"], "additionalProperties": False,
               "properties": {"value": {"type": "string", "description": "The secret's value (at most 64 KiB)."}}}


def _secret_name(call: Call) -> str:
    name = str(call.param("secret"))
    if not NAME.fullmatch(name):
        raise BadRequest(f"secret name {name!r}: expected capital letters, digits and '_', not starting with a "
                         "digit (as a workflow names it: secrets: [DEPLOY_KEY])", code="invalid_field")
    return name


def list_secrets(call: Call) -> Response:
    """The names of a repository's secrets (never their values)."""
    repo = call.services.repos.get(_name(call))
    rows = RepoSecrets(call.services.store.engine).list(repo.id)
    return reply({"secrets": [{"name": r.name, "updated_by": r.updated_by, "updated_at": r.updated_at} for r in rows]})


def put_secret(call: Call) -> Response:
    """Set a secret of a repository (sealed; the value is never shown again)."""
    name = _secret_name(call)
    f = call.fields()
    value = f.text("value")
    f.done()
    if not value:
        raise f.invalid("value", "expected the secret's value, got an empty string")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise f.invalid("value", f"the value is longer than {MAX_VALUE_BYTES // 1024} KiB")
    repo = call.services.repos.get(_name(call))
    try:
        sealed = SecretBox.for_home(call.services.settings.home).seal(value)
    except SecretBoxError as exc:
        raise SecretKeyError(f"the secret cannot be stored: {exc}") from None
    created = RepoSecrets(call.services.store.engine).put(repo.id, name, sealed, call.by)
    return reply({"repo": repo.name, "name": name, "created": created}, 201 if created else 200)


def delete_secret(call: Call) -> Response:
    """Remove a secret of a repository."""
    name = _secret_name(call)
    repo = call.services.repos.get(_name(call))
    if not RepoSecrets(call.services.store.engine).remove(repo.id, name):
        raise LookupError(f"repository {repo.name} has no secret {name}")
    return Response(status_code=204)


def routes(services: Services) -> list[BaseRoute]:
    base = "/api/v1/repos/{owner}/{name}/secrets"
    return [
        ApiRoute("GET", base, list_secrets, services, Doc("List a repository's secrets (names only)", tag="repos",
                                                         responses={200: "OK", 404: "No such repository"})),
        ApiRoute("PUT", base + "/{secret}", put_secret, services, Doc(
            "Set a repository's secret", body=SECRET_BODY, tag="repos",
            description="Sealed with the controller's key and never shown again. Tasks of the repository's runs "
                        "get it when they name it (`secrets: [NAME]`, `${secrets.NAME}`); pull requests from "
                        "forks never do.",
            responses={201: "Created", 200: "Replaced", 400: "Invalid name or value", 404: "No such repository"})),
        ApiRoute("DELETE", base + "/{secret}", delete_secret, services, Doc(
            "Remove a repository's secret", tag="repos", responses={204: "Removed", 404: "No such repository or secret"})),
    ]
