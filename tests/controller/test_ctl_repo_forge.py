"""`clarity repo add|set|show` with the forge settings, against a real `clarity controller` process:
the token read from stdin, sealed by the controller, never printed; `set` changes and clears."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from controller.secretbox import KEY_FILE, PREFIX, SecretBox
from tests.processes import ROOT, ControllerProcess

TOKEN = "ghp_cliTOKEN0123456789abcdef"


class Controller(ControllerProcess):
    def clarity(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "controller.cli", *args, "--controller", self.url],
                              env=self.env, input=stdin if stdin is not None else "", capture_output=True, text=True,
                              timeout=60, cwd=ROOT)

    def ok(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = self.clarity(*args, stdin=stdin)
        assert done.returncode == 0, done.stdout + done.stderr
        assert TOKEN not in done.stdout + done.stderr
        return done

    def fails(self, *args: str, stdin: str | None = None) -> str:
        done = self.clarity(*args, stdin=stdin)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("clarity: error: ") and "Traceback" not in done.stderr, done.stderr
        assert TOKEN not in done.stdout + done.stderr
        return done.stderr

    def show(self, name: str) -> dict[str, str]:
        lines = self.ok("repo", "show", name).stdout.splitlines()
        return {label.strip(): value.strip() for label, _, value in (line.partition(":") for line in lines)}

    def sealed_token(self, name: str) -> str | None:
        with sqlite3.connect(self.home / "clarity.db") as db:
            (value,) = db.execute("SELECT forge_token FROM repos WHERE name = ?", (name,)).fetchone()
        return value  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    tmp = tmp_path_factory.mktemp("ctl")
    c = Controller(tmp / "home", tmp / "controller.log")
    c.start()
    yield c
    c.stop()


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    """A directory outside the controller's home, for token and key files."""
    path = tmp_path / "etc"
    path.mkdir()
    return path


def test_add_with_a_token_from_stdin_sealed_and_never_shown(controller: Controller) -> None:
    done = controller.ok("repo", "add", "acme/app", "--url", "https://github.com/acme/app.git", "--forge", "github",
                         "--forge-url", "https://github.example/api/v3", "--forge-token", "-",
                         "--status-context", "ci/{workflow}", "--notes", stdin=TOKEN + "\n")
    assert done.stdout.startswith("added acme/app (github,")
    sealed = controller.sealed_token("acme/app")
    assert sealed is not None and sealed.startswith(PREFIX) and TOKEN not in sealed
    assert SecretBox.for_home(controller.home, env={}).open(sealed) == TOKEN  # no newline kept
    assert (controller.home / KEY_FILE).stat().st_mode & 0o777 == 0o600
    shown = controller.show("acme/app")
    assert shown["forge token"] == "set (sealed in the controller's database)"
    assert shown["forge API URL"] == "https://github.example/api/v3"
    assert shown["status context"] == "ci/{workflow}" and shown["git notes"] == "on"
    assert shown["GitHub App"] == "none" and shown["enabled"] == "yes"
    as_json = json.loads(controller.ok("repo", "show", "acme/app", "--json").stdout)
    assert as_json["forge_token_set"] is True and "forge_token" not in as_json


def test_a_token_on_the_command_line_works_and_help_says_to_prefer_stdin(controller: Controller) -> None:
    controller.ok("repo", "add", "acme/cmdline", "--url", "https://gitlab.example/acme/cmdline.git",
                  "--forge", "gitlab", "--forge-token", TOKEN)
    sealed = controller.sealed_token("acme/cmdline")
    assert sealed is not None and SecretBox.for_home(controller.home, env={}).open(sealed) == TOKEN
    help_text = " ".join(controller.ok("repo", "--help").stdout.split())
    assert "'-' reads it from stdin" in help_text and "visible in `ps`" in help_text


def test_add_with_a_token_file_and_a_github_app(controller: Controller, etc: Path) -> None:
    (etc / "token").write_text(TOKEN)
    (etc / "app.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\n")
    controller.ok("repo", "add", "acme/app-file", "--url", "https://github.com/acme/app.git", "--forge", "github",
                  "--forge-token-file", str(etc / "token"), "--github-app-id", "123",
                  "--github-app-key-file", str(etc / "app.pem"), "--github-installation-id", "456")
    assert controller.sealed_token("acme/app-file") is None
    shown = controller.show("acme/app-file")
    assert shown["forge token"] == f"read from {etc / 'token'} (on the controller)"
    assert shown["GitHub App"] == f"123, key {etc / 'app.pem'}, installation 456"
    assert shown["status context"] == "clarity/{workflow} (default)" and shown["git notes"] == "off"


