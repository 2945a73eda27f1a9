"""Inbound webhooks through the real app: `webhook` triggers read from the default branch, keys
made through the API, POSTs to the declared paths.

A good request starts one run of the trigger's workflow file, with the payload in the run's audit
and `${trigger.payload.*}` rendered into its tasks; a filter that says no answers 204; every
authentication failure (no key, unknown, wrong or revoked key, a key of another workflow, no
trigger at the path, a missing or bad signature) answers the same 404 body after the same work."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from controller.peer import InProcessPeer
from controller.schedules import ScheduleLoop
from controller.secretbox import PREFIX as SEALED_PREFIX
from controller.secretbox import SecretBox
from controller.store.webhook_keys import WebhookKeys
from tests.api.conftest import Api, git

DEPLOY = """\
workflow:
  name: deploy
  triggers:
    - type: push
      branches: [main]
    - type: webhook
      path: /api/v1/webhooks/deploy
      filter:
        action: [published, released]
        "repository.private": false
  tasks:
    - name: deploy
      image: busybox
      env:
        VERSION: "${trigger.payload.release.tag}"
        BY: "${trigger.by}"
      commands: ["echo deploying $VERSION"]
"""
SIGNED = """\
workflow:
  name: signed
  triggers:
    - type: webhook
      path: /api/v1/webhooks/signed
      signature: sha256
  tasks:
    - name: t
      image: busybox
      env: {WHAT: "${trigger.payload.what}"}
      commands: ["echo $WHAT"]
"""
STANDARDS = """\
workflow:
  name: "example-workflow"
  version: "1.0.0"
  triggers:
    - type: "schedule"
      cron: "0 * * * *"
    - type: "webhook"
      path: "/api/v1/webhook"
  tasks:
    - name: t
      image: busybox
      commands: ["echo hello"]
