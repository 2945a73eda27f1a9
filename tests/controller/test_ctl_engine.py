"""The Engine over the FakeBackend and a real Store: scenarios of whole runs."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.controller.conftest import Harness, Recorder
from controller.engine import run_state
from controller.workflow.compile import GitInfo
from runner.masking import MASK
from runner.spec import Outcome


def interval(h_run, name: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    row = h_run.tasks[name]
    assert row.started_at is not None and row.finished_at is not None
    return row.started_at, row.finished_at


def test_list_order_runs_sequentially_and_stores_rows(harness: Harness, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    run = harness.run(f"""
    workflow:
      name: seq
      env: {{TRACE: "{trace}"}}
      tasks:
        - name: one
          image: alpine
          commands: ["sleep 0.1", "echo one >> $TRACE"]
        - name: two
          image: alpine
          commands: ["echo two >> $TRACE"]
        - name: three
          image: alpine
          commands: ["echo three >> $TRACE", "cat hello.txt"]
    """, parallel=4)
    assert run.verdict is Outcome.SUCCEEDED
    assert trace.read_text().split() == ["one", "two", "three"]
    assert interval(run, "one")[1] <= interval(run, "two")[0]
    assert interval(run, "two")[1] <= interval(run, "three")[0]
    rows = run.tasks
    assert [r.name for r in run.store.list_tasks(run.run_id)] == ["one", "two", "three"]
    assert all(r.state == "succeeded" and r.exit_code == 0 and r.attempt == 1 for r in rows.values())
    stored = run.store.get_run(run.run_id)
    assert stored.state == "succeeded"
    assert stored.started_at is not None and stored.finished_at is not None
    # each command echoed before it runs; the workspace is there
    assert run.logs("three") == ["+ echo three >> $TRACE", "+ cat hello.txt", "hello from the workspace"]


DAG_RENDEZVOUS = """
workflow:
  name: dag
  env: {{SYNC: "{sync}"}}
  tasks:
    - name: a
      image: alpine
      needs: []
      commands:
        - touch "$SYNC/a"
        - "for i in $(seq 100); do [ -e \\"$SYNC/b\\" ] && exit 0; sleep 0.02; done; echo b never started; exit 1"
    - name: b
      image: alpine
      needs: []
      commands:
        - touch "$SYNC/b"
        - "for i in $(seq 100); do [ -e \\"$SYNC/a\\" ] && exit 0; sleep 0.02; done; echo a never started; exit 1"
    - name: c
      image: alpine
      needs: [a, b]
      commands: ["echo joined"]
