"""The OpenAPI document and the route table are the same thing; the docs page lists it."""

from __future__ import annotations

import re

from starlette.routing import Route

from tests.api.conftest import Api


def test_every_route_is_documented_and_nothing_else(api: Api) -> None:
    doc = api.client.get("/api/v1/openapi.json").json()
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for route in api.client.app.routes:  # type: ignore[attr-defined]
        assert isinstance(route, Route)
        path = re.sub(r"{(\w+)(:\w+)?}", r"{\1}", route.path)
        served |= {(path, m) for m in route.methods or () if m != "HEAD"}
    assert documented == served
    assert ("/api/v1/runs/{id}/rerun", "POST") in served
    rerun = doc["paths"]["/api/v1/runs/{id}/rerun"]["post"]
    assert rerun["parameters"][0] == {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
    assert "requestBody" in rerun and "401" in rerun["responses"] and "403" in rerun["responses"]
    assert doc["paths"]["/healthz"]["get"]["security"] == []


def test_docs_page_lists_the_operations_and_loads_nothing_from_elsewhere(api: Api) -> None:
    resp = api.client.get("/api/v1/docs")
    assert resp.headers["content-type"].startswith("text/html")
    doc = api.client.get("/api/v1/openapi.json").json()
    for path in doc["paths"]:
        assert f"<code>{path}</code>" in resp.text
    assert "http://" not in resp.text and "https://" not in resp.text and "<script" not in resp.text
