"""The `clarity` command, in-process (controller.cli.main) and once or twice as a subprocess."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.controller.conftest import Repo, git
from controller.cli import main
from controller.console import Console, summary_table
from controller.settings import Settings
from controller.store.runs import Store
from runner.masking import MASK
from runner.spec import Outcome, TaskResult

ROOT = Path(__file__).resolve().parents[2]
ESC = "\x1b["

CI = """\
workflow:
  name: ci
  tasks:
    - name: build
      image: alpine
      commands:
        - echo "building on ${git.branch}"
        - cat app.txt
    - name: test
      image: alpine
      commands: ["echo testing"]
"""

FAILING = """\
workflow:
  name: broken
  tasks:
    - name: build
      image: alpine
      commands: ["echo about to fail", "exit 4"]
    - name: after
      image: alpine
      commands: ["echo never"]
"""


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys, self.monkeypatch = capsys, monkeypatch
        self.out = self.err = ""

    def __call__(self, cwd: Path, *args: str) -> int:
        self.monkeypatch.chdir(cwd)
        self.capsys.readouterr()
        argv = list(args)
        if argv and argv[0] == "run":
            argv[1:1] = ["--backend", "fake"]
        code = main(argv)
        self.out, self.err = self.capsys.readouterr()
        return code

    def assert_user_error(self, *fragments: str) -> None:
        lines = [line for line in self.err.splitlines() if line.startswith("clarity: error: ")]
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err
        for fragment in fragments:
            assert fragment in lines[0], lines[0]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


def runs_in_store() -> list[str]:
    return [r.workflow for r in Store.open(Settings.from_env().database_url).list_runs()]


def no_escapes(text: str) -> None:
    assert ESC not in text and "\r" not in text


# -- lint and schema --------------------------------------------------------------------------


def test_lint_reports_positions_and_exit_code(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "proj" / ".clarity"
    folder.mkdir(parents=True)
    (folder / "ok.yaml").write_text(CI)
    (folder / "bad.yaml").write_text("workflow:\n  name: bad\n  tasks:\n    - name: a\n      imgae: alpine\n")
    assert cli(tmp_path / "proj", "lint") == 1
    lines = cli.out.splitlines()
    assert any(re.fullmatch(r"\S*bad\.yaml:5:7: error: unknown key 'imgae'.*", line) for line in lines), cli.out
    assert "  hint: did you mean 'image'?" in lines
    assert not any("ok.yaml" in line for line in lines)
    assert "2 file(s) checked: " in cli.err
    no_escapes(cli.out)

    assert cli(tmp_path / "proj", "lint", str(folder / "ok.yaml")) == 0
    assert cli.out == ""
    assert "1 file(s) checked: 0 error(s), 0 warning(s)" in cli.err


def test_lint_warnings_do_not_fail(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text(CI.replace("  tasks:", "  env: {DEBUG: yes}\n  tasks:"))
    assert cli(tmp_path, "lint", str(f)) == 0
    assert re.search(r"w\.yaml:\d+:\d+: warning: ", cli.out), cli.out


def test_lint_without_files(cli: Cli, tmp_path: Path) -> None:
    assert cli(tmp_path, "lint") == 2
    cli.assert_user_error("no workflow files found")


def test_schema_is_the_documented_one(cli: Cli, tmp_path: Path) -> None:
    assert cli(tmp_path, "schema") == 0
    printed = json.loads(cli.out)
    assert printed == json.loads((ROOT / "docs" / "schema.json").read_text())
    assert printed["type"] == "object"


# -- clarity run ------------------------------------------------------------------------------


def test_run_success(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/ci.yaml": CI, "app.txt": "the app\n"})
    assert cli(repo.path, "run") == 0, cli.err
    no_escapes(cli.out)
    assert "▶ run 1: ci (.clarity/ci.yaml at " in cli.out
    assert re.search(r"^build +│ building on main$", cli.out, re.M)
    assert re.search(r"^build +│ the app$", cli.out, re.M)
    assert re.search(r"^test +│ testing$", cli.out, re.M)
    assert re.search(r"^TASK +RESULT +TIME +DETAIL$", cli.out, re.M)
    assert re.search(r"^build +succeeded ", cli.out, re.M)
    assert "run 1 succeeded — logs: clarity logs 1" in cli.out
    run = Store.open(Settings.from_env().database_url).get_run(1)
    assert run.commit_sha == git(repo.path, "rev-parse", "HEAD") and run.blob_sha and not run.dirty
    assert run.ref == "refs/heads/main" and run.state == "succeeded"


def test_run_failure(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/broken.yaml": FAILING})
    assert cli(repo.path, "run") == 1
    assert re.search(r"^build +│ about to fail$", cli.out, re.M)
    assert re.search(r"^build +failed .*exit code 4$", cli.out, re.M)
    assert re.search(r"^after +skipped .*(needs|runs after) 'build', which failed", cli.out, re.M)
    assert "never" not in cli.out
    assert "run 1 failed" in cli.out


def test_one_failing_workflow_of_two_fails_the_command(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/a.yaml": CI, ".clarity/b.yaml": FAILING, "app.txt": "x\n"})
    assert cli(repo.path, "run") == 1
    assert "run 1 succeeded" in cli.out and "run 2 failed" in cli.out


MANUAL = """\
workflow:
  name: release
  triggers:
    - type: manual
      inputs:
        count: {type: number, required: true}
        flag: {type: boolean, default: false}
  tasks:
    - name: go
      image: alpine
      commands: ["echo count=${inputs.count} flag=${inputs.flag}"]