"""


def test_dag_independent_tasks_run_in_parallel(harness: Harness, tmp_path: Path) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    run = harness.run(DAG_RENDEZVOUS.format(sync=sync), parallel=2)
    assert run.states() == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}, run.logs()
    (a0, a1), (b0, b1), (c0, _) = interval(run, "a"), interval(run, "b"), interval(run, "c")
    assert a0 < b1 and b0 < a1  # overlapped
    assert c0 >= max(a1, b1)


def test_parallel_one_runs_independent_tasks_one_at_a_time(harness: Harness, tmp_path: Path) -> None:
    run = harness.run("""
    workflow:
      name: dag
      tasks:
        - name: a
          image: alpine
          needs: []
          commands: ["sleep 0.2"]
        - name: b
          image: alpine
          needs: []
          commands: ["sleep 0.2"]
    """, parallel=1)
    assert run.verdict is Outcome.SUCCEEDED
    (a0, a1), (b0, b1) = interval(run, "a"), interval(run, "b")
    assert a1 <= b0 or b1 <= a0


def test_outputs_passed_between_tasks(harness: Harness) -> None:
    run = harness.run("""
    workflow:
      name: outputs
      tasks:
        - name: produce
          image: alpine
          needs: []
          commands:
            - >-
              echo '{"version": "1.2", "list": [1, 2]}' > "$CLARITY_OUTPUT"
            - echo "file=app 1.2.tar.gz" >> "$CLARITY_OUTPUTS"
            - echo "eq=a=b" >> "$CLARITY_OUTPUTS"
        - name: text
          image: alpine
          needs: []
          commands: ["printf 'just text\\n' > $CLARITY_OUTPUT"]
        - name: consume
          image: alpine
          env:
            FILE: "${tasks.produce.outputs.file}"
          commands:
            - echo "json=${tasks.produce.output}"
            - echo "file=$FILE eq=${tasks.produce.outputs.eq} text=${tasks.text.output}"
            - echo "outcome=${tasks.produce.outcome}"
    """)
    assert run.verdict is Outcome.SUCCEEDED, run.logs()
    rows = run.tasks
    assert rows["produce"].output == {"version": "1.2", "list": [1, 2]}
    assert rows["produce"].outputs == {"file": "app 1.2.tar.gz", "eq": "a=b"}
    assert rows["text"].output == "just text"
    logs = run.logs("consume")
    assert "json=" + json.dumps({"list": [1, 2], "version": "1.2"}, sort_keys=True) in logs
    assert "file=app 1.2.tar.gz eq=a=b text=just text" in logs
    assert "outcome=succeeded" in logs


def test_artifacts_handed_to_downstream_tasks(harness: Harness) -> None:
    run = harness.run("""
    workflow:
      name: arts
      tasks:
        - name: build
          image: alpine
          needs: []
          commands: ["mkdir -p dist/sub && echo built > dist/sub/app.txt && echo log > build.log"]
          artifacts: [dist/, "*.log"]
        - name: other
          image: alpine
          needs: []
          commands: ["echo unrelated"]
        - name: package
          image: alpine
          needs: [build]
          commands: ["cat dist/sub/app.txt build.log"]
        - name: unrelated
          image: alpine
          needs: [other]
          commands: ["test ! -e dist && echo no artifacts here"]
    """)
    assert run.verdict is Outcome.SUCCEEDED, run.logs()
    arts = run.tasks["build"].artifacts_dir
    assert arts and (Path(arts) / "dist" / "sub" / "app.txt").read_text() == "built\n"
    assert run.logs("package")[-2:] == ["built", "log"]
    assert run.logs("unrelated")[-1] == "no artifacts here"


def test_artifacts_reach_transitive_dependants(harness: Harness) -> None:
    run = harness.run("""
    workflow:
      name: arts
      tasks:
        - name: a
          image: alpine
          commands: ["echo A > a.txt"]
          artifacts: [a.txt]
        - name: b
          image: alpine
          commands: ["true"]
        - name: c
          image: alpine
          commands: ["cat a.txt"]
    """)
    assert run.verdict is Outcome.SUCCEEDED, run.logs()
    assert run.logs("c")[-1] == "A"


def test_failed_task_skips_its_dependants_with_a_reason(harness: Harness) -> None:
    run = harness.run("""
    workflow:
      name: fail
      tasks:
        - name: lint
          image: alpine
          needs: []
          commands: ["echo checking", "exit 3", "echo never"]
        - name: test
          image: alpine
          needs: []
          commands: ["echo fine"]
        - name: package
          image: alpine
          needs: [lint, test]
          commands: ["echo packaging"]
        - name: publish
          image: alpine
          needs: [package]
          commands: ["echo publishing"]
    """)
    assert run.verdict is Outcome.FAILED
    rows = run.tasks
    assert rows["lint"].state == "failed" and rows["lint"].exit_code == 3
    assert rows["test"].state == "succeeded"
    assert rows["package"].state == "skipped"
    assert rows["package"].error == "skipped: needs 'lint', which failed"
    assert rows["publish"].state == "skipped"  # transitively: never runs after a failure upstream
    assert "package" in (rows["publish"].error or "")
    assert "never" not in run.logs("lint")
    assert run.logs("package") == [] and run.logs("publish") == []
    assert run.store.get_run(run.run_id).state == "failed"


def test_list_order_failure_skips_the_rest(harness: Harness) -> None:
    run = harness.run("""
    workflow:
      name: fail
      tasks:
        - {name: a, image: alpine, commands: ["false"]}
        - {name: b, image: alpine, commands: ["echo b"]}
        - {name: c, image: alpine, commands: ["echo c"]}
    """)
    assert run.states() == {"a": "failed", "b": "skipped", "c": "skipped"}
    assert run.verdict is Outcome.FAILED


def test_failed_task_is_not_retried_without_retries(harness: Harness, tmp_path: Path) -> None:
    run = harness.run("""
    workflow:
      name: r
      tasks:
        - name: flaky
          image: alpine
          commands: ["echo attempt $CLARITY_ATTEMPT", "exit 1"]
    """)
    assert run.verdict is Outcome.FAILED
    assert run.tasks["flaky"].attempt == 1
    assert run.logs("flaky") == ["+ echo attempt $CLARITY_ATTEMPT", "attempt 1", "+ exit 1"]
    assert run.recorder.kinds("flaky").count("started") == 1


def test_failed_task_retried_when_retries_declared(harness: Harness, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    run = harness.run(f"""
    workflow:
      name: r
      tasks:
        - name: flaky
          image: alpine
          retries: 3
          commands:
            - echo "attempt $CLARITY_ATTEMPT"
            - echo x >> {counter}
            - test "$CLARITY_ATTEMPT" -ge 3
    """)
    assert run.verdict is Outcome.SUCCEEDED
    assert counter.read_text().count("x") == 3
    row = run.tasks["flaky"]
    assert row.state == "succeeded" and row.attempt == 3
    assert [line for line in run.logs("flaky") if line.startswith("attempt")] == ["attempt 1", "attempt 2", "attempt 3"]
    retried = [ev[3][1] for ev in run.recorder.events if ev[1] == "finished"]
    assert retried == [True, True, False]
    assert [ev[3] for ev in run.recorder.events if ev[1] == "started"] == [1, 2, 3]


def test_retries_exhausted(harness: Harness) -> None:
    run = harness.run("""
    workflow:
      name: r
      tasks:
        - {name: bad, image: alpine, retries: 2, commands: ["echo try $CLARITY_ATTEMPT", "false"]}
    """)
    assert run.verdict is Outcome.FAILED
    assert run.tasks["bad"].attempt == 3
    assert [l for l in run.logs("bad") if l.startswith("try")] == ["try 1", "try 2", "try 3"]


def test_timeout(harness: Harness) -> None:
    run = harness.run("""
    workflow:
      name: t
      tasks:
        - {name: slow, image: alpine, timeout: 0.3s, commands: ["echo start", "sleep 20"]}
        - {name: after, image: alpine, commands: ["echo after"]}
    """)
    assert run.verdict is Outcome.FAILED
    rows = run.tasks
    assert rows["slow"].state == "timed_out"
    assert "timed out after 0.3s" in (rows["slow"].error or "")
    assert rows["slow"].duration_s is not None and rows["slow"].duration_s < 10
    assert rows["after"].state == "skipped"
    assert rows["after"].error == "skipped: runs after 'slow', which timed out"  # list order: no `needs`
    assert run.store.get_run(run.run_id).state == "failed"


def test_cancel_mid_run(harness: Harness) -> None:
    cancel = threading.Event()

    def on_log(task: str, line: str) -> None:
        if line == "long task started":
            cancel.set()

    run = harness.run("""
    workflow:
      name: c
      tasks:
        - name: long
          image: alpine
          needs: []
          commands: ["echo long task started", "sleep 30"]
        - name: next
          image: alpine
          needs: [long]
          commands: ["echo next"]
        - name: last
          image: alpine
          needs: [next]
          commands: ["echo last"]
    """, cancel=cancel, recorder=Recorder(on_log=on_log))
    assert run.verdict is Outcome.CANCELED
    rows = run.tasks
    assert rows["long"].state == "canceled"
    assert rows["next"].state == "canceled" and rows["last"].state == "canceled"
    assert rows["next"].error == "canceled before it started"
    assert run.recorder.kinds("next") == ["finished"]  # never started
    assert run.store.get_run(run.run_id).state == "canceled"
    assert rows["long"].duration_s is not None and rows["long"].duration_s < 10


def test_cancel_before_start_runs_nothing(harness: Harness, tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    run = harness.run("""
    workflow:
      name: c
      tasks:
        - {name: a, image: alpine, commands: ["echo a"]}
    """, cancel=cancel)
    assert run.verdict is Outcome.CANCELED
    assert run.states() == {"a": "canceled"}


def test_when_skips_tasks_and_dependants_still_run(harness: Harness) -> None:
    run = harness.run("""
    workflow:
      name: w
      tasks:
        - name: deploy
          image: alpine
          needs: []
          when: {branch: [release/*]}
          commands: ["echo deploying"]
        - name: tag-only
          image: alpine
          needs: []
          when: {event: [tag]}
          commands: ["echo tag"]
        - name: docs
          image: alpine
          needs: []
          when: {path: ["docs/**"]}
          commands: ["echo docs"]
        - name: notify
          image: alpine
          needs: [deploy]
          commands: ["echo notify ${tasks.deploy.outcome}"]
    """, git=GitInfo(branch="main"), changed_files=("src/a.py",))
    rows = run.tasks
    assert rows["deploy"].state == "skipped"
    assert rows["deploy"].error == "skipped: branch 'main' matches none of release/*"
    assert rows["tag-only"].error == "skipped: event is push, the task runs on tag"
    assert rows["docs"].error == "skipped: no changed file matches the task's path conditions"
    assert rows["notify"].state == "succeeded"
    assert "notify skipped" in run.logs("notify")
    assert run.verdict is Outcome.SUCCEEDED
    assert run.logs("deploy") == []


def test_render_error_fails_the_task_with_its_message_in_the_log(harness: Harness) -> None:
    run = harness.run("""
    workflow:
      name: w
      tasks:
        - {name: a, image: alpine, secrets: [TOKEN], commands: ["echo hi"]}
    """)
    assert run.verdict is Outcome.FAILED
    row = run.tasks["a"]
    assert row.state == "failed" and "needs secret 'TOKEN'" in (row.error or "")
    assert run.logs("a") == [f"error: {row.error}"]


def test_secrets_masked_in_stored_logs_and_outputs(harness: Harness) -> None:
    key = "-----BEGIN KEY-----\nline-one-of-the-key\n  line-two-of-the-key\n-----END KEY-----"
    run = harness.run("""
    workflow:
      name: s
      tasks:
        - name: leak
          image: alpine
          secrets: [TOKEN, KEY]
          commands:
            - echo "token is $TOKEN"
            - printf '%s\\n' "$KEY"
            - >-
              echo "indented:    line-two-of-the-key"
            - echo "value=$TOKEN" >> "$CLARITY_OUTPUTS"
            - echo "\\"$TOKEN\\"" > "$CLARITY_OUTPUT"
    """, secrets={"TOKEN": "hunter2-token", "KEY": key})
    assert run.verdict is Outcome.SUCCEEDED
    logs = run.logs("leak")
    text = "\n".join(logs)
    assert "hunter2" not in text and "line-one-of-the-key" not in text and "line-two-of-the-key" not in text
    assert f"token is {MASK}" in logs
    assert f"indented:    {MASK}" in logs
    printed = logs.index("+ printf '%s\\n' \"$KEY\"")
    assert logs[printed + 1:printed + 5] == [MASK, MASK, f"  {MASK}", MASK]  # each line of the key
    row = run.tasks["leak"]
    assert row.outputs == {"value": MASK}
    assert row.output == MASK


def test_logs_stored_in_order_across_many_lines(harness: Harness) -> None:
    run = harness.run("""
    workflow:
      name: many
      tasks:
        - {name: a, image: alpine, needs: [], commands: ["seq 1 700"]}
        - {name: b, image: alpine, needs: [], commands: ["seq 1 300"]}
    """)
    assert run.verdict is Outcome.SUCCEEDED
    assert run.logs("a") == ["+ seq 1 700", *[str(i) for i in range(1, 701)]]
    assert run.logs("b") == ["+ seq 1 300", *[str(i) for i in range(1, 301)]]
    every = run.store.logs(run.run_id)
    assert [t for t, _, _ in every] == ["a"] * 701 + ["b"] * 301  # task position order, then lines


def test_infrastructure_error_is_retried_once_without_retries(harness: Harness, tmp_path: Path) -> None:
    # the fake backend cannot start a process in a workdir that does not exist: infrastructure
    run = harness.run("""
    workflow:
      name: e
      tasks:
        - {name: a, image: alpine, workdir: missing/dir, commands: ["true"]}
    """)
    row = run.tasks["a"]
    assert row.state == "errored"
    assert row.attempt == 2  # AUTO_RETRIES_ERRORED
    assert run.verdict is Outcome.ERRORED


@pytest.mark.parametrize("outcomes,verdict", [
    ([], Outcome.SUCCEEDED),
    ([Outcome.SUCCEEDED, Outcome.SKIPPED], Outcome.SUCCEEDED),
    ([Outcome.SUCCEEDED, Outcome.TIMED_OUT], Outcome.FAILED),
    ([Outcome.ERRORED, Outcome.FAILED], Outcome.FAILED),
    ([Outcome.ERRORED, Outcome.SKIPPED], Outcome.ERRORED),
    ([Outcome.FAILED, Outcome.CANCELED], Outcome.CANCELED),
])
def test_run_state(outcomes: list[Outcome], verdict: Outcome) -> None:
    assert run_state(outcomes) is verdict
