"""The forge settings of a repository through the API: POST and PATCH /api/v1/repos, the token
sealed in the database and never shown, and every bad value a 400 naming its field."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller.secretbox import ENV_KEY, KEY_FILE, PREFIX, SecretBox
from controller.store import tables
from tests.api.conftest import Api

TOKEN = "ghp_0123456789abcdefTOKEN"


def raw_row(api: Api, name: str = "acme/app") -> dict[str, Any]:
    with api.services.store.engine.connect() as conn:
        row = conn.execute(sa.select(tables.repos).where(tables.repos.c.name == name)).mappings().one()
    return dict(row)


def add(api: Api, **body: Any) -> Any:
    return api.post("/api/v1/repos", {"name": "acme/app", "url": "https://github.com/acme/app.git",
                                      "forge": "github", **body})


def patch(api: Api, body: Any, name: str = "acme/app") -> Any:
    return api.client.patch(f"/api/v1/repos/{name}", json=body, headers=api.auth())


def error(resp: Any, status: int = 400) -> str:
    assert resp.status_code == status, resp.text
    return str(resp.json()["error"]["message"])


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "acme.token"
    path.parent.mkdir()
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def test_defaults_are_shown_and_nothing_is_reported(api: Api) -> None:
    repo = add(api).json()
    assert {k: repo[k] for k in ("forge_url", "forge_token_set", "forge_token_file", "github_app_id",
                                 "github_app_key_file", "github_installation_id", "status_context", "notes")} == {
        "forge_url": None, "forge_token_set": False, "forge_token_file": None, "github_app_id": None,
        "github_app_key_file": None, "github_installation_id": None, "status_context": None, "notes": False}
    assert "warnings" not in repo and "forge_token" not in repo


def test_the_token_is_sealed_in_the_database_and_never_shown(api: Api) -> None:
    resp = add(api, forge_url="https://github.example/api/v3/", forge_token=TOKEN, status_context="ci/{workflow}",
               notes=True)
    assert resp.status_code == 201, resp.text
    repo = resp.json()
    assert repo["forge_token_set"] is True and repo["forge_url"] == "https://github.example/api/v3"
    assert repo["status_context"] == "ci/{workflow}" and repo["notes"] is True
    for shown in (resp.text, api.get("/api/v1/repos/acme/app").text, api.get("/api/v1/repos").text,
                  api.get("/api/v1/repos/acme/app", key=api.reader).text):
        assert TOKEN not in shown and PREFIX not in shown
    stored = raw_row(api)["forge_token"]
    assert stored != TOKEN and TOKEN not in stored and stored.startswith(PREFIX)
    home = api.services.settings.home
    assert SecretBox.for_home(home).open(stored) == TOKEN
    assert (home / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert TOKEN not in repr(api.services.repos.get("acme/app"))


def test_the_environment_key_seals_when_set(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    monkeypatch.setenv(ENV_KEY, key.decode())
    assert add(api, forge_token=TOKEN).status_code == 201
    assert SecretBox(key).open(raw_row(api)["forge_token"]) == TOKEN
    assert not (api.services.settings.home / KEY_FILE).exists()


def test_a_bad_environment_key_is_the_operators_error_not_the_callers(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, "not-a-key")
    resp = add(api, forge_token=TOKEN)
    assert resp.status_code == 500 and resp.json()["error"]["code"] == "secret_key"
    assert f"{ENV_KEY} is not a Fernet key" in error(resp, 500) and TOKEN not in resp.text
    assert api.get("/api/v1/repos/acme/app").status_code == 404  # nothing was stored


def test_a_token_file_and_a_github_app(api: Api, token_file: Path, tmp_path: Path) -> None:
    pem = tmp_path / "etc" / "app.pem"
    pem.write_text("-----BEGIN RSA PRIVATE KEY-----\n")
    resp = add(api, forge_token_file=str(token_file), github_app_id=123, github_app_key_file=str(pem),
               github_installation_id=456)
    assert resp.status_code == 201, resp.text
    repo = resp.json()
    assert repo["forge_token_file"] == str(token_file) and repo["forge_token_set"] is False
    assert (repo["github_app_id"], repo["github_app_key_file"], repo["github_installation_id"]) == (123, str(pem), 456)
    assert "warnings" not in repo
    assert raw_row(api)["forge_token"] is None  # the file is read when sending, never copied


def test_a_missing_file_is_accepted_with_a_warning(api: Api, tmp_path: Path) -> None:
    missing = tmp_path / "later" / "token"
    resp = add(api, forge_token_file=str(missing))
    assert resp.status_code == 201, resp.text
    (warning,) = resp.json()["warnings"]
    assert "forge_token_file" in warning and str(missing) in warning and "does not exist" in warning
    assert "warnings" not in api.get("/api/v1/repos/acme/app").json()


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_gitlab_and_gitea_take_a_token(api: Api, forge: str) -> None:
    resp = add(api, forge=forge, forge_url="https://git.example", forge_token=TOKEN)
    assert resp.status_code == 201 and resp.json()["forge_token_set"] is True


def test_notes_work_with_the_generic_forge(api: Api) -> None:
    resp = add(api, forge="generic", notes=True)
    assert resp.status_code == 201 and resp.json()["notes"] is True


@pytest.mark.parametrize("body, field, words", [
    ({"forge": "generic", "forge_token": TOKEN}, "forge_token", "has no status API"),
    ({"forge": "generic", "forge_url": "https://x.example"}, "forge_url", "has no status API"),
    ({"forge": "generic", "status_context": "ci"}, "status_context", "has no status API"),
    ({"forge": "gitlab", "github_app_id": 1, "github_app_key_file": "/etc/k.pem"}, "github_app_id",
     "for forge github"),
    ({"forge_token": TOKEN, "forge_token_file": "/etc/t"}, "forge_token_file", "not both"),
    ({"github_app_id": 12}, "github_app_key_file", "required with github_app_id"),
    ({"github_app_key_file": "/etc/k.pem"}, "github_app_id", "required with github_app_key_file"),
    ({"github_installation_id": 3}, "github_installation_id", "needs github_app_id"),
    ({"github_app_id": "12", "github_app_key_file": "/etc/k.pem"}, "github_app_id", "expected a whole number"),
    ({"github_app_id": 0, "github_app_key_file": "/etc/k.pem"}, "github_app_id", "at least 1"),
    ({"github_app_id": True, "github_app_key_file": "/etc/k.pem"}, "github_app_id", "expected a whole number"),
    ({"forge_token_file": "tokens/acme"}, "forge_token_file", "absolute path"),
    ({"forge_token_file": "~/token"}, "forge_token_file", "absolute path"),
    ({"github_app_id": 1, "github_app_key_file": "app.pem"}, "github_app_key_file", "absolute path"),
    ({"forge_token_file": "/"}, "forge_token_file", "is a directory"),
    ({"forge_token_file": ""}, "forge_token_file", "must not be empty"),
    ({"forge_token": ""}, "forge_token", "must not be empty"),
    ({"forge_token": "ab\ncd"}, "forge_token", "line breaks"),
    ({"forge_token": " ghp_x"}, "forge_token", "spaces"),
    ({"forge_token": 42}, "forge_token", "expected a string"),
    ({"forge_url": "github.example"}, "forge_url", "http(s) URL"),
    ({"forge_url": "ftp://github.example"}, "forge_url", "http(s) URL"),
    ({"forge_url": "https://user:pw@github.example"}, "forge_url", "credentials"),
    ({"forge_url": "https://github.example/api?x=1"}, "forge_url", "query"),
    ({"forge_url": "https://github.example:port"}, "forge_url", "not a URL"),
    ({"status_context": "ci/{branch}"}, "status_context", "only placeholder is {workflow}, got {branch}"),
    ({"status_context": "ci/{workflow}/{sha}"}, "status_context", "got {sha}"),
    ({"status_context": "ci/{workflow"}, "status_context", "only placeholder"),
    ({"status_context": "ci/}"}, "status_context", "only placeholder"),
    ({"status_context": "c" * 101}, "status_context", "at most 100"),
    ({"status_context": "ci\n"}, "status_context", "line breaks"),
    ({"notes": "yes"}, "notes", "true or false"),
])
def test_bad_settings_are_a_400_naming_the_field(api: Api, body: dict[str, Any], field: str, words: str) -> None:
    message = error(add(api, **body))
    assert f"field '{field}'" in message and words in message, message
    assert TOKEN not in message
    assert api.get("/api/v1/repos/acme/app").status_code == 404


def test_a_file_inside_the_controllers_home_is_refused(api: Api) -> None:
    home = api.services.settings.home
    for path in (home / KEY_FILE, home / "api-key", home, home / ".." / home.name / "clarity.db"):
        message = error(add(api, forge_token_file=str(path)))
        assert "field 'forge_token_file'" in message and "CLARITY_HOME" in message


def test_fixed_and_templated_contexts(api: Api) -> None:
    assert add(api, status_context="ci").json()["status_context"] == "ci"
    assert patch(api, {"status_context": "{workflow} / {workflow}"}).json()["status_context"] == "{workflow} / {workflow}"
    assert patch(api, {"status_context": "c" * 100}).status_code == 200


def test_patch_changes_only_what_is_sent_and_null_clears(api: Api, token_file: Path) -> None:
    before = add(api, forge_token=TOKEN, status_context="ci/{workflow}", webhook_secret="s3cret",
                 poll_interval="5m").json()
    sealed = raw_row(api)["forge_token"]
    resp = patch(api, {"notes": True, "forge_url": None})
    assert resp.status_code == 200, resp.text
    after = resp.json()
    assert after == {**before, "notes": True}
    assert raw_row(api)["forge_token"] == sealed  # untouched
    after = patch(api, {"status_context": None, "poll_interval": None, "webhook_secret": None, "enabled": False}).json()
    assert (after["status_context"], after["poll_interval_s"], after["webhook_secret_set"], after["enabled"]) == (
        None, None, False, False)
    after = patch(api, {"poll_interval": 90, "webhook_secret": "new", "enabled": True}).json()
    assert (after["poll_interval_s"], after["webhook_secret_set"], after["enabled"]) == (90.0, True, True)
    assert raw_row(api)["webhook_secret"] == "new"
    assert patch(api, {}).json() == after  # nothing to change is no change


def test_patch_forge_token_null_clears_it(api: Api) -> None:
    add(api, forge_token=TOKEN)
    resp = patch(api, {"forge_token": None})
    assert resp.status_code == 200 and resp.json()["forge_token_set"] is False
    assert raw_row(api)["forge_token"] is None


def test_patch_replaces_the_token_sealed_again(api: Api) -> None:
    add(api, forge_token=TOKEN)
    first = raw_row(api)["forge_token"]
    assert patch(api, {"forge_token": "glpat-second"}).json()["forge_token_set"] is True
    second = raw_row(api)["forge_token"]
    assert second != first and SecretBox.for_home(api.services.settings.home).open(second) == "glpat-second"


def test_patch_a_token_replaces_the_token_file_and_back(api: Api, token_file: Path) -> None:
    add(api, forge_token_file=str(token_file))
    repo = patch(api, {"forge_token": TOKEN}).json()
    assert repo["forge_token_set"] is True and repo["forge_token_file"] is None
    repo = patch(api, {"forge_token_file": str(token_file)}).json()
    assert repo["forge_token_set"] is False and repo["forge_token_file"] == str(token_file)
    assert raw_row(api)["forge_token"] is None
    assert "not both" in error(patch(api, {"forge_token": TOKEN, "forge_token_file": str(token_file)}))


def test_patch_a_new_forge_url_needs_the_token_again(api: Api) -> None:
    add(api, forge_url="https://github.example/api/v3", forge_token=TOKEN)
    message = error(patch(api, {"forge_url": "https://elsewhere.example/api/v3"}))
    assert "field 'forge_url'" in message and "send forge_token again" in message
    assert api.get("/api/v1/repos/acme/app").json()["forge_url"] == "https://github.example/api/v3"
    assert patch(api, {"forge_url": "https://github.example/api/v3"}).status_code == 200  # the same URL
    resp = patch(api, {"forge_url": "https://elsewhere.example/api/v3", "forge_token": TOKEN})
    assert resp.status_code == 200 and resp.json()["forge_url"] == "https://elsewhere.example/api/v3"
    assert patch(api, {"forge_url": None, "forge_token": None}).status_code == 200
    assert patch(api, {"forge_url": "https://third.example/api/v3"}).status_code == 200  # no token stored


def test_patch_the_github_app(api: Api, tmp_path: Path) -> None:
    add(api)
    message = error(patch(api, {"github_app_id": 7}))
    assert "field 'github_app_key_file'" in message
    repo = patch(api, {"github_app_id": 7, "github_app_key_file": "/etc/clarity/app.pem"}).json()
    assert repo["github_app_id"] == 7 and "does not exist" in repo["warnings"][0]
    assert patch(api, {"github_installation_id": 99}).json()["github_installation_id"] == 99
    assert "field 'github_app_key_file': required with github_app_id" in error(patch(api, {"github_app_key_file": None}))
    repo = patch(api, {"github_app_id": None}).json()  # no App: its key and installation go with it
    assert (repo["github_app_id"], repo["github_app_key_file"], repo["github_installation_id"]) == (None, None, None)


def test_patch_refuses_what_cannot_change_and_bad_values(api: Api) -> None:
    add(api, forge="gitlab", forge_token=TOKEN)
    assert "unknown field(s): forge, url" in error(patch(api, {"forge": "github", "url": "/x"}))
    assert "field 'github_app_id'" in error(patch(api, {"github_app_id": 1, "github_app_key_file": "/etc/k.pem"}))
    assert "field 'notes': expected true or false, got null" in error(patch(api, {"notes": None}))
    assert "field 'enabled'" in error(patch(api, {"enabled": "no"}))
    assert "field 'poll_interval'" in error(patch(api, {"poll_interval": "soon"}))
    assert "field 'status_context'" in error(patch(api, {"status_context": "{ref}"}))
    generic = api.post("/api/v1/repos", {"name": "acme/plain", "url": "/x"})
    assert generic.status_code == 201
    assert "has no status API" in error(patch(api, {"forge_token": TOKEN}, name="acme/plain"))
    assert patch(api, {"notes": True}, name="acme/plain").json()["notes"] is True
    assert error(patch(api, {"notes": True}, name="acme/none"), 404) == "no repository acme/none"
    assert patch(api, {"notes": True}).status_code == 200


def test_patch_needs_an_admin_key(api: Api) -> None:
    add(api)
    resp = api.client.patch("/api/v1/repos/acme/app", json={"notes": True}, headers=api.auth(api.reader))
    assert resp.status_code == 403
    assert api.client.patch("/api/v1/repos/acme/app", json={"notes": True}).status_code == 401


def test_the_openapi_document_describes_the_settings(api: Api) -> None:
    doc = api.client.get("/api/v1/openapi.json").json()
    post = doc["paths"]["/api/v1/repos"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    change = doc["paths"]["/api/v1/repos/{owner}/{name}"]["patch"]["requestBody"]["content"]["application/json"]["schema"]
    for field in ("forge_url", "forge_token", "forge_token_file", "github_app_id", "github_app_key_file",
                  "github_installation_id", "status_context", "notes"):
        assert field in post["properties"] and field in change["properties"]
    assert change["properties"]["forge_token"]["type"] == ["string", "null"]
    assert change["properties"]["notes"]["type"] == "boolean"
    assert post["properties"]["forge_token"]["writeOnly"] is True
    json.dumps(doc)  # still plain JSON


def test_file_paths_are_stored_normalized(api: Api, token_file: Path) -> None:
    roundabout = os.path.join(str(token_file.parent), "..", token_file.parent.name, token_file.name)
    assert add(api, forge_token_file=roundabout).json()["forge_token_file"] == str(token_file)