"""

SECRET = """\
workflow:
  name: deploy
  tasks:
    - name: deploy
      image: alpine
      secrets: [DEPLOY_KEY]
      commands: ["echo deploying"]
"""


@pytest.mark.parametrize("case", [
    "not a repo", "no commits", "no workflow files", "lint errors", "unknown task", "bad number input",
    "missing required input", "unknown input", "missing secret", "missing secret expression",
    "missing secret of a sub-workflow", "bad --input",
    "bad --secret", "missing --secret-file", "file outside the repository", "file not committed",
])
def test_run_user_errors(case: str, cli: Cli, make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    args: list[str] = []
    if case == "not a repo":
        cwd = tmp_path / "plain"
        cwd.mkdir()
        expect = ["is not inside a git repository", "git init"]
    elif case == "no commits":
        repo = make_repo()
        repo.write({".clarity/ci.yaml": CI})
        cwd, expect = repo.path, ["has no commits yet", "--dirty"]
    elif case == "no workflow files":
        cwd, expect = make_repo({"README": "hi\n"}).path, ["no workflow files in .clarity/ at commit "]
    elif case == "lint errors":
        cwd = make_repo({".clarity/ci.yaml": CI, ".clarity/bad.yaml": "workflow:\n  name: x\n  tasks: []\n"}).path
        expect = ["the workflow files have errors (above); nothing was run"]
    elif case == "unknown task":
        cwd, args, expect = make_repo({".clarity/ci.yaml": CI}).path, ["--task", "nope"], ["no task named 'nope' (the tasks: build, test)"]
    elif case == "bad number input":
        cwd = make_repo({".clarity/m.yaml": MANUAL}).path
        args, expect = ["--event", "manual", "--input", "count=many"], ["input 'count' must be a number, got 'many'"]
    elif case == "missing required input":
        cwd = make_repo({".clarity/m.yaml": MANUAL}).path
        args, expect = ["--event", "manual"], ["input 'count' is required", "--input count=VALUE"]
    elif case == "unknown input":
        cwd = make_repo({".clarity/m.yaml": MANUAL}).path
        args, expect = ["--event", "manual", "--input", "count=1", "--input", "cnt=2"], ["no input named 'cnt'"]
    elif case == "missing secret":
        cwd = make_repo({".clarity/d.yaml": SECRET}).path
        expect = ["task 'deploy' needs secret 'DEPLOY_KEY'", "--secret DEPLOY_KEY=VALUE", "--secret-file"]
    elif case == "missing secret expression":
        cwd = make_repo({".clarity/d.yaml": CI.replace("echo testing", "echo ${secrets.API}")}).path
        expect = ["task 'test' needs secret 'API'"]
    elif case == "missing secret of a sub-workflow":  # d.yaml runs only as the sub-run of p.yaml
        child = SECRET.replace("  tasks:", "  triggers:\n    - type: manual\n  tasks:", 1)
        parent = "workflow:\n  name: p\n  tasks:\n    - {name: call, type: workflow, workflow: d.yaml}\n"
        cwd = make_repo({".clarity/d.yaml": child, ".clarity/p.yaml": parent}).path
        expect = ["task 'deploy' needs secret 'DEPLOY_KEY'", "--secret DEPLOY_KEY=VALUE"]
    elif case == "bad --input":
        cwd, args, expect = make_repo({".clarity/ci.yaml": CI}).path, ["--input", "novalue"], ["--input 'novalue' must look like NAME=VALUE"]
    elif case == "bad --secret":
        cwd, args, expect = make_repo({".clarity/ci.yaml": CI}).path, ["--secret", "NOT_IN_ENV_X"], ["no environment variable NOT_IN_ENV_X"]
    elif case == "missing --secret-file":
        cwd = make_repo({".clarity/ci.yaml": CI}).path
        args, expect = ["--secret-file", f"K={tmp_path / 'nope'}"], ["--secret-file K=", "No such file"]
    elif case == "file outside the repository":
        cwd = make_repo({".clarity/ci.yaml": CI}).path
        (tmp_path / "out.yaml").write_text(CI)
        args, expect = [str(tmp_path / "out.yaml")], ["is outside the repository"]
    elif case == "file not committed":
        repo = make_repo({".clarity/ci.yaml": CI})
        repo.write({".clarity/new.yaml": CI})
        cwd, args, expect = repo.path, [".clarity/new.yaml"], ["not in commit", "--dirty"]
    else:  # pragma: no cover
        raise AssertionError(case)
    assert cli(cwd, "run", *args) == 2, cli.out + cli.err
    if case.startswith("missing secret"):  # at its position in the file, with how to give it; then one error
        assert all(fragment in cli.err for fragment in expect), cli.err
        assert re.search(r"^\.clarity/d\.yaml:\d+:\d+: error: task '\w+' needs secret", cli.err, re.M), cli.err
        expect = ["the workflow needs values that were not given (above); nothing was run"]
    cli.assert_user_error(*expect)
    if (Settings.from_env().home / "clarity.db").exists():
        assert runs_in_store() == []  # nothing ran
    assert "▶ run" not in cli.out


def test_lint_errors_are_printed_with_positions_before_the_error(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/ci.yaml": CI, ".clarity/bad.yaml": "workflow:\n  name: x\n  tasks:\n    - {name: a, imgae: b}\n"})
    assert cli(repo.path, "run") == 2
    assert re.search(r"^\.clarity/bad\.yaml:4:\d+: error: ", cli.err, re.M), cli.err
    assert "▶ run" not in cli.out  # not even the good workflow ran


def test_missing_secret_of_a_task_skipped_by_when_is_not_an_error(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    wf = SECRET.replace("      secrets:", "      when: {branch: [release/*]}\n      secrets:")
    repo = make_repo({".clarity/d.yaml": wf + "    - {name: other, image: alpine, needs: [], commands: [\"echo ok\"]}\n"})
    assert cli(repo.path, "run") == 0, cli.err
    assert re.search(r"^deploy +skipped +- +skipped: branch 'main' matches none of release/\*$", cli.out, re.M), cli.out


def test_task_selection_runs_the_task_and_what_it_needs(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/dag.yaml": """\
workflow:
  name: dag
  tasks:
    - {name: setup, image: alpine, needs: [], commands: ["echo setup ran"]}
    - {name: produce, image: alpine, needs: [setup], commands: ["echo v=42 >> $CLARITY_OUTPUTS"]}
    - name: consume
      image: alpine
      commands: ["echo got ${tasks.produce.outputs.v}"]
    - {name: unrelated, image: alpine, needs: [], commands: ["echo unrelated ran"]}
