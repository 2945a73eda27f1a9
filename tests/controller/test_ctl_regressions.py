"""Regression tests for bugs found by running Clarity by hand."""

from __future__ import annotations

import re

import subprocess
from pathlib import Path

import pytest

from controller.cli import main
from controller.settings import Settings
from controller.store.runs import Store


def _repo(path: Path, workflow: str) -> Path:
    (path / ".clarity").mkdir(parents=True)
    (path / ".clarity" / "ci.yaml").write_text(workflow)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=path, check=True)
    return path


def test_skip_propagates_through_a_skipped_dependency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A task whose dependency was skipped *because of a failure* is skipped as well (it once ran,
    # and failed on the missing outputs of the skipped task).
    repo = _repo(tmp_path / "repo", """\
workflow:
  name: chain
  tasks:
    - {name: a, image: x, commands: ["exit 1"]}
    - {name: b, image: x, needs: [a], commands: ["echo v=1 >> $CLARITY_OUTPUTS"]}
    - {name: c, image: x, needs: [b], commands: ["echo ${tasks.b.outputs.v}"]}
    - name: d
      image: x
      needs: []
      when: {branch: [release]}
      commands: ["echo not on main"]
    - {name: e, image: x, needs: [d], commands: ["echo after a when-skip"]}
""")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("CLARITY_HOME", str(tmp_path / "home"))
    assert main(["run", "--backend", "fake"]) == 1
    store = Store.open(Settings.from_env().database_url)
    run = store.list_runs()[0]
    tasks = {t.name: t for t in store.list_tasks(run.id)}
    assert tasks["a"].state == "failed"
    assert tasks["b"].state == "skipped" and "needs 'a', which failed" in (tasks["b"].error or "")
    assert tasks["c"].state == "skipped" and "needs 'b', which was skipped" in (tasks["c"].error or "")
    assert tasks["d"].state == "skipped"
    assert tasks["e"].state == "succeeded"  # a `when` skip lets dependants run


def test_files_are_resolved_against_the_given_cwd(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import io
    import threading

    from controller.local import LocalRunOptions, run_local

    repo = make_repo({"wf/only.yaml": "workflow:\n  name: only\n  tasks:\n    - {name: t, image: x, commands: ['echo ok']}\n"})
    out = io.StringIO()
    code = run_local(repo.path / "wf", Settings.from_env(), LocalRunOptions(files=("only.yaml",), backend="fake"),
                     threading.Event(), out)
    assert code == 0, out.getvalue()
    assert "run 1 succeeded" in out.getvalue()


def test_task_selection_keeps_a_dag_a_dag(make_repo, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # --task over tasks with no `needs` of their own must not fall back to list order, where one
    # failure would skip the next.
    repo = make_repo({".clarity/ci.yaml": """\
workflow:
  name: dag
  tasks:
    - {name: a, image: x, commands: ["exit 1"]}
    - {name: b, image: x, commands: ["echo b ran"]}
    - {name: c, image: x, needs: [a, b], commands: ["echo c"]}
"""})
    monkeypatch.chdir(repo.path)
    assert main(["run", "--backend", "fake", "--task", "a", "--task", "b"]) == 1
    store = Store.open(Settings.from_env().database_url)
    states = {t.name: t.state for t in store.list_tasks(store.list_runs()[0].id)}
    assert states == {"a": "failed", "b": "succeeded"}


def test_bad_parallel_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CLARITY_PARALLEL", "lots")
    assert main(["runs"]) == 2
    err = capsys.readouterr().err
    assert "CLARITY_PARALLEL='lots'" in err and "Traceback" not in err


def test_engine_masks_its_own_error_lines(harness) -> None:  # type: ignore[no-untyped-def]
    # A render error quoting a secret's value (here: through a task output) is masked before it is
    # logged or stored.
    run = harness.run("""\
workflow:
  name: m
  tasks:
    - {name: a, image: x, commands: ["echo hunter2-secret > $CLARITY_OUTPUT"]}
    - {name: b, image: x, workdir: "../${tasks.a.output}", commands: ["true"]}
""", secrets={"PW": "hunter2-secret"})
    tasks = run.tasks
    assert tasks["b"].state == "failed"
    assert "hunter2-secret" not in (tasks["b"].error or "")
    assert "********" in (tasks["b"].error or "")
    assert all("hunter2-secret" not in line for line in run.logs())


def _run_repo(make_repo, monkeypatch: pytest.MonkeyPatch, workflow: str):  # type: ignore[no-untyped-def]
    repo = make_repo({".clarity/ci.yaml": workflow})
    monkeypatch.chdir(repo.path)
    return repo


def test_terminal_control_characters_are_escaped(make_repo, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # A task must not retitle, clear or rewrite the user's terminal, live or in `clarity logs`.
    _run_repo(make_repo, monkeypatch, """\
workflow:
  name: esc
  tasks:
    - {name: a, image: x, commands: ["printf 'x\\\\033]0;HIJACK\\\\007y\\\\033[2Jz\\\\tw\\\\n'"]}
""")
    assert main(["run", "--backend", "fake"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "x\\x1b]0;HIJACK\\x07y\\x1b[2Jz\tw" in out
    assert main(["logs", "1", "a"]) == 0
    logs = capsys.readouterr().out
    assert "\x1b" not in logs and "x\\x1b]0;HIJACK\\x07y" in logs
    stored = Store.open(Settings.from_env().database_url).logs(1, "a")
    assert any("\x1b]0;HIJACK" in line for _t, _ts, line in stored)  # kept as the task wrote it


def test_nul_in_an_output_fails_the_reader_clearly(make_repo, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # It used to reach Docker as an env value, fail there as infrastructure and be retried.
    _run_repo(make_repo, monkeypatch, """\
workflow:
  name: nul
  tasks:
    - {name: producer, image: x, commands: ["printf 'k=a\\\\000b\\\\n' >> $CLARITY_OUTPUTS"]}
    - {name: reader, image: x, commands: ["echo ${tasks.producer.outputs.k}"]}
""")
    assert main(["run", "--backend", "fake"]) == 1
    store = Store.open(Settings.from_env().database_url)
    reader = {t.name: t for t in store.list_tasks(1)}["reader"]
    assert reader.state == "failed" and reader.attempt == 1
    assert reader.error == "${tasks.producer.outputs.k}: the value holds a NUL byte, which cannot be passed to a task"


def test_unset_input_is_found_before_anything_runs(make_repo, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _run_repo(make_repo, monkeypatch, """\
workflow:
  name: inp
  tasks:
    - {name: first, image: x, commands: ["echo first"]}
    - {name: second, image: x, commands: ["echo ${inputs.target}"]}
""")
    assert main(["run", "--backend", "fake"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^\.clarity/ci\.yaml:\d+:\d+: error: task 'second' reads input 'target', which was not given\n"
                     r"  hint: pass --input target=VALUE", err, re.M), err
    assert not (Path(Settings.from_env().home) / "clarity.db").exists() or \
        Store.open(Settings.from_env().database_url).list_runs() == []


def test_secret_names_and_short_secrets(make_repo, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _run_repo(make_repo, monkeypatch, """\
workflow:
  name: sec
  tasks:
    - {name: a, image: x, secrets: [TOKEN], commands: ["echo $TOKEN"]}
""")
    assert main(["run", "--backend", "fake", "--secret", "bad name=1"]) == 2
    assert "secret name 'bad name' is not valid" in capsys.readouterr().err
    assert main(["run", "--backend", "fake", "--secret", "TOKEN=ab"]) == 0
    err = capsys.readouterr().err
    assert "warning: secret TOKEN is shorter than 3 characters and cannot be masked" in err


def test_task_of_a_workflow_that_does_not_run_is_named(make_repo, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _run_repo(make_repo, monkeypatch, """\
workflow:
  name: pushonly
  triggers: [{type: push}]
  tasks:
    - {name: build, image: x, commands: ["true"]}
""")
    assert main(["run", "--backend", "fake", "--event", "pull_request", "--task", "build"]) == 2
    assert ("task 'build' is in .clarity/ci.yaml, which does not run for a pull_request event"
            in capsys.readouterr().err)


def test_missing_file_argument(make_repo, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _run_repo(make_repo, monkeypatch, "workflow:\n  name: w\n  tasks: [{name: a, image: x}]\n")
    assert main(["run", "--backend", "fake", "nope.yaml"]) == 2
    assert "clarity: error: nope.yaml: no such file" in capsys.readouterr().err


def test_reap_orphans_only_touches_dead_owners(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    common = dict(repo="r", workflow="w", workflow_file="f", blob_sha=None, commit_sha=None, ref=None,
                  event="push", dirty=False, trigger={}, tasks=[("a", "img"), ("b", "img")])
    controllers = store.create_run(owner=None, **common)  # type: ignore[arg-type]
    store.set_run_state(controllers, "running")  # a controller's run: `clarity runs` once canceled it
    dead = store.create_run(owner="dead", **common)  # type: ignore[arg-type]
    alive = store.create_run(owner="alive", **common)  # type: ignore[arg-type]
    done = store.create_run(owner="dead", **common)  # type: ignore[arg-type]
    store.set_run_state(dead, "running")
    store.set_run_state(alive, "running")
    store.set_run_state(done, "succeeded")
    store.update_task(dead, "a", state="succeeded")
    assert store.reap_orphans(lambda owner: owner in ("dead", None)) == [dead]
    assert store.get_run(controllers).state == "running"
    assert [store.get_run(i).state for i in (dead, alive, done)] == ["canceled", "running", "succeeded"]
    assert {t.name: t.state for t in store.list_tasks(dead)} == {"a": "succeeded", "b": "canceled"}


def test_clock_style_timeout_hint_leads_to_a_valid_duration() -> None:
    # The hint used to say: quote it, "1:30" -- which is no duration either.
    from controller.workflow.lint import lint_text

    text = "workflow:\n  name: t\n  tasks:\n    - {name: a, image: x, timeout: 1:30}\n"
    _wf, diags = lint_text(text, "t.yaml")
    assert [(d.severity, d.hint) for d in diags] == [("warning", "write the duration with units, e.g. 1m30s")]
    fixed, diags = lint_text(text.replace("1:30", "1m30s"), "t.yaml")
    assert diags == [] and fixed is not None and fixed.tasks[0].timeout_s == 90


def test_port_out_of_range_is_a_clear_error(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["up", "--port", "99999"]) == 2
    err = capsys.readouterr().err
    assert "--port 99999: a port is a number from 1 to 65535" in err and "Traceback" not in err


def test_database_file_is_private(tmp_path: Path) -> None:
    # It holds webhook secrets.
    Store.open(f"sqlite:///{tmp_path / 'new' / 'clarity.db'}")
    assert (tmp_path / "new" / "clarity.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


def test_cli_finds_the_controller_clarity_up_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from controller.cli_remote import URL_FILE, make_client as _client

    monkeypatch.delenv("CLARITY_CONTROLLER", raising=False)
    home = Path(Settings.from_env().home)
    home.mkdir(parents=True, exist_ok=True)
    (home / URL_FILE).write_text("http://127.0.0.1:8731\n")
    assert _client(argparse.Namespace(controller=None, api_key="k")).base_url == "http://127.0.0.1:8731"
    assert _client(argparse.Namespace(controller="http://h:1", api_key="k")).base_url == "http://h:1"


def test_agent_hands_back_tasks_still_running_after_the_grace(tmp_path: Path) -> None:
    # Stopping `clarity up` used to wait silently for every running task, however long.
    import threading
    import time

    from runner.agent import Agent
    from runner.backends.fake import FakeBackend
    from runner.protocol import Beat, Lease
    from runner.spec import TaskSpec
    from runner.workspace import WorkspaceCache

    finished: list[object] = []
    handed = threading.Event()
    src = tmp_path / "src"
    src.mkdir()

    class Peer:
        def lease(self, runner, labels, wait_s):  # type: ignore[no-untyped-def]
            if handed.is_set():
                time.sleep(min(wait_s, 0.05))
                return None
            handed.set()
            from runner.spec import Workspace
            spec = TaskSpec(run_id="1", task="t", image="x", argv=("sleep", "30"),
                            workspace=Workspace(repo=str(src), dirty_path=str(src)))
            return Lease("lease-1", spec, time.time() + 30)

        def heartbeat(self, lease_id):  # type: ignore[no-untyped-def]
            return Beat(time.time() + 30)

        def logs(self, lease_id, lines):  # type: ignore[no-untyped-def]
            pass

        def finish(self, lease_id, result):  # type: ignore[no-untyped-def]
            finished.append(result)

    agent = Agent(Peer(), FakeBackend(), tmp_path / "work", WorkspaceCache(tmp_path / "c"), slots=1, poll_s=0.05)
    agent.start()
    assert handed.wait(5)
    time.sleep(0.3)
    assert agent.running == 1
    started = time.monotonic()
    agent.stop(grace_s=0.5)
    assert time.monotonic() - started < 10
    assert finished == []  # handed back unreported: its lease expires and it is queued again
    assert agent.running == 0


def test_each_attempt_is_marked_in_the_log(harness) -> None:  # type: ignore[no-untyped-def]
    # After a retry, the attempts' lines used to run together with nothing between them.
    run = harness.run("""\
workflow:
  name: r
  tasks:
    - {name: a, image: x, retries: 1, commands: ["echo try $CLARITY_ATTEMPT", "test $CLARITY_ATTEMPT -ge 2"]}
""")
    assert run.tasks["a"].state == "succeeded"
    logs = run.logs("a")
    marker = logs.index("[clarity] attempt 2 (the previous one: exit code 1)")
    assert logs.index("try 1") < marker < logs.index("try 2")


def test_clarity_run_runs_labelled_tasks(make_repo, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # `labels` choose a runner on a controller; on this machine there is one runner for all.
    _run_repo(make_repo, monkeypatch, """\
workflow:
  name: lab
  tasks:
    - {name: a, image: x, labels: [gpu, arm64], commands: ["echo on gpu"]}
""")
    assert main(["run", "--backend", "fake"]) == 0
    store = Store.open(Settings.from_env().database_url)
    assert [t.state for t in store.list_tasks(1)] == ["succeeded"]