def test_set_changes_and_clears(controller: Controller, etc: Path) -> None:
    controller.ok("repo", "add", "acme/set", "--url", "https://gitea.example/acme/set.git", "--forge", "gitea",
                  "--forge-token", "-", "--notes", "--poll", "5m", "--webhook-secret", "hook", stdin=TOKEN)
    done = controller.ok("repo", "set", "acme/set", "--no-notes", "--status-context", "gitea/{workflow}",
                         "--disable", "--poll", "off")
    assert done.stdout.strip() == "changed acme/set: enabled, notes, poll_interval, status_context"
    shown = controller.show("acme/set")
    assert (shown["git notes"], shown["status context"], shown["enabled"], shown["polling"]) == (
        "off", "gitea/{workflow}", "no", "off")
    assert shown["forge token"].startswith("set")
    controller.ok("repo", "set", "acme/set", "--clear-forge-token", "--status-context", "", "--enable")
    shown = controller.show("acme/set")
    assert shown["forge token"] == "not set" and shown["status context"] == "clarity/{workflow} (default)"
    assert shown["enabled"] == "yes" and controller.sealed_token("acme/set") is None
    (etc / "token").write_text(TOKEN)
    controller.ok("repo", "set", "acme/set", "--forge-token-file", str(etc / "token"))
    assert controller.show("acme/set")["forge token"] == f"read from {etc / 'token'} (on the controller)"
    controller.ok("repo", "set", "acme/set", "--forge-token", "-", stdin="glpat-replaced\n")
    shown = controller.show("acme/set")
    assert shown["forge token"].startswith("set") and controller.sealed_token("acme/set") is not None


def test_set_a_new_forge_url_needs_the_token_again(controller: Controller) -> None:
    controller.ok("repo", "add", "acme/moved", "--url", "https://gitea.example/acme/moved.git", "--forge", "gitea",
                  "--forge-url", "https://gitea.example/api/v1", "--forge-token", "-", stdin=TOKEN)
    err = controller.fails("repo", "set", "acme/moved", "--forge-url", "https://other.example/api/v1")
    assert "field 'forge_url'" in err and "send forge_token again" in err
    controller.ok("repo", "set", "acme/moved", "--forge-url", "https://other.example/api/v1", "--forge-token", "-",
                  stdin=TOKEN)
    assert controller.show("acme/moved")["forge API URL"] == "https://other.example/api/v1"


def test_a_missing_file_is_a_warning(controller: Controller, etc: Path) -> None:
    done = controller.ok("repo", "add", "acme/later", "--url", "https://github.com/acme/later.git",
                         "--forge", "github", "--forge-token-file", str(etc / "not-yet"))
    assert done.stderr.startswith("clarity: warning: field 'forge_token_file':") and "does not exist" in done.stderr


@pytest.mark.parametrize("args, stdin, words", [
    (["repo", "add", "acme/bad", "--url", "/x", "--forge-token", TOKEN], None, "the generic forge has no status API"),
    (["repo", "add", "acme/bad", "--url", "/x", "--forge", "github", "--status-context", "ci/{ref}"], None,
     "field 'status_context': the only placeholder is {workflow}, got {ref}"),
    (["repo", "add", "acme/bad", "--url", "/x", "--forge", "github", "--forge-token-file", "token.txt"], None,
     "field 'forge_token_file': expected an absolute path"),
    (["repo", "add", "acme/bad", "--url", "/x", "--forge", "github", "--forge-token", TOKEN,
      "--forge-token-file", "/etc/t"], None, "not both"),
    (["repo", "add", "acme/bad", "--url", "/x", "--forge", "gitlab", "--github-app-id", "1",
      "--github-app-key-file", "/etc/k.pem"], None, "GitHub App settings are for forge github"),
    (["repo", "add", "acme/bad", "--url", "/x", "--forge", "github", "--github-app-id", "1"], None,
     "field 'github_app_key_file': required with github_app_id"),
    (["repo", "add", "acme/bad", "--url", "/x", "--forge", "github", "--forge-token", "-"], "\n",
     "--forge-token -: nothing was read from stdin"),
    (["repo", "add", "acme/bad", "--url", "/x", "--clear-forge-token"], None, "are for `clarity repo set`"),
    (["repo", "set", "acme/app", "--url", "/elsewhere"], None, "cannot change --url or --forge"),
    (["repo", "set", "acme/app"], None, "nothing to change"),
    (["repo", "set", "acme/app", "--clear-forge-token", "--forge-token", TOKEN], None, "not with --forge-token"),
    (["repo", "set", "acme/none", "--notes"], None, "404: no repository acme/none"),
    (["repo", "show", "acme/none"], None, "404: no repository acme/none"),
])
def test_mistakes_are_one_line_and_never_echo_the_token(controller: Controller, args: list[str], stdin: str | None,
                                                        words: str) -> None:
    err = controller.fails(*args, stdin=stdin)
    assert words in err and len(err.strip().splitlines()) == 1, err
