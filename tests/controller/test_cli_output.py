"""What the `clarity` command line shows a person: a bad option under the usage of the command it
belongs to, every command in `clarity --help`, no test-only option in `--help`, and a line per run
(not the API's JSON, which `--json` gives) from the commands that start runs on a controller."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from controller.cli import main
from tests.processes import ROOT, ControllerProcess, wait_until

pytestmark = pytest.mark.docker


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The stderr of a command line argparse refuses (exit 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(("argv", "usage"), [
    (["run", "--bogus"], "usage: clarity run "),
    (["run", "--dirty", "ci.yaml", "--bogus"], "usage: clarity run "),
    (["rerun", "3", "--bogus"], "usage: clarity rerun "),
    (["repo", "add", "acme/app", "--bogus"], "usage: clarity repo "),
    (["runs", "show", "3", "4"], "usage: clarity runs "),
    (["plugins", "list", "--bogus"], "usage: clarity plugins list "),  # a command of a command
])
def test_an_unknown_option_is_reported_under_its_commands_usage(
        capsys: pytest.CaptureFixture[str], argv: list[str], usage: str) -> None:
    err = usage_error(capsys, *argv)
    assert err.startswith(usage), err
    assert "usage: clarity [-h] [--version] COMMAND" not in err
    prog = usage.removeprefix("usage: ").strip()
    assert f"{prog}: error: unrecognized arguments: {argv[-1]}" in err, err


def test_runner_is_listed_with_the_other_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert re.search(r"^    runner +a runner agent", listed, re.M), listed
    err = usage_error(capsys, "nope")
    assert "invalid choice: 'nope'" in err and "'runner'" in err, err
    with pytest.raises(SystemExit):  # still the agent's own parser, before anything of the controller
        main(["runner", "--help"])
    assert capsys.readouterr().out.startswith("usage: clarity runner [-h] [--controller URL]")


def test_the_fake_backend_works_but_is_not_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    shown = capsys.readouterr().out
    assert "--backend" not in shown and "fake" not in shown, shown
    err = usage_error(capsys, "run", "--backend", "nope")
    assert "argument --backend: invalid choice: 'nope'" in err and "usage: clarity run " in err


# -- commands that start runs on a real controller (`clarity up`: tasks in Docker) -----------------

CI = """\
workflow:
  name: ci
  triggers:
    - type: manual
  tasks:
    - name: build
      image: clarity-busybox:latest
      commands: ["echo built"]
    - name: flaky
      image: clarity-busybox:latest
      commands: ["echo trying", "exit 3"]
    - name: after
      image: clarity-busybox:latest
      needs: [flaky]
      commands: ["echo after"]
"""

RELEASE = """\
workflow:
  name: release
  triggers:
    - {type: event, name: deploy-requested}
    - {type: schedule, cron: "0 * * * *"}
  tasks:
    - name: ship
      image: clarity-busybox:latest
      commands: ["echo shipping"]
