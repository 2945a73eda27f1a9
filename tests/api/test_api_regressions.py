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


def test_unknown_run_state_filter_is_a_bad_query(api: Api) -> None:
    resp = api.get("/api/v1/runs", params={"state": "bogus"})
    assert resp.status_code == 400
    assert _error(resp)["code"] == "invalid_query" and "'bogus'" in _error(resp)["message"]
    assert api.get("/api/v1/runs", params={"state": "failed"}).status_code == 200


def test_deliveries_show_what_became_of_them(api: Api) -> None:
    # A delivery that failed after its 202 (an unreachable clone URL) showed only in the log.
    from controller.store.deliveries import Deliveries

    repo = api.services.repos.add(name="acme/app", url="/nowhere", forge="github", webhook_secret="s")
    store = Deliveries(api.services.store.engine)
    first = store.record("github", "d-1", repo.id, "push", {"ref": "refs/heads/main"})
    assert first is not None
    store.done(first, "failed", "could not clone /nowhere: '/nowhere' does not appear to be a git repository")
    resp = api.get("/api/v1/deliveries", params={"repo": "acme/app"})
    assert resp.status_code == 200
    [shown] = resp.json()["deliveries"]
    assert (shown["delivery_id"], shown["state"]) == ("d-1", "failed")
    assert "does not appear to be a git repository" in shown["error"]
    assert "payload" not in shown
    assert api.get("/api/v1/deliveries", key=api.reader).status_code == 200
    assert api.get("/api/v1/deliveries", params={"repo": "no/such"}).status_code == 404