"""})
    assert cli(repo.path, "run", "--task", "consume") == 0, cli.out + cli.err
    assert "setup ran" in cli.out and "got 42" in cli.out
    assert "unrelated" not in cli.out
    tasks = [t.name for t in Store.open(Settings.from_env().database_url).list_tasks(1)]
    assert tasks == ["setup", "produce", "consume"]

    assert cli(repo.path, "run", "--task", "unrelated") == 0
    assert "unrelated ran" in cli.out and "setup ran" not in cli.out


def test_task_selection_in_list_order_does_not_pull_in_earlier_tasks(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/ci.yaml": CI.replace("cat app.txt", "echo build ran")})
    assert cli(repo.path, "run", "--task", "test") == 0
    assert "testing" in cli.out and "build ran" not in cli.out


EVENTS = {
    ".clarity/push.yaml": "workflow:\n  name: on-push\n  triggers: [{type: push, branches: [main]}]\n"
                          "  tasks: [{name: p, image: a, commands: [\"echo push ran\"]}]\n",
    ".clarity/tag.yaml": "workflow:\n  name: on-tag\n  triggers: [{type: tag, tags: [\"v*\"]}]\n"
                         "  tasks: [{name: t, image: a, commands: [\"echo tag ${git.tag} ran\"]}]\n",
    ".clarity/manual.yaml": "workflow:\n  name: on-manual\n  triggers: [{type: manual, inputs: {who: {type: string, default: nobody}}}]\n"
                            "  tasks: [{name: m, image: a, commands: [\"echo manual by ${inputs.who}\"]}]\n",
    ".clarity/default.yaml": "workflow:\n  name: default\n"
                            "  tasks: [{name: d, image: a, commands: [\"echo default ran\"]}]\n",
}


@pytest.mark.parametrize("event,ran,args", [
    ("push", ["push ran", "default ran"], []),
    ("pull_request", ["default ran"], []),
    ("tag", ["tag v1.0 ran"], []),
    ("manual", ["manual by alice"], ["--input", "who=alice"]),
])
def test_event_selects_workflows_by_trigger(event: str, ran: list[str], args: list[str], cli: Cli,
                                            make_repo: Callable[..., Repo]) -> None:
    repo = make_repo(EVENTS)
    git(repo.path, "tag", "v1.0")
    assert cli(repo.path, "run", "--event", event, *args) == 0, cli.err
    printed = [line.split("│ ", 1)[1] for line in cli.out.splitlines() if "│ " in line and "ran" in line or "manual by" in line]
    assert sorted(p for p in printed if not p.startswith("+")) == sorted(ran)
    assert cli.out.count("▶ run") == len(ran)
    if event != "tag":
        assert f"clarity: .clarity/tag.yaml: not run: it has no {event} trigger (its triggers: tag)" in cli.out
    else:
        assert "clarity: .clarity/push.yaml: not run: no trigger answers this tag" in cli.out


def test_no_workflow_answers_the_event(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/push.yaml": EVENTS[".clarity/push.yaml"]})
    assert cli(repo.path, "run", "--event", "tag") == 0
    assert "clarity: .clarity/push.yaml: not run: no trigger answers this tag: its push trigger lists no `tags`" in cli.out
    assert "clarity: no workflow runs for a tag event" in cli.out


def test_a_branch_filter_says_which_branch_missed(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/push.yaml": EVENTS[".clarity/push.yaml"]}, branch="master")
    assert cli(repo.path, "run") == 0
    assert ("clarity: .clarity/push.yaml: not run: no trigger answers this push: "
            "branch 'master' is not in branches [main]") in cli.out


def test_dirty_runs_the_working_tree_default_runs_the_commit(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/ci.yaml": CI, "app.txt": "committed app\n"})
    repo.write({".clarity/ci.yaml": CI.replace("echo testing", "echo edited testing"), "app.txt": "edited app\n"})

    assert cli(repo.path, "run") == 0
    assert "committed app" in cli.out and "edited" not in cli.out
    assert ("clarity: note: .clarity/ci.yaml has uncommitted changes; running the committed version "
            "(use --dirty to run yours)") in cli.err

    assert cli(repo.path, "run", "--dirty") == 0
    assert "edited app" in cli.out and "edited testing" in cli.out and "committed app" not in cli.out
    assert "working tree" in cli.out
    assert "uncommitted changes" not in cli.err
    run = Store.open(Settings.from_env().database_url).get_run(2)
    assert run.dirty and run.blob_sha is None


def test_dirty_without_commits(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo()
    repo.write({".clarity/ci.yaml": CI, "app.txt": "uncommitted\n"})
    assert cli(repo.path, "run", "--dirty") == 0, cli.err
    assert "uncommitted" in cli.out


def test_secret_file_masked_in_output_and_logs(cli: Cli, make_repo: Callable[..., Repo], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    key = "-----BEGIN TEST KEY-----\nAAAAsecretline1\nBBBBsecretline2\n-----END TEST KEY-----\n"
    (tmp_path / "key.pem").write_text(key)
    monkeypatch.setenv("TOKEN", "tok-from-env-123")
    monkeypatch.setenv("CLARITY_SECRET_OTHER", "other-from-clarity-var")
    repo = make_repo({".clarity/d.yaml": """\
