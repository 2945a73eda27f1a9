"""Every failure is `{"error": {"code", "message"}}` with the right status; bad input never a 500."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from tests.api.conftest import Api, runner_credential


def error(resp: Any) -> dict[str, str]:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return dict(body["error"])


def test_malformed_json(api: Api) -> None:
    resp = api.client.post("/api/v1/repos", content=b'{"name": ', headers=api.auth())
    assert resp.status_code == 400
    assert error(resp)["code"] == "malformed_json"
    assert "not valid JSON" in error(resp)["message"]


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"3", b"null", b"\xff\xfe\x00", b'{"name": NaN}'])
def test_a_body_that_is_not_a_json_object(api: Api, raw: bytes) -> None:
    resp = api.client.post("/api/v1/repos", content=raw, headers=api.auth())
    assert resp.status_code == 400, resp.text
    error(resp)


@pytest.mark.parametrize("body,field,code", [
    ({"url": "/x"}, "'name'", "missing_field"),
    ({"name": "o/r"}, "'url'", "missing_field"),
    ({"name": 5, "url": "/x"}, "'name': expected a string, got a number", "invalid_field"),
    ({"name": "o/r", "url": ["/x"]}, "'url': expected a string, got an array", "invalid_field"),
    ({"name": "no-slash", "url": "/x"}, "'name': expected owner/repo", "invalid_field"),
    ({"name": "o/r", "url": "/x", "forge": "bitbucket"}, "'forge'", "invalid_field"),
    ({"name": "o/r", "url": "/x", "poll_interval": "soon"}, "'poll_interval'", "invalid_field"),
    ({"name": "o/r", "url": "/x", "poll_interval": True}, "'poll_interval'", "invalid_field"),
    ({"name": "o/r", "url": "/x", "webhook_secret": 1}, "'webhook_secret'", "invalid_field"),
    ({"name": "o/r", "url": "/x", "colour": "red"}, "colour", "unknown_field"),
])
def test_bad_fields_are_named(api: Api, body: dict[str, Any], field: str, code: str) -> None:
    resp = api.post("/api/v1/repos", body)
    assert resp.status_code == 400
    assert error(resp)["code"] == code
    assert field in error(resp)["message"]


@pytest.mark.parametrize("body,field", [
    ({"failed_only": "yes"}, "'failed_only': expected true or false"),
])
def test_wrong_types_on_rerun(api: Api, body: dict[str, Any], field: str) -> None:
    resp = api.post("/api/v1/runs/1/rerun", body)
    assert resp.status_code == 400
    assert field in error(resp)["message"]


def test_unknown_repo_and_run(api: Api) -> None:
    resp = api.get("/api/v1/repos/nobody/nothing")
    assert resp.status_code == 404
    assert error(resp) == {"code": "not_found", "message": "no repository nobody/nothing"}
    resp = api.get("/api/v1/runs/99")
    assert resp.status_code == 404
    assert error(resp) == {"code": "not_found", "message": "no run 99"}
    for path in ("/api/v1/runs/99/logs", "/api/v1/runs/99/cancel", "/api/v1/runs/99/rerun"):
        resp = api.get(path) if path.endswith("logs") else api.post(path)
        assert resp.status_code == 404, path
        assert error(resp)["message"] == "no run 99"
    assert api.delete("/api/v1/repos/nobody/nothing").status_code == 404


def test_unknown_route_and_method_are_json(api: Api) -> None:
    resp = api.get("/api/v1/nothing")
    assert resp.status_code == 404
    assert error(resp)["code"] == "not_found"
    resp = api.client.put("/api/v1/repos", headers=api.auth())
    assert resp.status_code == 405
    assert error(resp)["code"] == "method_not_allowed"
    assert "GET" in resp.headers["allow"]
    assert api.get("/api/v1/runs/abc").status_code == 404


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=ten", "before=-1", "before=x"])
def test_bad_query_parameters(api: Api, query: str) -> None:
    resp = api.get(f"/api/v1/runs?{query}")
    assert resp.status_code == 400
    assert error(resp)["code"] == "invalid_query"
    assert query.split("=")[0] in error(resp)["message"]


def test_oversized_bodies(make_api: Callable[..., Api]) -> None:
    api = make_api(max_body_bytes=1024)
    big = b'{"name": "o/r", "url": "' + b"x" * 2000 + b'"}'
    resp = api.client.post("/api/v1/repos", content=big, headers=api.auth())
    assert resp.status_code == 413
    assert error(resp)["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield big[:600]
        yield big[600:]

    resp = api.client.post("/api/v1/repos", content=chunks(), headers=api.auth())
    assert resp.status_code == 413
    assert api.services.repos.list() == []


@pytest.mark.parametrize("headers,message", [
    ({}, "needs the header 'Clarity-Protocol: 1'"),
    ({"Clarity-Protocol": "2"}, "speaks runner protocol 1, the runner sent '2'"),
])
def test_runner_protocol_version(api: Api, headers: dict[str, str], message: str) -> None:
    resp = api.post("/api/v1/runner/lease", {"runner": "r1"}, headers=headers)
    assert resp.status_code == 400
    assert error(resp)["code"] == "protocol_version"
    assert message in error(resp)["message"]


def test_lease_lost_is_409(api: Api) -> None:
    resp = api.post("/api/v1/runner/heartbeat", {"lease_id": "gone"}, key=runner_credential(api),
                    headers={"Clarity-Protocol": "1"})
    assert resp.status_code == 409
    assert error(resp)["code"] == "lease_lost"


@pytest.mark.parametrize("body,field", [
    ({"runner": "r", "wait_s": 31}, "'wait_s': must be between"),
    ({"runner": "r", "labels": "linux"}, "'labels': expected an array of strings"),
    ({"runner": "r", "labels": [1]}, "'labels[0]'"),
    ({"wait_s": "soon"}, "'wait_s'"),
])
def test_runner_bodies(api: Api, body: dict[str, Any], field: str) -> None:
    resp = api.post("/api/v1/runner/lease", body, key=runner_credential(api),
                    headers={"Clarity-Protocol": "1"})
    assert resp.status_code == 400
    assert field in error(resp)["message"]


@pytest.mark.parametrize("body,field", [
    ({"lease_id": "l", "lines": [{"seq": 0, "ts": 1.0, "line": "x"}]}, "'lines[0].seq': must be at least 1"),
    ({"lease_id": "l", "lines": [{"seq": 1, "ts": "now", "line": "x"}]}, "'lines[0].ts'"),
    ({"lease_id": "l", "lines": [{"seq": 1, "ts": 1.0}]}, "'lines[0].line' is required"),
    ({"lease_id": "l", "lines": {}}, "'lines'"),
])
def test_runner_log_bodies(api: Api, body: dict[str, Any], field: str) -> None:
    resp = api.post("/api/v1/runner/logs", body, key=runner_credential(api),
                    headers={"Clarity-Protocol": "1"})
    assert resp.status_code == 400
    assert field in error(resp)["message"]


@pytest.mark.parametrize("result,field", [
    ({"outcome": "great"}, "'result.outcome': expected one of"),
    ({"outcome": "succeeded", "exit_code": "0"}, "'result.exit_code'"),
    ({"outcome": "succeeded", "outputs": {"a": 1}}, "'result.outputs'"),
    ({}, "'result.outcome' is required"),
])
def test_runner_finish_bodies(api: Api, result: dict[str, Any], field: str) -> None:
    resp = api.post("/api/v1/runner/finish", {"lease_id": "l", "result": result}, key=runner_credential(api),
                    headers={"Clarity-Protocol": "1"})
    assert resp.status_code == 400
    assert field in error(resp)["message"]


def test_unexpected_errors_are_a_generic_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(api.services.repos, "list", boom)
    resp = api.get("/api/v1/repos")
    assert resp.status_code == 500
    assert error(resp)["code"] == "internal"
    assert "secret detail" not in resp.text


def test_a_key_error_is_a_bug_not_a_404(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> None:
        raise KeyError("x")

    monkeypatch.setattr(api.services.repos, "list", boom)
    assert api.get("/api/v1/repos").status_code == 500
