"""Who may call what: API keys, roles, and the routes that need none."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

PUBLIC = ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/v1/docs"]


@pytest.mark.parametrize("path", PUBLIC)
def test_public_routes_need_no_key(api: Api, path: str) -> None:
    assert api.client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/repos", "/api/v1/runs", "/api/v1/runs/1", "/api/v1/queue"])
def test_api_routes_need_a_key(api: Api, path: str) -> None:
    resp = api.client.get(path)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("header", ["Bearer clk_not-a-key", "Bearer ", "Basic dXNlcjpwYXNz", "clk_x"])
def test_a_bad_key_is_refused(api: Api, header: str) -> None:
    resp = api.client.get("/api/v1/repos", headers={"Authorization": header})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["error"]["code"] == "unauthorized"


def test_a_revoked_key_is_refused(api: Api) -> None:
    assert api.get("/api/v1/repos").status_code == 200
    api.services.keys.revoke(api.admin[:12])
    resp = api.get("/api/v1/repos")
    assert resp.status_code == 401
    assert "revoked" in resp.json()["error"]["message"]


def test_a_read_key_may_read_but_not_write(api: Api) -> None:
    assert api.get("/api/v1/repos", key=api.reader).status_code == 200
    resp = api.post("/api/v1/repos", {"name": "o/r", "url": "/nowhere"}, key=api.reader)
    assert resp.status_code == 403
    assert resp.json()["error"] == {"code": "forbidden", "message": "API key 'dashboard' has role 'read': it may only read"}
    assert api.delete("/api/v1/repos/o/r", key=api.reader).status_code == 403
    assert api.post("/api/v1/runner/lease", {"runner": "r"}, key=api.reader,  # runners have credentials, not keys
                    headers={"Clarity-Protocol": "1"}).status_code == 401
    assert api.services.repos.list() == []


def test_the_key_is_checked_before_the_body_is_read(api: Api) -> None:
    resp = api.client.post("/api/v1/repos", content=b"{not json")
    assert resp.status_code == 401
