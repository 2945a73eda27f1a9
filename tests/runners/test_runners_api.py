"""The runner routes with runner credentials, and the admin routes of runners and their tokens."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from structlog.testing import capture_logs

from controller.store import tables
from runner.spec import Outcome, TaskResult
from tests.api.conftest import Api
from tests.runners.conftest import PROTO, register, runner_post, start_run, token


def test_register_gives_a_credential_once(api: Api) -> None:
    secret = token(api, ["linux"])
    body = {"token": secret, "name": "box-1", "capacity": 3, "version": "0.1.0"}
    resp = api.client.post("/api/v1/runner/register", json=body, headers=PROTO)
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert answer["credential"].startswith("clrc_")
    assert answer["runner"]["name"] == "box-1" and answer["runner"]["labels"] == ["linux"]
    assert answer["runner"]["capacity"] == 3 and "hash" not in answer["runner"]
    with capture_logs() as logs:
        again = api.client.post("/api/v1/runner/register", json={**body, "name": "box-2"}, headers=PROTO)
    assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_token"
    assert any(e["event"] == "runner registration refused" and e["log_level"] == "warning" for e in logs)
    bad = api.client.post("/api/v1/runner/register", json={**body, "token": "clrt_bad"}, headers=PROTO)
    assert bad.status_code == 401
    hello = runner_post(api, "hello", {}, answer["credential"])
    assert hello.status_code == 200 and hello.json()["name"] == "box-1"


def test_register_refusals(api: Api) -> None:
    register(api, "taken")
    secret = token(api)
    resp = api.client.post("/api/v1/runner/register", json={"token": secret, "name": "taken"}, headers=PROTO)
    assert resp.status_code == 409 and "taken is registered already" in resp.json()["error"]["message"]
    resp = api.client.post("/api/v1/runner/register", json={"token": secret, "name": "builtin-1"}, headers=PROTO)
    assert resp.status_code == 400
    resp = api.client.post("/api/v1/runner/register", json={"token": secret, "name": "ok"},
                           headers={"Clarity-Protocol": "7"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "protocol_version"
    message = resp.json()["error"]["message"]
    assert "speaks runner protocol 1" in message and "'7'" in message and "upgrade" in message
    resp = api.client.post("/api/v1/runner/register", json={"token": secret, "name": "ok"}, headers=PROTO)
    assert resp.status_code == 201  # none of the refusals spent the token


def test_runner_routes_need_a_runner_credential(api: Api) -> None:
    for verb, body in (("lease", {}), ("heartbeat", {"lease_id": "x"}), ("logs", {"lease_id": "x", "lines": []}),
                       ("finish", {"lease_id": "x", "result": {"outcome": "succeeded"}}), ("hello", {})):
        for credential in (None, api.admin, "clrc_forged-credential"):
            with capture_logs() as logs:
                resp = runner_post(api, verb, body, credential)
            assert resp.status_code == 401, (verb, credential, resp.text)
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert any(e["log_level"] == "warning" for e in logs)
    assert runner_post(api, "lease", {}, register(api, "box")).status_code == 204


def test_disabled_runner_is_refused_then_enabled(api: Api) -> None:
    credential = register(api, "box")
    assert api.post("/api/v1/runners/box/disable").status_code == 200
    with capture_logs() as logs:
        resp = runner_post(api, "lease", {}, credential)
    assert resp.status_code == 401 and "disabled" in resp.json()["error"]["message"]
    assert [e for e in logs if e["event"] == "runner credential refused"]
    assert api.post("/api/v1/runners/box/enable").status_code == 200
    assert runner_post(api, "lease", {}, credential).status_code == 204
    assert api.post("/api/v1/runners/nobody/disable").status_code == 404


def test_lease_uses_the_registered_labels_and_name(api: Api, source_repo: Path) -> None:
    run_id = start_run(api, source_repo)
    q = tables.queue
    with api.services.store.engine.begin() as conn:
        conn.execute(q.update().where(q.c.run_id == run_id).values(labels=["gpu"]))
    plain = register(api, "plain", ["linux"])
    gpu = register(api, "gpu-box", ["gpu", "linux"])
    resp = runner_post(api, "lease", {"runner": "gpu-box", "labels": ["gpu"], "wait_s": 0}, plain)
    assert resp.status_code == 204  # the body's name and labels are not believed
    resp = runner_post(api, "lease", {"runner": "someone", "labels": [], "wait_s": 0}, gpu)
    assert resp.status_code == 200
    lease_id = resp.json()["lease_id"]
    with api.services.store.engine.connect() as conn:
        assert conn.execute(sa.select(q.c.lease_owner).where(q.c.lease_id == lease_id)).scalar_one() == "gpu-box"
    listed = {r["name"]: r for r in api.get("/api/v1/runners").json()["runners"]}
    assert listed["gpu-box"]["running"] == 1 and listed["gpu-box"]["online"] and listed["gpu-box"]["last_seen_at"]
    assert listed["plain"]["running"] == 0


def test_a_runner_cannot_touch_another_runners_lease(api: Api, source_repo: Path) -> None:
    start_run(api, source_repo)
    owner = register(api, "owner")
    thief = register(api, "thief")
    resp = runner_post(api, "lease", {"wait_s": 0}, owner)
    assert resp.status_code == 200
    lease_id = resp.json()["lease_id"]
    result = TaskResult(Outcome.SUCCEEDED, exit_code=0, started_at=1.0, finished_at=2.0).to_json()
    for verb, body in (("heartbeat", {"lease_id": lease_id}),
                       ("logs", {"lease_id": lease_id, "lines": [{"seq": 1, "ts": 1.0, "line": "forged"}]}),
                       ("finish", {"lease_id": lease_id, "result": result})):
        resp = runner_post(api, verb, body, thief)
        assert resp.status_code == 409 and resp.json()["error"]["code"] == "lease_lost", verb
    # the owner's lease is untouched: nothing of the thief's was stored
    assert runner_post(api, "heartbeat", {"lease_id": lease_id}, owner).status_code == 200
    assert runner_post(api, "logs", {"lease_id": lease_id, "lines": [{"seq": 1, "ts": 1.0, "line": "real"}]},
                       owner).status_code == 204
    assert runner_post(api, "finish", {"lease_id": lease_id, "result": result}, owner).status_code == 204
    with api.services.store.engine.connect() as conn:
        lines = [r.line for r in conn.execute(sa.select(tables.logs.c.line))]
    assert lines == ["real"]


def test_admin_routes_for_tokens(api: Api) -> None:
    resp = api.post("/api/v1/runner-tokens", {"labels": ["fast", "linux"]})
    assert resp.status_code == 201
    made = resp.json()
    assert made["token"].startswith("clrt_") and made["labels"] == ["fast", "linux"] and made["state"] == "unused"
    tokens = api.get("/api/v1/runner-tokens").json()["tokens"]
    assert [t["prefix"] for t in tokens] == [made["prefix"]] and "token" not in tokens[0] and "hash" not in tokens[0]
    assert api.post("/api/v1/runner-tokens", {"labels": ["bad label"]}).status_code == 400
    assert api.delete(f"/api/v1/runner-tokens/{made['prefix']}").status_code == 204
    assert api.get("/api/v1/runner-tokens").json()["tokens"][0]["state"] == "revoked"
    assert api.delete(f"/api/v1/runner-tokens/{made['prefix']}").status_code == 404
    resp = api.client.post("/api/v1/runner/register", json={"token": made["token"], "name": "late"}, headers=PROTO)
    assert resp.status_code == 401


def test_read_keys_may_list_runners_but_not_manage_them(api: Api) -> None:
    register(api, "box")
    resp = api.get("/api/v1/runners", key=api.reader)
    assert resp.status_code == 200
    [box] = resp.json()["runners"]
    assert box["name"] == "box" and box["capacity"] == 2 and box["labels"] == ["linux"] and not box["disabled"]
    assert "hash" not in box and "credential" not in box
    assert api.get("/api/v1/runner-tokens", key=api.reader).status_code == 403
    assert api.post("/api/v1/runner-tokens", {}, key=api.reader).status_code == 403
    assert api.post("/api/v1/runners/box/disable", key=api.reader).status_code == 403
    assert api.client.get("/api/v1/runners").status_code == 401
