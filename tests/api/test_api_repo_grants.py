"""A repository's own plugin grants (`plugin_permissions`): set, changed, cleared and refused through
POST and PATCH /api/v1/repos; the starter lints and starts each repository's runs with its grants
(or the controller's setting); the schema migration from v6 keeps the repositories."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from controller.store import tables
from controller.store.migrations import MIGRATIONS, current_version
from controller.store.runs import open_engine
from controller.triggers.events import PushEvent
from tests.api.conftest import Api, git

NOTIFY = """\
workflow:
  name: notify
  triggers:
    - type: push
    - type: manual
  tasks:
    - name: ping
      type: notification
      network: host
      config: {webhook: {url: "http://127.0.0.1:9/x"}}
"""
SCHEDULED = NOTIFY.replace("    - type: manual\n", "    - type: manual\n    - {type: schedule, cron: \"0 3 * * *\"}\n")
SETTING = {"storage": ["host_paths"]}  # the controller's default setting plugin_permissions


def add(api: Api, name: str = "acme/app", url: str = "https://git.example/acme/app.git", **body: Any) -> Any:
    return api.post("/api/v1/repos", {"name": name, "url": url, **body})


def patch(api: Api, body: Any, name: str = "acme/app", key: str | None = None) -> Any:
    return api.client.patch(f"/api/v1/repos/{name}", json=body, headers=api.auth(key))


def error(resp: Any, status: int = 400) -> str:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == "invalid_field", resp.text
    return str(resp.json()["error"]["message"])


def stored(api: Api, name: str = "acme/app") -> Any:
    with api.services.store.engine.connect() as conn:
        return conn.execute(sa.select(tables.repos.c.plugin_permissions).where(tables.repos.c.name == name)).scalar()


@pytest.fixture
def notify_repo(tmp_path: Path) -> Path:
    """A git repository whose `.clarity/notify.yaml` has a notification task with `network: host`."""
    path = tmp_path / "notify-src"
    (path / ".clarity").mkdir(parents=True)
    (path / ".clarity" / "notify.yaml").write_text(NOTIFY)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "notify")
    return path


# -- the API -----------------------------------------------------------------------------------


def test_a_new_repository_follows_the_controllers_setting(make_api: Callable[..., Api], database_url: str) -> None:
    api = make_api(database_url)
    repo = add(api).json()
    assert repo["plugin_permissions"] is None and repo["plugin_permissions_source"] == "controller"
    assert repo["effective_plugin_permissions"] == SETTING
    assert stored(api) is None  # SQL NULL, not a JSON null
    with api.services.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.repos)
                            .where(tables.repos.c.plugin_permissions.is_(None))).scalar() == 1


def test_the_setting_shown_is_the_controllers(make_api: Callable[..., Api]) -> None:
    api = make_api(plugin_permissions={"notification": frozenset({"secrets", "network"})})
    repo = add(api).json()
    assert repo["effective_plugin_permissions"] == {"notification": ["network", "secrets"]}
    assert repo["plugin_permissions_source"] == "controller"


def test_set_patch_and_back_to_the_setting(make_api: Callable[..., Api], database_url: str) -> None:
    api = make_api(database_url)
    resp = add(api, plugin_permissions={"notification": ["secrets", "network", "network"], "storage": []})
    assert resp.status_code == 201, resp.text
    repo = resp.json()
    assert repo["plugin_permissions"] == {"notification": ["network", "secrets"], "storage": []}
    assert repo["effective_plugin_permissions"] == {"notification": ["network", "secrets"], "storage": []}
    assert repo["plugin_permissions_source"] == "repository" and "warnings" not in repo
    assert stored(api) == {"notification": ["network", "secrets"], "storage": []}
    assert api.get("/api/v1/repos/acme/app", key=api.reader).json() == repo
    assert api.get("/api/v1/repos").json()["repos"] == [repo]
    assert api.services.repos.get("acme/app").plugin_permissions == {"notification": ["network", "secrets"],
                                                                      "storage": []}

    changed = patch(api, {"plugin_permissions": {"notification": ["network"]}})  # replaces the whole object
    assert changed.status_code == 200, changed.text
    assert changed.json()["plugin_permissions"] == {"notification": ["network"]}
    assert patch(api, {"enabled": False}).json()["plugin_permissions"] == {"notification": ["network"]}  # kept

    back = patch(api, {"plugin_permissions": None}).json()
    assert back["plugin_permissions"] is None and back["plugin_permissions_source"] == "controller"
    assert back["effective_plugin_permissions"] == SETTING and stored(api) is None

    empty = patch(api, {"plugin_permissions": {}}).json()  # its own grants: nothing at all
    assert empty["plugin_permissions"] == {} and empty["effective_plugin_permissions"] == {}
    assert empty["plugin_permissions_source"] == "repository"


def test_add_with_null_follows_the_setting(api: Api) -> None:
    repo = add(api, plugin_permissions=None).json()
    assert repo["plugin_permissions"] is None and repo["plugin_permissions_source"] == "controller"


@pytest.mark.parametrize("value, field, words", [
    ({"notification": ["network", "root"]}, "plugin_permissions.notification",
     "unknown permission(s) 'root' (known: network, secrets, host_paths)"),
    ({"notification": "network"}, "plugin_permissions.notification", "expected an array of permissions"),
    ({"notification": ["network", 1]}, "plugin_permissions.notification", "expected an array of permissions"),
    ({"Not A Plugin": ["network"]}, "plugin_permissions.Not A Plugin", "expected a plugin's name"),
    (["notification"], "plugin_permissions", "expected an object {plugin: [permission, ...]} (or null), got an array"),
    ("notification=network", "plugin_permissions", "got a string"),
])
def test_invalid_grants_are_a_400_naming_the_field(api: Api, value: Any, field: str, words: str) -> None:
    message = error(add(api, plugin_permissions=value))
    assert message.startswith(f"field '{field}': ") and words in message, message
    assert api.get("/api/v1/repos/acme/app").status_code == 404  # nothing registered
    add(api)
    message = error(patch(api, {"plugin_permissions": value}))
    assert message.startswith(f"field '{field}': ") and words in message, message
    assert stored(api) is None


def test_a_plugin_not_installed_is_a_warning(api: Api) -> None:
    repo = add(api, plugin_permissions={"no-such-plugin": ["network"], "notification": ["network"]}).json()
    assert repo["warnings"] == ["field 'plugin_permissions': plugin no-such-plugin is not installed on the "
                                "controller; the grant applies once it is"]
    assert repo["plugin_permissions"] == {"no-such-plugin": ["network"], "notification": ["network"]}


def test_patch_needs_an_admin_key(api: Api) -> None:
    add(api)
    assert patch(api, {"plugin_permissions": {"notification": ["network"]}}, key=api.reader).status_code == 403
    assert stored(api) is None


def test_the_openapi_document_describes_the_field(api: Api) -> None:
    doc = api.client.get("/api/v1/openapi.json").json()
    one = doc["paths"]["/api/v1/repos/{owner}/{name}"]
    post = doc["paths"]["/api/v1/repos"]["post"]
    for op in (post, one["patch"]):
        schema = op["requestBody"]["content"]["application/json"]["schema"]["properties"]["plugin_permissions"]
        assert "null" in schema["type"] and "object" in schema["type"]
        assert schema["additionalProperties"]["items"]["enum"] == ["network", "secrets", "host_paths"]
        assert "controller's setting" in schema["description"]
        assert "plugin_permissions" in op["description"]


# -- the starter: lint and runs with the repository's grants -----------------------------------


def test_a_granted_repository_lints_clean_and_another_gets_a_lint_failed_run(api: Api, notify_repo: Path) -> None:
    """Both repositories have the very same workflow file (one blob): the lint of one must not be
    the other's (the starter's lint cache)."""
    add(api, "acme/granted", str(notify_repo), plugin_permissions={"notification": ["network"]})
    add(api, "acme/plain", str(notify_repo))
    for _ in range(2):  # the second time from the lint cache
        good = api.post("/api/v1/repos/acme/granted/trigger", {"ref": "main"})
        assert good.status_code == 201, good.text
        (run_id,) = good.json()["runs"]
        run = api.get(f"/api/v1/runs/{run_id}").json()
        assert run["state"] != "failed" and not run["message"], run
        assert [t["name"] for t in run["tasks"]] == ["ping"]
        assert api.services.store.get_run(run_id).context["grants"] == {"notification": ["network"]}

        bad = api.post("/api/v1/repos/acme/plain/trigger", {"ref": "main"})
        assert bad.status_code == 201, bad.text
        (failed_id,) = bad.json()["runs"]
        failed = api.get(f"/api/v1/runs/{failed_id}").json()
        assert failed["state"] == "failed" and failed["tasks"] == []
        assert "plugin notification needs the network permission here, which is not granted" in failed["message"]
        assert ".clarity/notify.yaml:" in failed["message"]


def test_changing_the_grants_changes_the_next_runs(api: Api, notify_repo: Path) -> None:
    add(api, "acme/app", str(notify_repo))
    (first,) = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main"}).json()["runs"]
    assert api.get(f"/api/v1/runs/{first}").json()["state"] == "failed"
    patch(api, {"plugin_permissions": {"notification": ["network", "secrets"]}})
    (second,) = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main"}).json()["runs"]
    assert api.get(f"/api/v1/runs/{second}").json()["state"] != "failed"
    assert api.services.store.get_run(second).context["grants"] == {"notification": ["network", "secrets"]}
    patch(api, {"plugin_permissions": None})
    (third,) = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main"}).json()["runs"]
    assert api.get(f"/api/v1/runs/{third}").json()["state"] == "failed"


def test_a_push_uses_the_repositorys_grants(api: Api, notify_repo: Path) -> None:
    sha = git(notify_repo, "rev-parse", "HEAD")
    runs: dict[str, list[int]] = {}
    for name, grants in (("acme/granted", {"notification": ["network"]}), ("acme/plain", None)):
        add(api, name, str(notify_repo), forge="generic", plugin_permissions=grants)
        event = PushEvent(repo=name, ref="refs/heads/main", before="0" * 40, after=sha, created=True, deleted=False,
                          message="notify", author="Dev One", sender="dev", changed_files=None,
                          clone_url=str(notify_repo))
        runs[name] = api.services.starter.push(api.services.repos.get(name), event, source={"test": True}).runs
    (good,) = runs["acme/granted"]
    (bad,) = runs["acme/plain"]
    assert api.services.store.get_run(good).state != "failed"
    assert api.services.store.get_run(good).context["grants"] == {"notification": ["network"]}
    failed = api.services.store.get_run(bad)
    assert failed.state == "failed" and "needs the network permission here" in (failed.message or "")


def test_the_setting_applies_to_a_repository_without_its_own(make_api: Callable[..., Api], notify_repo: Path) -> None:
    api = make_api(plugin_permissions={"notification": frozenset({"network"})})
    add(api, "acme/app", str(notify_repo))
    (run_id,) = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main"}).json()["runs"]
    assert api.get(f"/api/v1/runs/{run_id}").json()["state"] != "failed"
    patch(api, {"plugin_permissions": {"storage": ["host_paths"]}})  # its own replace the setting, whole
    (run_id,) = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main"}).json()["runs"]
    assert api.get(f"/api/v1/runs/{run_id}").json()["state"] == "failed"


def test_declared_triggers_lint_with_the_repositorys_grants(api: Api, notify_repo: Path) -> None:
    (notify_repo / ".clarity" / "notify.yaml").write_text(SCHEDULED)
    git(notify_repo, "commit", "-q", "-am", "nightly")
    add(api, "acme/granted", str(notify_repo), plugin_permissions={"notification": ["network"]})
    add(api, "acme/plain", str(notify_repo))
    _ref, _sha, declared = api.services.starter.declared(api.services.repos.get("acme/granted"))
    assert [d.type for d in declared] == ["schedule"]
    _ref, _sha, declared = api.services.starter.declared(api.services.repos.get("acme/plain"))
    assert declared == []  # a file that does not lint declares nothing


# -- the migration -----------------------------------------------------------------------------


def test_the_migration_from_v6_keeps_the_repositories(make_api: Callable[..., Api], database_url: str) -> None:
    engine = open_engine(database_url)
    with engine.begin() as conn:  # a database made by the release at version 6
        current_version(conn)
        for number, step in MIGRATIONS:
            if number > 6:
                break
            step(conn)
            conn.execute(tables.schema_version.insert().values(version=number, applied_at=0))
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO repos (name, url, forge, webhook_secret, poll_interval_s, enabled, created_at, notes, "
            "status_context) VALUES ('acme/old', 'https://git.example/acme/old.git', 'github', 'hook', 300, "
            ":enabled, 1, :notes, 'ci/{workflow}')"), {"enabled": True, "notes": True})
        (old_id,) = conn.execute(sa.text("SELECT id FROM repos WHERE name = 'acme/old'")).one()
    engine.dispose()

    api = make_api(database_url)  # the controller starts: Store.open migrates to the newest version
    with api.services.store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar() == MIGRATIONS[-1][0] >= 7
    repo = api.get("/api/v1/repos/acme/old").json()
    assert (repo["id"], repo["url"], repo["forge"], repo["poll_interval_s"], repo["webhook_secret_set"],
            repo["notes"], repo["status_context"]) == (old_id, "https://git.example/acme/old.git", "github", 300.0,
                                                       True, True, "ci/{workflow}")
    assert repo["plugin_permissions"] is None and repo["plugin_permissions_source"] == "controller"
    assert repo["effective_plugin_permissions"] == SETTING
    changed = patch(api, {"plugin_permissions": {"notification": ["network"]}}, name="acme/old").json()
    assert changed["plugin_permissions"] == {"notification": ["network"]}
