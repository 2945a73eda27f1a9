"""Composition for real in Docker through `clarity run`: a workflow runs a sub-workflow of the same
repository with typed inputs and reads its outputs downstream."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from tests.e2e.conftest import Env, git

pytestmark = pytest.mark.docker

CI = """\
workflow:
  name: {name}
  outputs:
    url: "${{tasks.deploy.outputs.url}}"
  tasks:
    - name: build
      image: clarity-busybox:latest
      commands: ['echo "version=1.4.2" >> "$CLARITY_OUTPUTS"']
    - name: deploy
      type: workflow
      workflow: deploy.yaml
      inputs: {{env: staging, replicas: {replicas}, version: "${{tasks.build.outputs.version}}"}}
    - name: smoke
      image: clarity-busybox:latest
      commands:
        - echo "checking ${{tasks.deploy.outputs.url}}"
        - test "${{tasks.deploy.outputs.replicas}}" = 3
"""

DEPLOY = """\
workflow:
  name: {name}-deploy
  outputs:
    url: "${{tasks.release.outputs.url}}"
    replicas: "${{inputs.replicas}}"
  triggers:
    - type: manual
      inputs:
        env: {{type: choice, options: [staging, production], required: true}}
        replicas: {{type: number, default: 1}}
        version: {{type: string, required: true}}
  tasks:
    - name: release
      image: clarity-busybox:latest
      commands:
        - 'echo "releasing ${{inputs.version}} x${{inputs.replicas}} to ${{inputs.env}}: $(cat app.txt)"'
        - echo "url=https://${{inputs.env}}.example.org/v${{inputs.version}}" >> "$CLARITY_OUTPUTS"
"""


def test_sub_workflow_with_typed_inputs_and_outputs(env: Env, docker_client: Any, unique: str,
                                                    no_leftovers: Callable[[str], None]) -> None:
    repo = env.repo({".clarity/ci.yaml": CI.format(name=unique, replicas=3),
                     ".clarity/deploy.yaml": DEPLOY.format(name=unique), "app.txt": "the app\n"})
    r = env.clarity(repo, "run")
    assert r.code == 0, r.out + r.err
    store = env.store()
    runs = {run.workflow: run for run in store.list_runs()}
    assert set(runs) == {unique, f"{unique}-deploy"}  # deploy.yaml (manual only) ran as the sub-run alone
    parent, sub = runs[unique], runs[f"{unique}-deploy"]
    assert (parent.state, sub.state) == ("succeeded", "succeeded")
    assert (sub.parent_run, sub.parent_task, sub.commit_sha) == (parent.id, "deploy", parent.commit_sha)
    assert sub.trigger["inputs"] == {"env": "staging", "replicas": "3", "version": "1.4.2"}
    assert sub.outputs == {"url": "https://staging.example.org/v1.4.2", "replicas": "3"}
    assert parent.outputs == {"url": "https://staging.example.org/v1.4.2"}
    tasks = {t.name: t for t in store.list_tasks(parent.id)}
    assert tasks["deploy"].outputs == sub.outputs and tasks["smoke"].state == "succeeded"
    smoke = [line for _t, _ts, line in store.logs(parent.id, "smoke")]
    assert "checking https://staging.example.org/v1.4.2" in smoke
    released = [line for _t, _ts, line in store.logs(sub.id, "release")]
    assert "releasing 1.4.2 x3 to staging: the app" in released  # in the parent's workspace
    # the sub-run's tasks are shown live under the parent's task, and listed after the summary
    assert "deploy/release" in r.out and "releasing 1.4.2 x3 to staging: the app" in r.out
    assert f"sub-run {sub.id} of task deploy: {unique}-deploy (.clarity/deploy.yaml) succeeded" in r.out
    shown = env.clarity(repo, "runs", "show", str(parent.id))
    assert "outputs     url=https://staging.example.org/v1.4.2" in shown.out, shown.out + shown.err
    # every file that went into the run: its own, and the sub-workflow's (commit and blob)
    blob = git(repo, "rev-parse", "HEAD:.clarity/deploy.yaml").strip()
    assert f"sub-run     {sub.id} (task deploy): {unique}-deploy, succeeded" in shown.out, shown.out
    assert ".clarity/deploy.yaml" in shown.out.split("sub-run", 1)[1] and blob[:12] in shown.out
    no_leftovers(unique)
    no_leftovers(f"{unique}-deploy")


def test_a_literal_input_of_the_wrong_type_stops_the_run_before_it_starts(env: Env, docker_client: Any,
                                                                          unique: str) -> None:
    repo = env.repo({".clarity/ci.yaml": CI.format(name=unique, replicas="lots"),
                     ".clarity/deploy.yaml": DEPLOY.format(name=unique), "app.txt": "the app\n"})
    r = env.clarity(repo, "run")
    assert r.code != 0
    assert (".clarity/ci.yaml:12:40: error: task 'deploy': .clarity/deploy.yaml: input 'replicas' must be a "
            "number, got 'lots'") in r.err, r.err
    assert env.store().list_runs() == []