workflow:
  name: deploy
  tasks:
    - name: deploy
      image: alpine
      secrets: [DEPLOY_KEY, TOKEN, OTHER]
      commands:
        - printf '%s\\n' "$DEPLOY_KEY"
        - echo "token $TOKEN other $OTHER"
        - echo "inline ${secrets.TOKEN}"
"""})
    code = cli(repo.path, "run", "--secret-file", f"DEPLOY_KEY={tmp_path / 'key.pem'}", "--secret", "TOKEN")
    assert code == 0, cli.err
    for text in (cli.out, cli.err):
        assert "secretline" not in text and "tok-from-env" not in text and "other-from" not in text
    assert f"token {MASK} other {MASK}" in cli.out
    assert f"inline {MASK}" in cli.out

    assert cli(repo.path, "logs", "1") == 0
    assert "secretline" not in cli.out and "tok-from-env" not in cli.out
    assert re.search(rf"^deploy │ {re.escape(MASK)}$", cli.out, re.M)
    assert cli(repo.path, "logs", "1", "deploy") == 0
    lines = cli.out.splitlines()
    assert lines[:5] == ["+ printf '%s\\n' \"$DEPLOY_KEY\"", MASK, MASK, MASK, MASK]


def test_runs_and_logs(cli: Cli, make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    assert cli(tmp_path, "runs") == 0
    assert "no runs yet" in cli.out
    repo = make_repo({".clarity/ci.yaml": CI, ".clarity/broken.yaml": FAILING, "app.txt": "app\n"})
    sha = git(repo.path, "rev-parse", "HEAD")
    assert cli(repo.path, "run") == 1
    assert cli(tmp_path, "runs") == 0  # outside a repository: every repository's runs
    lines = cli.out.splitlines()
    assert lines[0].split() == ["RUN", "STATE", "WORKFLOW", "COMMIT", "EVENT", "TIME", "STARTED", "REPOSITORY"]
    assert lines[1].split()[:5] == ["2", "succeeded", "ci", sha[:8], "push"]  # newest first
    assert lines[1].split()[-1] == str(repo.path.resolve())
    assert lines[2].split()[:5] == ["1", "failed", "broken", sha[:8], "push"]
    assert cli(tmp_path, "runs", "--limit", "1") == 0
    assert len(cli.out.splitlines()) == 2
    other = make_repo({".clarity/ci.yaml": CI, "app.txt": "other\n"})
    assert cli(other.path, "runs") == 0  # inside a repository: its runs only
    assert f"no runs yet of {other.path.resolve()} (`clarity runs --all`" in cli.out
    assert cli(repo.path, "runs") == 0
    lines = cli.out.splitlines()
    assert lines[0] == f"runs of {repo.path.resolve()}" and "REPOSITORY" not in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["2", "1"]
    assert cli(other.path, "runs", "--all") == 0
    assert len(cli.out.splitlines()) == 3

    assert cli(tmp_path, "logs", "2") == 0
    assert cli.out.splitlines() == [
        'build │ + echo "building on ${git.branch}"', "build │ building on main",
        "build │ + cat app.txt", "build │ app", "test  │ + echo testing", "test  │ testing",
    ]
    assert cli(tmp_path, "logs", "2", "test") == 0
    assert cli.out.splitlines() == ["+ echo testing", "testing"]

    assert cli(tmp_path, "logs", "99") == 2
    cli.assert_user_error("no run 99", "clarity runs")
    assert cli(tmp_path, "logs", "2", "nope") == 2
    cli.assert_user_error("run 2 has no task 'nope' (its tasks: build, test)")


def test_parallel_must_be_positive(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/ci.yaml": CI})
    assert cli(repo.path, "run", "--parallel", "0") == 2
    cli.assert_user_error("--parallel must be at least 1")


def test_signal_handlers_restored_after_run(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    import signal

    repo = make_repo({".clarity/ci.yaml": CI, "app.txt": "x\n"})
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert cli(repo.path, "run") == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


# -- as a subprocess --------------------------------------------------------------------------


def clarity_bin() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "clarity"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "controller.cli"]


def test_subprocess_user_error_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([*clarity_bin(), "run", "--backend", "fake"], cwd=tmp_path, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("clarity: error: ") and "is not inside a git repository" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_subprocess_run_is_plain_when_piped(make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/ci.yaml": CI, "app.txt": "piped app\n"})
    proc = subprocess.run([*clarity_bin(), "run", "--backend", "fake"], cwd=repo.path, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "piped app" in proc.stdout
    no_escapes(proc.stdout + proc.stderr)


# -- the console ------------------------------------------------------------------------------


def test_console_plain_when_not_a_tty() -> None:
    out = io.StringIO()
    c = Console(out, ["build", "test"], tty=False, workflow="ci")
    c.banner("▶ run 1")
    c.task_started("build", 1)
    c.task_log("build", "hello")
    c.task_finished("build", TaskResult(Outcome.FAILED, exit_code=2, started_at=1.0, finished_at=3.5), True)
    c.task_started("build", 2)
    c.task_finished("test", TaskResult(Outcome.SKIPPED, error="skipped: needs 'build', which failed"), False)
    c.close()
    text = out.getvalue()
    no_escapes(text)
    assert text.splitlines() == [
        "▶ run 1",
        "build │ ▶ started",
        "build │ hello",
        "build │ ↻ failed in 2.5s (exit code 2), retrying",
        "build │ ▶ started (attempt 2)",
        "test  │ - skipped (needs 'build', which failed)",
    ]


def test_console_tty_colours_and_status_line() -> None:
    out = io.StringIO()
    c = Console(out, ["build", "test"], tty=True, workflow="ci")
    c.task_started("build", 1)
    c.task_log("build", "compiling")
    c.task_finished("build", TaskResult(Outcome.SUCCEEDED, exit_code=0, started_at=1.0, finished_at=2.0), False)
    c.close()
    text = out.getvalue()
    assert "\x1b[32m" in text  # green for succeeded
    assert "\x1b[36m" in text  # the task's colour / running
    assert "\r\x1b[K" in text  # the status line is redrawn
    assert "[1/2]" in text and "\x1b[1mci\x1b[0m" in text  # workflow name in bold, done/total
    assert "compiling" in text
    assert text.endswith("\r\x1b[K")  # close() clears the status line


def test_summary_table() -> None:
    rows = [("build", "succeeded", 1.25, ""), ("deploy", "timed_out", 75.0, "timed out after 60s"),
            ("x", "skipped", None, "skipped: no")]
    plain = summary_table(rows, tty=False)
    assert plain.splitlines() == [
        "TASK    RESULT     TIME   DETAIL",
        "build   succeeded  1.2s",
        "deploy  timed out  1m15s  timed out after 60s",
        "x       skipped    -      skipped: no",
    ]
    coloured = summary_table(rows, tty=True)
    assert "\x1b[32m" in coloured and "\x1b[31m" in coloured and "\x1b[90m" in coloured


def test_empty_triggers_never_automatic_but_runs_when_named(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/ci.yaml": CI.replace("  tasks:", "  triggers: []\n  tasks:"), "app.txt": "x\n"})
    assert cli(repo.path, "run") == 0
    assert "clarity: .clarity/ci.yaml: not run: it has no triggers" in cli.out
    assert "▶ run" not in cli.out
    assert cli(repo.path, "run", ".clarity/ci.yaml") == 0
    assert "▶ run 1: ci" in cli.out and "testing" in cli.out


def test_push_on_a_tagged_commit_still_runs_push_workflows(cli: Cli, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo({".clarity/ci.yaml": CI, "app.txt": "x\n"})
    git(repo.path, "tag", "v9")
    assert cli(repo.path, "run") == 0
    assert "▶ run 1: ci" in cli.out, cli.out
