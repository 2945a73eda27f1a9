"""`clarity repo add|set|show` with plugin grants (--allow-plugin, --plugin-permissions-default),
against a real `clarity controller` process: `set` merges into what is stored, `show` says what is
in effect and where it comes from."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from typing import Any, Iterator

import pytest

from tests.processes import ROOT, ControllerProcess, clarity_env

SETTING = "notification=secrets"  # the controller's setting plugin_permissions in these tests


class Controller(ControllerProcess):
    def clarity(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "controller.cli", *args, "--controller", self.url],
                              env=self.env, input="", capture_output=True, text=True, timeout=60, cwd=ROOT)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.clarity(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def fails(self, *args: str) -> str:
        done = self.clarity(*args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("clarity: error: ") and "Traceback" not in done.stderr, done.stderr
        return done.stderr

    def show(self, name: str) -> dict[str, str]:
        lines = self.ok("repo", "show", name).stdout.splitlines()
        return {label.strip(): value.strip() for label, _, value in (line.partition(":") for line in lines)}

    def stored(self, name: str) -> Any:
        with sqlite3.connect(self.home / "clarity.db") as db:
            (value,) = db.execute("SELECT plugin_permissions FROM repos WHERE name = ?", (name,)).fetchone()
        return None if value is None else json.loads(value)


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    tmp = tmp_path_factory.mktemp("ctl")
    home = tmp / "home"
    c = Controller(home, tmp / "controller.log", env=clarity_env(home, CLARITY_PLUGIN_PERMISSIONS=SETTING))
    c.start()
    yield c
    c.stop()


FROM_SETTING = "(from the controller's setting plugin_permissions)"
FROM_REPO = "(from this repository's own (clarity repo set --allow-plugin))"


def test_add_with_grants_and_show(controller: Controller) -> None:
    done = controller.ok("repo", "add", "acme/app", "--url", "https://git.example/acme/app.git",
                         "--allow-plugin", "notification=network,secrets", "--allow-plugin", "storage=")
    assert done.stdout.startswith("added acme/app")
    assert controller.stored("acme/app") == {"notification": ["network", "secrets"], "storage": []}
    assert controller.show("acme/app")["plugin grants"] == f"notification=network,secrets; storage=(none) {FROM_REPO}"
    as_json = json.loads(controller.ok("repo", "show", "acme/app", "--json").stdout)
    assert as_json["plugin_permissions_source"] == "repository"


def test_a_repository_without_its_own_shows_the_setting(controller: Controller) -> None:
    controller.ok("repo", "add", "acme/plain", "--url", "https://git.example/acme/plain.git")
    assert controller.stored("acme/plain") is None
    assert controller.show("acme/plain")["plugin grants"] == f"notification=secrets {FROM_SETTING}"


def test_set_merges_into_what_is_stored(controller: Controller) -> None:
    controller.ok("repo", "add", "acme/merge", "--url", "https://git.example/acme/merge.git",
                  "--allow-plugin", "notification=network", "--allow-plugin", "storage=host_paths")
    done = controller.ok("repo", "set", "acme/merge", "--allow-plugin", "notification=network,secrets",
                         "--allow-plugin", "transformation=network")
    assert done.stdout.splitlines() == [
        "changed acme/merge: plugin_permissions",
        f"plugin grants: notification=network,secrets; storage=host_paths; transformation=network {FROM_REPO}"]
    assert controller.stored("acme/merge") == {"notification": ["network", "secrets"], "storage": ["host_paths"],
                                               "transformation": ["network"]}
    controller.ok("repo", "set", "acme/merge", "--allow-plugin", "storage=")  # NAME= takes them away
    assert controller.stored("acme/merge") == {"notification": ["network", "secrets"], "storage": [],
                                               "transformation": ["network"]}
    assert controller.show("acme/merge")["plugin grants"] == (
        f"notification=network,secrets; storage=(none); transformation=network {FROM_REPO}")
    # other settings leave the grants alone
    controller.ok("repo", "set", "acme/merge", "--disable")
    assert controller.stored("acme/merge")["notification"] == ["network", "secrets"]
    done = controller.ok("repo", "set", "acme/merge", "--plugin-permissions-default")
    assert done.stdout.splitlines()[0] == "changed acme/merge: plugin_permissions"
    assert controller.stored("acme/merge") is None
    assert controller.show("acme/merge")["plugin grants"] == f"notification=secrets {FROM_SETTING}"


def test_the_first_set_starts_from_the_setting(controller: Controller) -> None:
    controller.ok("repo", "add", "acme/first", "--url", "https://git.example/acme/first.git")
    controller.ok("repo", "set", "acme/first", "--allow-plugin", "storage=host_paths")
    assert controller.stored("acme/first") == {"notification": ["secrets"], "storage": ["host_paths"]}
    assert controller.show("acme/first")["plugin grants"] == f"notification=secrets; storage=host_paths {FROM_REPO}"


def test_a_plugin_not_installed_is_a_warning(controller: Controller) -> None:
    done = controller.ok("repo", "add", "acme/later", "--url", "https://git.example/acme/later.git",
                         "--allow-plugin", "not-yet=network")
    assert "clarity: warning: field 'plugin_permissions': plugin not-yet is not installed" in done.stderr
    assert controller.stored("acme/later") == {"not-yet": ["network"]}


@pytest.mark.parametrize("args, words", [
    (["repo", "set", "acme/app", "--allow-plugin", "notification=root"],
     "--allow-plugin notification=root: unknown permission(s) root (known: network, secrets, host_paths)"),
    (["repo", "set", "acme/app", "--allow-plugin", "notification"], "expected NAME=PERMISSION[,PERMISSION]"),
    (["repo", "set", "acme/app", "--allow-plugin", "=network"], "expected NAME=PERMISSION[,PERMISSION]"),
    (["repo", "set", "acme/app", "--allow-plugin", "notification=network", "--plugin-permissions-default"],
     "not with --allow-plugin"),
    (["repo", "add", "acme/new", "--url", "/x", "--plugin-permissions-default"], "is for `clarity repo set`"),
    (["repo", "set", "acme/app", "--allow-plugin", "Bad Name=network"],
     "field 'plugin_permissions.Bad Name': expected a plugin's name"),
    (["repo", "set", "acme/none", "--allow-plugin", "notification=network"], "no repository acme/none"),
])
def test_mistakes_are_one_line_and_change_nothing(controller: Controller, args: list[str], words: str) -> None:
    if controller.clarity("repo", "show", "acme/app").returncode != 0:
        controller.ok("repo", "add", "acme/app", "--url", "https://git.example/acme/app.git")
    before = controller.stored("acme/app")
    message = controller.fails(*args)
    assert words in message, message
    assert controller.stored("acme/app") == before


def test_help_says_how_set_combines(controller: Controller) -> None:
    text = " ".join(controller.ok("repo", "--help").stdout.split())
    assert "--allow-plugin NAME=PERM[,PERM]" in text and "--plugin-permissions-default" in text
    assert "each --allow-plugin replaces that plugin's entry and the others are kept" in text
