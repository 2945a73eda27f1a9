"""Broken workflow files -> the diagnostics they must produce (file:line:col: severity: message)."""

from __future__ import annotations

import pytest

from tests.workflow.wf_support import Lint

OK_TASK = "    - {name: t, image: alpine}\n"

CASES: list[tuple[str, str, list[str]]] = [
    ("unknown key with suggestion", """
        workflow:
          name: w
          tasks:
            - name: build
              imgae: alpine
        """, ["w.yaml:6:7: error: unknown key 'imgae' in task 'build'\n  hint: did you mean 'image'?",
              "w.yaml:5:7: error: missing required key 'image' in task 'build'"]),
    ("missing name", """
        workflow:
          tasks:
            - {name: t, image: alpine}
        """, ["w.yaml:3:3: error: missing required key 'name'"]),
    ("missing workflow key", """
        name: w
        """, ["w.yaml:2:1: error: missing required key 'workflow'", "w.yaml:2:1: error: unknown key 'name'"]),
    ("commands as a string", """
        workflow:
          name: w
          tasks:
            - name: t
              image: alpine
              commands: make test
        """, ["w.yaml:7:17: error: 'commands': expected a list, got a string in task 't'\n"
              "  hint: write a list: commands: [\"make test\"]"]),
    ("unknown task type", """
        workflow:
          name: w
          tasks:
            - {name: t, type: validaton}
        """, ["w.yaml:5:23: error: unknown task type 'validaton'; known: container, storage, transformation, "
              "validation, workflow\n  hint: did you mean 'validation'?"]),
    ("unknown trigger type", """
        workflow:
          name: w
          triggers: [{type: psuh}]
          tasks: [{name: t, image: alpine}]
        """, ["w.yaml:4:21: error: unknown trigger type 'psuh'", "hint: did you mean 'push'?"]),
    ("key of another trigger type", """
        workflow:
          name: w
          triggers:
            - type: tag
              branches: [main]
          tasks: [{name: t, image: alpine}]
        """, ["w.yaml:6:7: error: unknown key 'branches' in the tag trigger"]),
    ("duplicate task names", """
        workflow:
          name: w
          tasks:
            - {name: t, image: alpine}
            - {name: t, image: alpine}
        """, ["w.yaml:6:14: error: duplicate task name 't' (first defined at w.yaml:5:14)"]),
    ("needs missing and itself", """
        workflow:
          name: w
          tasks:
            - {name: build, image: alpine, needs: [biuld, test]}
            - {name: test, image: alpine, needs: [test]}
        """, ["w.yaml:5:44: error: 'needs' names an unknown task 'biuld'\n  hint: did you mean 'build'?",
              "w.yaml:6:43: error: task 'test' needs itself"]),
    ("cycle", """
        workflow:
          name: w
          tasks:
            - {name: a, image: alpine, needs: [b]}
            - {name: b, image: alpine, needs: [c]}
            - {name: c, image: alpine, commands: ["echo ${tasks.a.output}"]}
        """, ["w.yaml:5:7: error: dependency cycle: a -> b -> c -> a"]),
    ("reference to a missing task, column inside the string", """
        workflow:
          name: w
          tasks:
            - name: a
              image: alpine
              env: {X: "v=${tasks.bulid.output}"}
            - {name: build, image: alpine}
        """, ["w.yaml:7:19: error: ${tasks.bulid.output} refers to an unknown task 'bulid'\n"
              "  hint: did you mean 'build'?"]),
    ("forward reference in list order", """
        workflow:
          name: w
          tasks:
            - name: a
              image: alpine
              commands: ["echo ${tasks.b.output}"]
            - {name: b, image: alpine}
        """, ["w.yaml:7:24: error: ${tasks.b.output}: task 'a' reads task 'b', which runs after it"]),
    ("unknown expression root", """
        workflow:
          name: w
          tasks:
            - name: a
              image: alpine
              commands:
                - echo ${gti.sha} ${HOME}
        """, ["w.yaml:8:16: error: unknown expression root 'gti' in ${gti.sha}"]),
    ("malformed expression and bad field", """
        workflow:
          name: w
          tasks:
            - name: a
              image: alpine
              workdir: "${git.sha | x}"
              commands: ["${git.hash}", "${tasks.a.result}"]
        """, ["w.yaml:7:17: error: malformed expression '${git.sha | x}'",
              "w.yaml:8:19: error: ${git.hash}: git has sha",
              "w.yaml:8:34: error: ${tasks.a.result}: use tasks.NAME.output"]),
    ("invalid cron and time zone", """
        workflow:
          name: w
          triggers:
            - {type: schedule, cron: "61 * * * *", timezone: Mars/Olympus}
            - {type: schedule, cron: "* * * * * *"}
            - {type: schedule, cron: "0 0 30 2 *", timezone: Europe}
          tasks: [{name: t, image: alpine}]
        """, ["w.yaml:5:31: error: invalid cron expression '61 * * * *': minute 61 is out of range (0-59)",
              "w.yaml:5:54: error: unknown time zone 'Mars/Olympus'",
              "w.yaml:6:41: error: cron expression '* * * * * *' has 6 fields",
              "w.yaml:7:35: error: cron expression '0 0 30 2 *' never matches",
              "w.yaml:7:54: error: unknown time zone 'Europe'"]),
    ("schedule without cron, bad catchup", """
        workflow:
          name: w
          triggers:
            - {type: schedule, catchup: some}
          tasks: [{name: t, image: alpine}]
        """, ["w.yaml:5:7: error: missing required key 'cron' in the schedule trigger",
              "w.yaml:5:33: error: unknown catchup 'some' in the schedule trigger; known: none, latest, all"]),
    ("event trigger that starts the workflow itself", """
        workflow:
          name: build
          triggers:
            - type: event
              workflow: build
              state: any
            - {type: event, workflow: build, repo: acme/other}
            - {type: event, workflow: test, repo: not-a-repo}
            - {type: event, name: deploy, state: success}
          tasks: [{name: t, image: alpine}]
        """, ["w.yaml:6:17: error: a workflow that starts itself when it finishes never stops\n"
              "  hint: name another workflow; to try again after a failure, give the task `retries`, or use a schedule",
              "w.yaml:9:43: error: invalid repository name 'not-a-repo' in the event trigger",
              "w.yaml:10:35: error: 'state' needs 'workflow' in the event trigger"]),
    ("bad durations and sizes", """
        workflow:
          name: w
          tasks:
            - name: t
              image: alpine
              timeout: 10 minutes
              resources: {memory: 512x, cpus: 0, pids: 0}
            - {name: u, image: alpine, timeout: 0s, resources: {memory: "0"}}
        """, ["w.yaml:7:16: error: invalid duration '10 minutes'",
              "w.yaml:8:27: error: invalid size '512x'",
              "w.yaml:8:39: error: 'cpus' must be more than 0, got 0",
              "w.yaml:8:48: error: 'pids' must be at least 1, got 0",
              "w.yaml:9:41: error: a duration must be positive, got '0s'",
              "w.yaml:9:65: error: a size must be positive, got '0'"]),
    ("retries out of range and wrong type", """
        workflow:
          name: w
          tasks:
            - {name: t, image: alpine, retries: 11}
            - {name: u, image: alpine, retries: "2"}
        """, ["w.yaml:5:41: error: 'retries' must be at most 10, got 11 in task 't'",
              "w.yaml:6:41: error: 'retries': expected an integer, got a string in task 'u'"]),
    ("secret names and network", """
        workflow:
          name: w
          tasks:
            - {name: t, image: alpine, secrets: [api_key], network: internet}
        """, ["w.yaml:5:42: error: invalid secret name 'api_key' in task 't'",
              "w.yaml:5:61: error: unknown network 'internet' in task 't'; known: none, host, bridge"]),
    ("bad task name and env name", """
        workflow:
          name: w
          env: {1BAD: x}
          tasks:
            - {name: "a.b", image: alpine}
        """, ["w.yaml:4:9: error: invalid environment variable name '1BAD'",
              "w.yaml:6:14: error: invalid task name 'a.b'"]),
    ("when with a bad event and a string", """
        workflow:
          name: w
          tasks:
            - name: t
              image: alpine
              when: {event: [pushh], branch: main}
        """, ["w.yaml:7:22: error: unknown event 'pushh' in task 't'",
              "w.yaml:7:38: error: 'branch': expected a list, got a string in task 't'"]),
    ("config not allowed on container, image not on plugin", """
        workflow:
          name: w
          tasks:
            - {name: t, image: alpine, config: {a: 1}}
            - {name: v, type: validation, image: alpine}
        """, ["w.yaml:5:32: error: unknown key 'config' in task 't'",
              "w.yaml:6:35: error: unknown key 'image' in task 'v'"]),
    ("event and file_watch need one of two keys", """
        workflow:
          name: w
          triggers:
            - {type: event, state: failure}
            - {type: file_watch, paths: ["a/*"], directory: /srv}
            - {type: webhook, path: hook}
          tasks: [{name: t, image: alpine}]
        """, ["w.yaml:5:7: error: give exactly one of 'workflow' or 'name' in the event trigger",
              "w.yaml:5:21: error: 'state' needs 'workflow' in the event trigger",
              "w.yaml:6:7: error: give exactly one of 'paths' or 'directory' in the file_watch trigger",
              "w.yaml:7:29: error: invalid webhook path 'hook' in the webhook trigger"]),
    ("manual inputs", """
        workflow:
          name: w
          triggers:
            - type: manual
              inputs:
                env: {type: choice, options: [dev, prod], default: test}
                n: {type: number, default: "3"}
                c: {type: choice}
          tasks:
            - {name: t, image: alpine, commands: ["echo ${inputs.enn}"]}
        """, ["w.yaml:7:60: error: the default of input 'env' must be one of its options",
              "w.yaml:8:36: error: 'default': expected a number, got a string in the manual trigger",
              "w.yaml:9:12: error: missing required key 'options'",
              "w.yaml:11:49: warning: ${inputs.enn}: no manual trigger declares the input 'enn'"]),
    ("task results outside tasks", """
        workflow:
          name: w
          env: {X: "${tasks.t.output}"}
          tasks:
            - {name: t, image: "${tasks.t.output}"}
        """, ["w.yaml:4:13: error: ${tasks.t.output}: only a task, or the workflow's outputs, can read the "
              "results of a task",
              "w.yaml:6:25: error: ${tasks.t.output}: task results can be used in commands, env, config, workdir, "
              "inputs only, not in 'image'"]),
    ("empty tasks and empty name", """
        workflow:
          name: ""
          tasks: []
        """, ["w.yaml:3:9: error: 'name' must not be empty", "w.yaml:4:10: error: 'tasks' must not be empty"]),
    ("duplicate keys", """
        workflow:
          name: w
          tasks:
            - name: t
              image: alpine
              image: debian
        """, ["w.yaml:7:7: error: duplicate key 'image' (first defined at w.yaml:6:7)"]),
    ("yaml syntax error", """
        workflow:
          name: [w
          tasks: []
        """, ["w.yaml:4:8: error: invalid YAML"]),
    ("tab indentation", "workflow:\n\tname: w\n", ["w.yaml:2:1: error: tab character in indentation"]),
    ("empty file", "# nothing\n", ["w.yaml:1:1: error: the file is empty"]),
    ("top level is a list", "- a\n- b\n", ["w.yaml:1:1: error: the top level must be a mapping, got a list"]),
    ("unsupported tag", """
        workflow:
          name: !!python/name:os.system w
          tasks: [{name: t, image: alpine}]
        """, ["w.yaml:3:9: error: unsupported YAML tag '!!python/name:os.system'"]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_workflow(lint: Lint, text: str, expected: list[str]) -> None:
    workflow, diagnostics = lint(text)
    output = "\n".join(d.format() for d in diagnostics)
    for line in expected:
        assert line in output, f"missing: {line}\n--- got:\n{output}"
    assert workflow is None or not any(d.is_error for d in diagnostics)
    if any(": error: " in line for line in expected):
        assert workflow is None


def test_all_problems_in_one_pass(lint: Lint) -> None:
    _, diagnostics = lint("""
        workflow:
          name: w
          version: 1.10
          triggers:
            - {type: schedule, cron: "bad"}
          tasks:
            - {name: a, imgae: alpine, needs: [zz]}
            - {name: a, image: alpine, timeout: forever, env: {DEBUG: yes}}
        """)
    errors = [d for d in diagnostics if d.is_error]
    warnings = [d for d in diagnostics if not d.is_error]
    assert len(errors) >= 6, [d.format() for d in errors]
    assert len(warnings) == 1 and "'yes' is read by YAML as the boolean true" in warnings[0].message
    lines = [d.pos.line for d in diagnostics]
    assert lines == sorted(lines)
