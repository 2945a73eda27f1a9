"""`webhook` triggers in workflow files: the paths Clarity can serve, `signature`, and the shape of
`filter` (lint); and how a filter reads a payload (controller.triggers.webhook)."""

from __future__ import annotations

import pytest

from controller.triggers.webhook import filter_miss, path_problem, request_path
from tests.workflow.wf_support import Lint


def _file(trigger: str) -> str:
    return f"""
        workflow:
          name: w
          triggers:
            - {trigger}
          tasks: [{{name: t, image: alpine}}]
        """


def _output(lint: Lint, trigger: str) -> str:
    _, diagnostics = lint(_file(trigger))
    return "\n".join(d.format() for d in diagnostics)


@pytest.mark.parametrize("path", ["/api/v1/webhook", "/api/v1/webhooks/deploy", "/api/v1/webhook/a/b-c_d.e~f",
                                  "/api/v1/webhooks"])
def test_served_paths_lint_clean(lint: Lint, path: str) -> None:
    workflow, diagnostics = lint(_file(f"{{type: webhook, path: \"{path}\"}}"))
    assert diagnostics == [] and workflow is not None
    assert workflow.triggers[0].config == {"path": path, "signature": "none"}  # the default made explicit


def test_the_standards_example_trigger(lint: Lint) -> None:
    workflow, diagnostics = lint("""
        workflow:
          name: w
          triggers:
            - type: "webhook"
              path: "/api/v1/webhook"
          tasks: [{name: t, image: alpine}]
        """)
    assert diagnostics == [] and workflow is not None and workflow.triggers[0].type == "webhook"


@pytest.mark.parametrize(("path", "expected"), [
    ("/deploy", "w.yaml:5:29: error: webhook path '/deploy' is not served: Clarity serves inbound webhooks under "
                "/api/v1/webhook\n  hint: e.g. path: /api/v1/webhooks/deploy (the controller answers POST requests "
                "there)"),
    ("/", "hint: e.g. path: /api/v1/webhook (the controller"),
    ("/api/v2/webhook", "is not served"),
    ("/api/v1/webhook-keys", "is taken by the API that manages webhook keys"),
    ("/api/v1/webhook-keys/x", "is taken by the API that manages webhook keys"),
    ("/api/v1/webhooks/deploy/", "ends with '/'\n  hint: path: /api/v1/webhooks/deploy"),
    ("/api/v1/webhooks//deploy", "has an empty, '.' or '..' segment"),
    ("/api/v1/webhooks/../runs", "has an empty, '.' or '..' segment"),
    ("/api/v1/webhooks/a b", "has characters a path cannot use as they are: ' '"),
    ("/api/v1/webhooks/deploy?x=1", "has characters a path cannot use as they are: '=' '?'"),
    ("/api/v1/webhooks/d%C3%A9ploy", "has characters a path cannot use as they are: '%'"),
])
def test_paths_that_cannot_be_served_are_errors(lint: Lint, path: str, expected: str) -> None:
    output = _output(lint, f"{{type: webhook, path: \"{path}\"}}")
    assert expected in output, output
    assert output.count("error:") == 1, output


def test_a_path_without_a_slash_is_the_schema_s_error_only(lint: Lint) -> None:
    output = _output(lint, "{type: webhook, path: hook}")
    assert output == "w.yaml:5:29: error: invalid webhook path 'hook' in the webhook trigger\n" \
                     "  hint: URL path served by the controller, under /api/v1/webhook (e.g. /api/v1/webhook, " \
                     "/api/v1/webhooks/deploy)."


def test_signature_and_filter_are_declared(lint: Lint) -> None:
    workflow, diagnostics = lint("""
        workflow:
          name: w
          triggers:
            - type: webhook
              path: /api/v1/webhooks/release
              signature: sha256
              filter:
                action: [published, released]
                "repository.private": false
                "commits.0.id": ~
                count: 3
          tasks: [{name: t, image: alpine}]
        """)
    assert diagnostics == [] and workflow is not None
    assert workflow.triggers[0].config == {
        "path": "/api/v1/webhooks/release", "signature": "sha256",
        "filter": {"action": ["published", "released"], "repository.private": False, "commits.0.id": None,
                   "count": 3}}


@pytest.mark.parametrize(("trigger", "expected"), [
    ("{type: webhook, path: /api/v1/webhook, signature: md5}",
     "error: unknown signature 'md5' in the webhook trigger; known: none, sha256"),
    ("{type: webhook, path: /api/v1/webhook, filter: [action]}",
     "error: 'filter': expected a mapping, got a list in the webhook trigger"),
    ("{type: webhook, path: /api/v1/webhook, filter: {\"a..b\": 1}}",
     "error: invalid filter path 'a..b' in the webhook trigger"),
    ("{type: webhook, path: /api/v1/webhook, filter: {\".a\": 1}}",
     "error: invalid filter path '.a' in the webhook trigger"),
    ("{type: webhook, path: /api/v1/webhook, filter: {action: []}}",
     "error: 'action' must not be empty in the webhook trigger"),
    ("{type: webhook, path: /api/v1/webhook, filter: {action: {eq: 1}}}",
     "error: 'action': expected a boolean or a list or a number or a string or nothing, got a mapping"),
    ("{type: webhook, path: /api/v1/webhook, filter: {action: [[a]]}}",
     "error: 'action': expected a boolean or a number or a string or nothing, got a list"),
    ("{type: webhook, path: /api/v1/webhook, secret: s3cret}",
     "error: unknown key 'secret' in the webhook trigger\n  hint: allowed keys: type, path, signature, filter"),
])
def test_bad_signature_and_filter_shapes(lint: Lint, trigger: str, expected: str) -> None:
    output = _output(lint, trigger)
    assert expected in output, output


PAYLOAD = {"action": "published", "repository": {"private": False, "stars": 3},
           "commits": [{"id": "abc"}], "note": None}


@pytest.mark.parametrize(("rules", "miss"), [
    (None, None),
    ({}, None),
    ({"action": "published"}, None),
    ({"action": ["created", "published"]}, None),
    ({"repository.private": False, "repository.stars": 3.0}, None),
    ({"commits.0.id": "abc"}, None),
    ({"note": None}, None),
    ({"action": "created"}, 'action is "published", not "created"'),
    ({"action": ["created", "deleted"]}, 'action is "published", not one of ["created", "deleted"]'),
    ({"repository.private": "false"}, 'repository.private is false, not "false"'),
    ({"repository.private": 0}, "repository.private is false, not 0"),  # a boolean is not a number
    ({"repository.stars": True}, "repository.stars is 3, not true"),
    ({"repository.owner": "x"}, "the payload has no repository.owner"),
    ({"commits.1.id": "abc"}, "the payload has no commits.1.id"),
    ({"note": "null"}, 'note is null, not "null"'),
    ({"action": "published", "repository.private": True}, "repository.private is false, not true"),
])
def test_filters_read_the_payload(rules: dict[str, object] | None, miss: str | None) -> None:
    assert filter_miss(rules, PAYLOAD) == miss


def test_request_paths() -> None:
    assert request_path("/api/v1/webhook/") == "/api/v1/webhook"
    assert request_path("/api/v1/webhooks/deploy") == "/api/v1/webhooks/deploy"
    assert path_problem("/api/v1/webhook") is None
