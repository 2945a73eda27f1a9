"""Regression tests for bugs found by running Clarity by hand."""

from __future__ import annotations

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
