"""Regression tests for problems a first user of the controller found."""

from __future__ import annotations

from tests.api.conftest import Api


def _error(resp):  # type: ignore[no-untyped-def]
    return resp.json()["error"]


def test_repository_names_with_dot_parts_are_refused(api: Api) -> None:
    # "../etc" was accepted and could then not be removed through /repos/{owner}/{name}.
    for name in ("../etc", "./x", "acme/..", "acme/."):
        resp = api.post("/api/v1/repos", {"name": name, "url": "/x"})
        assert resp.status_code == 400, name
        assert "expected owner/repo" in _error(resp)["message"]


def test_run_ids_beyond_a_database_integer_are_not_found(api: Api) -> None:
    resp = api.get("/api/v1/runs/99999999999999999999999")
    assert resp.status_code == 404
    assert _error(resp)["code"] == "not_found"