"""
RELEASE = {"action": "published", "repository": {"private": False, "name": "app"}, "release": {"tag": "v1.2.3"}}


def make_repo(api: Api, tmp_path: Path, name: str = "acme/app") -> Path:
    src = tmp_path / name.replace("/", "-")
    (src / ".clarity").mkdir(parents=True)
    (src / ".clarity" / "deploy.yaml").write_text(DEPLOY)
    (src / ".clarity" / "signed.yaml").write_text(SIGNED)
    (src / ".clarity" / "example.yaml").write_text(STANDARDS)
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "webhooks")
    api.services.repos.add(name=name, url=str(src), forge="generic")
    refresh(api, name)
    return src


def refresh(api: Api, name: str = "acme/app") -> None:
    ScheduleLoop(api.services).refresh(api.services.repos.get(name))


def new_key(api: Api, workflow: str, repo: str = "acme/app", **extra: Any) -> str:
    resp = api.post("/api/v1/webhook-keys", {"repo": repo, "workflow": workflow, **extra})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def hook(api: Api, path: str, key: str | None, body: Any = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> Any:
    sent = {"Authorization": f"Bearer {key}"} if key is not None else {}
    content = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return api.client.post(path, content=content, headers={**sent, **(headers or {})})


def sign(key: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def run_count(api: Api) -> int:
    return len(api.services.store.list_runs(limit=500))


def leased_env(api: Api) -> dict[str, str]:
    lease = InProcessPeer(api.services.queue, api.services.scheduler).lease("test-runner", [], 0)
    assert lease is not None
    return dict(lease.spec.env)


def test_a_keyed_post_starts_the_workflow_with_the_payload(api: Api, tmp_path: Path) -> None:
    make_repo(api, tmp_path)
    made = api.post("/api/v1/webhook-keys", {"repo": "acme/app", "workflow": ".clarity/deploy.yaml",
                                             "name": "release-bot"})
    assert made.status_code == 201, made.text
    shown = made.json()
    key = shown["key"]
    assert key.startswith("clwh_") and shown["prefix"] == key[:13] and shown["name"] == "release-bot"
    assert shown["paths"] == ["/api/v1/webhooks/deploy"] and "warnings" not in shown

    resp = hook(api, "/api/v1/webhooks/deploy", key, RELEASE, headers={"X-Request-Id": "delivery-42"})
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"runs": [resp.json()["runs"][0]], "delivery": "delivery-42"}
    (run_id,) = resp.json()["runs"]
    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert run["event"] == "webhook" and run["workflow"] == "deploy" and run["ref"] == "refs/heads/main"
    assert run["workflow_file"] == ".clarity/deploy.yaml"
    trigger = run["trigger"]
    assert trigger["by"] == "webhook-key:release-bot" and trigger["event"] == "webhook"
    assert trigger["path"] == "/api/v1/webhooks/deploy" and trigger["payload"] == RELEASE
    assert trigger["delivery"] == "delivery-42"
    env = leased_env(api)
    assert env["VERSION"] == "v1.2.3" and env["BY"] == "webhook-key:release-bot"

    # the key is stored sealed with the controller's key, never in clear
    row = WebhookKeys(api.services.store.engine).get(shown["prefix"])
    assert row.sealed.startswith(SEALED_PREFIX) and key not in row.sealed
    assert SecretBox.for_home(api.services.settings.home).open(row.sealed) == key
    assert row.last_used_at is not None

    # X-Clarity-Key works as well; without X-Request-Id the delivery is a fresh id; a trailing '/' is the same path
    again = hook(api, "/api/v1/webhooks/deploy/", None, {**RELEASE, "action": "released"},
                 headers={"X-Clarity-Key": key})
    assert again.status_code == 202, again.text
    assert len(again.json()["delivery"]) == 36 and again.json()["runs"][0] != run_id  # every request: its own run


def test_the_standards_example_path_works(api: Api, tmp_path: Path) -> None:
    make_repo(api, tmp_path)
    key = new_key(api, "example.yaml")  # a bare name is read in .clarity/
    resp = hook(api, "/api/v1/webhook", key)  # an empty body is the payload {}
    assert resp.status_code == 202, resp.text
    run = api.get(f"/api/v1/runs/{resp.json()['runs'][0]}").json()
    assert run["workflow"] == "example-workflow" and run["trigger"]["payload"] == {}
    assert run["trigger"]["by"].startswith("webhook-key:clwh_")  # named after its prefix by default


def test_a_filter_that_says_no_answers_204_and_starts_nothing(api: Api, tmp_path: Path) -> None:
    make_repo(api, tmp_path)
    key = new_key(api, ".clarity/deploy.yaml")
    for payload in ({**RELEASE, "action": "created"},  # not one of the accepted values
                    {**RELEASE, "repository": {"private": True}},
                    {**RELEASE, "repository": {"private": "false"}},  # a string is not the boolean false
                    {"action": "published"}):  # no repository.private at all
        resp = hook(api, "/api/v1/webhooks/deploy", key, payload)
        assert resp.status_code == 204, (payload, resp.text)
        assert resp.content == b""
    assert run_count(api) == 0


def test_signed_requests(api: Api, tmp_path: Path) -> None:
    make_repo(api, tmp_path)
    key = new_key(api, ".clarity/signed.yaml")
    body = json.dumps({"what": "signed"}).encode()
    resp = hook(api, "/api/v1/webhooks/signed", key, raw=body, headers={"X-Clarity-Signature": sign(key, body)})
    assert resp.status_code == 202, resp.text
    assert leased_env(api)["WHAT"] == "signed"
    upper = "sha256=" + sign(key, body).removeprefix("sha256=").upper()
    assert hook(api, "/api/v1/webhooks/signed", key, raw=body,
                headers={"X-Clarity-Signature": upper}).status_code == 202  # hex in either case


def test_every_authentication_failure_is_the_same_404(api: Api, tmp_path: Path) -> None:
    make_repo(api, tmp_path)
    deploy = new_key(api, ".clarity/deploy.yaml")
    signed = new_key(api, ".clarity/signed.yaml")
    revoked = new_key(api, ".clarity/signed.yaml")
    assert api.delete(f"/api/v1/webhook-keys/{revoked[:13]}").status_code == 204
    body = json.dumps({"what": "x"}).encode()
    path = "/api/v1/webhooks/signed"
    failures = {
        "no key": hook(api, path, None, raw=body, headers={"X-Clarity-Signature": sign(signed, body)}),
        "unknown key": hook(api, path, "clwh_" + "A" * 43, raw=body),
        "garbage key": hook(api, path, "not-a-key", raw=body),
        "known prefix, wrong rest": hook(api, path, signed[:13] + "x" * 30, raw=body,
                                         headers={"X-Clarity-Signature": sign(signed, body)}),
        "revoked key": hook(api, path, revoked, raw=body, headers={"X-Clarity-Signature": sign(revoked, body)}),
        "key of another workflow": hook(api, path, deploy, raw=body,
                                        headers={"X-Clarity-Signature": sign(deploy, body)}),
        "missing signature": hook(api, path, signed, raw=body),
        "bad signature": hook(api, path, signed, raw=body, headers={"X-Clarity-Signature": "sha256=" + "0" * 64}),
        "signed with another key": hook(api, path, signed, raw=body,
                                        headers={"X-Clarity-Signature": sign(deploy, body)}),
        "signature of another body": hook(api, path, signed, raw=body,
                                          headers={"X-Clarity-Signature": sign(signed, b"{}")}),
        "not a JSON body, bad key": hook(api, path, "clwh_nope", raw=b"[1, 2]"),
    }
    expected = failures["no key"].json()
    assert expected["error"]["code"] == "not_found" and path in expected["error"]["message"]
    for why, resp in failures.items():
        assert resp.status_code == 404, why
        assert resp.json() == expected, why
        assert resp.headers.get("www-authenticate") is None, why
    # no trigger at the path at all: the same answer (with its own path in it)
    elsewhere = hook(api, "/api/v1/webhooks/nothing-here", signed, raw=body,
                     headers={"X-Clarity-Signature": sign(signed, body)})
    assert elsewhere.status_code == 404
    assert elsewhere.json() == json.loads(json.dumps(expected).replace(path, "/api/v1/webhooks/nothing-here"))
    assert run_count(api) == 0


def test_the_same_work_is_done_whatever_is_wrong(api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_repo(api, tmp_path)
    signed = new_key(api, ".clarity/signed.yaml")
    opened: list[str] = []
    macs: list[bytes] = []
    real_open, real_new = SecretBox.open, hmac.new

    def counting_open(self: SecretBox, sealed: str) -> str:
        opened.append(sealed)
        return real_open(self, sealed)

    def counting_new(key: bytes, msg: bytes | None = None, digestmod: Any = None) -> Any:
        macs.append(msg or b"")
        return real_new(key, msg, digestmod)

    monkeypatch.setattr(SecretBox, "open", counting_open)
    monkeypatch.setattr("controller.api.inbound.hmac.new", counting_new)
    body = b'{"what": "x"}'
    for key in (None, "clwh_unknown-key-0000000000", signed[:13] + "wrong", signed):
        opened.clear()
        macs.clear()
        resp = hook(api, "/api/v1/webhooks/signed", key, raw=body, headers={"X-Clarity-Signature": "sha256=00"})
        assert resp.status_code == 404
        assert len(opened) == 1 and macs == [body], key  # one unsealing and one HMAC of the body, every time


def test_a_body_that_is_not_a_json_object_is_400(api: Api, tmp_path: Path) -> None:
    make_repo(api, tmp_path)
    key = new_key(api, ".clarity/example.yaml")
    for raw in (b"[1, 2]", b'"text"', b"{not json", b"null"):
        resp = hook(api, "/api/v1/webhook", key, raw=raw)
        assert resp.status_code == 400, raw
        assert resp.json()["error"]["code"] in ("bad_request", "malformed_json")
    assert run_count(api) == 0


def test_a_body_over_the_limit_is_413(make_api: Any, tmp_path: Path) -> None:
    api = make_api(max_body_bytes=64)
    make_repo(api, tmp_path)
    key = new_key(api, ".clarity/example.yaml")
    resp = hook(api, "/api/v1/webhook", key, {"pad": "x" * 100})
    assert resp.status_code == 413


def test_a_removed_trigger_answers_404(api: Api, tmp_path: Path) -> None:
    src = make_repo(api, tmp_path)
    key = new_key(api, ".clarity/deploy.yaml")
    assert hook(api, "/api/v1/webhooks/deploy", key, RELEASE).status_code == 202
    (src / ".clarity" / "deploy.yaml").write_text(DEPLOY.replace("/api/v1/webhooks/deploy", "/api/v1/webhooks/ship"))
    git(src, "commit", "-q", "-am", "moved")
    refresh(api)
    gone = hook(api, "/api/v1/webhooks/deploy", key, RELEASE)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert hook(api, "/api/v1/webhooks/ship", key, RELEASE).status_code == 202  # the key follows the file


def test_a_disabled_repository_starts_nothing(api: Api, tmp_path: Path) -> None:
    make_repo(api, tmp_path)
    key = new_key(api, ".clarity/example.yaml")
    assert api.client.patch("/api/v1/repos/acme/app", json={"enabled": False},
                            headers=api.auth()).status_code == 200
    resp = hook(api, "/api/v1/webhook", key)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "repo_disabled"
    assert run_count(api) == 0


def test_keys_are_made_listed_and_revoked_by_admins(api: Api, tmp_path: Path) -> None:
    make_repo(api, tmp_path)
    make_repo(api, tmp_path, "acme/lib")
    key = new_key(api, ".clarity/deploy.yaml", name="release-bot")
    new_key(api, ".clarity/example.yaml", repo="acme/lib")
    listed = api.get("/api/v1/webhook-keys").json()["keys"]
    assert [(k["repo"], k["workflow_file"], k["state"]) for k in listed] == [
        ("acme/app", ".clarity/deploy.yaml", "active"), ("acme/lib", ".clarity/example.yaml", "active")]
    assert all("key" not in k and "sealed" not in k for k in listed)
    assert key not in json.dumps(listed)
    only = api.get("/api/v1/webhook-keys", params={"repo": "acme/lib"}).json()["keys"]
    assert [k["repo"] for k in only] == ["acme/lib"]
    assert api.get("/api/v1/webhook-keys", params={"repo": "acme/none"}).status_code == 404
    assert api.get("/api/v1/webhook-keys", key=api.reader).status_code == 403
    assert api.post("/api/v1/webhook-keys", {"repo": "acme/app", "workflow": "deploy.yaml"},
                    key=api.reader).status_code == 403
    assert api.delete(f"/api/v1/webhook-keys/{key[:13]}", key=api.reader).status_code == 403

    assert api.delete(f"/api/v1/webhook-keys/{key[:13]}").status_code == 204
    assert api.delete(f"/api/v1/webhook-keys/{key[:13]}").status_code == 404  # revoked already
    assert api.get("/api/v1/webhook-keys").json()["keys"][0]["state"] == "revoked"
    assert hook(api, "/api/v1/webhooks/deploy", key, RELEASE).status_code == 404


def test_key_requests_are_checked(api: Api, tmp_path: Path) -> None:
    make_repo(api, tmp_path)
    unknown = api.post("/api/v1/webhook-keys", {"repo": "acme/none", "workflow": ".clarity/deploy.yaml"})
    assert unknown.status_code == 404
    for workflow in ("src/deploy.yaml", ".clarity/deploy.txt", ".clarity/sub/deploy.yaml"):
        resp = api.post("/api/v1/webhook-keys", {"repo": "acme/app", "workflow": workflow})
        assert resp.status_code == 400 and "workflow" in resp.json()["error"]["message"], workflow
    assert api.post("/api/v1/webhook-keys", {"repo": "acme/app", "workflow": "deploy.yaml",
                                             "extra": 1}).status_code == 400
    # a file that declares no webhook trigger (yet): made, with a warning
    resp = api.post("/api/v1/webhook-keys", {"repo": "acme/app", "workflow": ".clarity/later.yaml"})
    assert resp.status_code == 201 and resp.json()["paths"] == []
    assert "declares no webhook trigger" in resp.json()["warnings"][0]


def test_the_catch_all_shadows_no_other_route(api: Api) -> None:
    paths = [getattr(r, "path", "") for r in api.client.app.routes]  # type: ignore[attr-defined]
    at = paths.index("/api/v1/webhook{rest:path}")
    assert not [p for p in paths[at + 1:] if p.startswith("/api/v1/webhook")]  # would be shadowed
    assert [p for p in paths[:at] if p.startswith("/api/v1/webhook")] == ["/api/v1/webhook-keys"] * 2 + [
        "/api/v1/webhook-keys/{prefix}"]
    assert api.client.get("/api/v1/webhook").status_code == 405  # POST only
    assert api.get("/api/v1/webhook-keys").status_code == 200  # not taken by the catch-all


def test_on_each_database(make_api: Any, database_url: str, tmp_path: Path) -> None:
    api = make_api(database_url)
    make_repo(api, tmp_path)
    key = new_key(api, ".clarity/deploy.yaml", name="bot")
    resp = hook(api, "/api/v1/webhooks/deploy", key, RELEASE)
    assert resp.status_code == 202, resp.text
    assert api.get(f"/api/v1/runs/{resp.json()['runs'][0]}").json()["trigger"]["by"] == "webhook-key:bot"
    assert api.get("/api/v1/webhook-keys").json()["keys"][0]["last_used_at"] is not None
    assert api.delete(f"/api/v1/webhook-keys/{key[:13]}").status_code == 204
    assert hook(api, "/api/v1/webhooks/deploy", key, RELEASE).status_code == 404
    assert api.delete("/api/v1/repos/acme/app").status_code == 204
    assert api.get("/api/v1/webhook-keys").json()["keys"] == []  # the repository's keys go with it