"""


class Controller(ControllerProcess):
    def clarity(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "controller.cli", *args, "--controller", self.url],
                              env=self.env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def ok(self, *args: str) -> list[str]:
        """The stdout lines of a command that must succeed."""
        done = self.clarity(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.splitlines()

    def finished(self, run_id: int) -> dict[str, Any]:
        with self.api() as api:
            return dict(wait_until(
                lambda: (r := api.get(f"/api/v1/runs/{run_id}").json())["state"] not in ("queued", "running") and r,
                lambda: f"run {run_id} did not finish:\n" + self.log.read_text()[-3000:], timeout=90, step=0.3))


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    src = tmp_path / "src"
    (src / ".clarity").mkdir(parents=True)
    (src / ".clarity" / "ci.yaml").write_text(CI)
    (src / ".clarity" / "release.yaml").write_text(RELEASE)
    env = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "d@example.org", "GIT_COMMITTER_NAME": "Dev",
           "GIT_COMMITTER_EMAIL": "d@example.org"}
    c = Controller(tmp_path / "home", tmp_path / "controller.log", command="up")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "first"]):
        subprocess.run(["git", *args], cwd=src, check=True, capture_output=True, env={**c.env, **env})
    c.start()
    try:
        c.ok("repo", "add", "acme/app", "--url", str(src))
        yield c
    finally:
        c.stop()


def run_line(c: Controller, line: str, why: str) -> int:
    """The run number of a line `run N STATE (WORKFLOW of acme/app, WHY): URL/api/v1/runs/N`."""
    found = re.fullmatch(rf"run (\d+) (queued|running|succeeded|failed) \((\w+) of acme/app, {re.escape(why)}\): "
                         rf"{re.escape(c.url)}/api/v1/runs/(\d+)", line)
    assert found and found[1] == found[4], line
    return int(found[1])


def test_trigger_and_rerun_print_a_line_per_run_and_json_on_request(controller: Controller) -> None:
    c = controller
    out = c.ok("trigger", "acme/app")
    assert len(out) == 2, out
    first = run_line(c, out[0], "manual, at main")
    assert out[1] == "not run: .clarity/release.yaml: it has no manual trigger (its triggers: event, schedule)"
    assert c.finished(first)["state"] == "failed"

    out = c.ok("rerun", str(first), "--failed")
    assert len(out) == 1, out  # was the whole new run and its trigger, ~150 lines of JSON
    again = run_line(c, out[0], f"re-run of run {first}, failed tasks only")
    out = c.ok("rerun", str(first))
    whole = run_line(c, out[0], f"re-run of run {first}")
    assert len(out) == 1 and len({first, again, whole}) == 3

    answer = json.loads(c.clarity("rerun", str(first), "--failed", "--json").stdout)
    assert answer["rerun_of"] == first and answer["trigger"]["failed_only"] is True
    answer = json.loads(c.clarity("trigger", "acme/app", "--json").stdout)
    assert list(answer) == ["runs", "started", "skipped"] and len(answer["runs"]) == 1
    for run_id in (again, whole, *answer["runs"]):
        c.finished(run_id)

    refused = c.clarity("rerun", "999")
    assert refused.returncode == 2 and "clarity: error: 404" in refused.stderr and not refused.stdout


def test_event_send_prints_a_line_per_run_and_json_on_request(controller: Controller) -> None:
    c = controller
    # the controller reads the repository's triggers on its next pass: until then nothing listens
    out = wait_until(lambda: c.ok("event", "send", "deploy-requested") or None,
                     lambda: "no run started:\n" + c.log.read_text()[-3000:], timeout=30, step=0.5)
    assert len(out) == 1, out
    started = run_line(c, out[0], "event deploy-requested")
    answer = json.loads(c.clarity("event", "send", "deploy-requested", "--json").stdout)
    assert answer["runs"] and answer["skipped"] == {}
    nobody = c.clarity("event", "send", "nobody-listens")
    assert nobody.returncode == 0 and nobody.stdout == ""
    assert "clarity: no workflow listens to the event 'nobody-listens'" in nobody.stderr
    for run_id in (started, *answer["runs"]):
        c.finished(run_id)


def test_backfill_show_is_readable_and_json_on_request(controller: Controller) -> None:
    c = controller
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    start, end = (hour - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"), (hour - timedelta(hours=2)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    out = c.ok("backfill", "start", "acme/app", ".clarity/release.yaml", "--from", start, "--to", end)
    assert out[0].startswith("backfill 1: 2 tick(s) of .clarity/release.yaml"), out
    shown = json.loads(c.clarity("backfill", "show", "1", "--json").stdout)
    assert shown["id"] == 1 and shown["workflow_file"] == ".clarity/release.yaml"
    deadline = time.monotonic() + 60
    while (out := c.ok("backfill", "show", "1"))[0] != "backfill 1: done, 2 run(s) fired":
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    assert out[1:3] == ["  workflow   .clarity/release.yaml", f"  window     {start} to {end}"], out
    assert out[3].startswith("  started    ") and out[3].endswith(" by api-key:admin (made by clarity up)"), out
    with c.api() as api:
        for run in api.get("/api/v1/runs").json()["runs"]:
            c.finished(run["id"])
