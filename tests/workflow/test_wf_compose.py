"""Lint of composition: `type: workflow` tasks and `outputs:`, every error with its position."""

from __future__ import annotations

import textwrap

import pytest

from controller.workflow import dag
from controller.workflow.compose import own_path, sub_workflows
from controller.workflow.lint import lint_text
from controller.workflow.schema import json_schema
from controller.workflow.sources import FileRef
from tests.workflow.compose_support import DictSources

TYPES = {"container": None}


def messages(text: str, sources: DictSources | None = None, file: str = ".clarity/ci.yaml") -> list[str]:
    text = textwrap.dedent(text)
    if sources is not None:
        sources.files.setdefault(file, text)
        loaded = sources.own(file)
        _wf, diags = lint_text(text, file, TYPES, sources=sources, loaded=loaded)
    else:
        _wf, diags = lint_text(text, file, TYPES)
    return [d.format() for d in diags]


def test_schema_errors_of_workflow_tasks_and_outputs() -> None:
    assert messages("""
    workflow:
      name: w
      outputs:
        url: "${tasks.b.outputs.url}"
        2bad: x
        list: [1]
      tasks:
        - name: a
          type: workflow
        - name: b
          type: workflow
          workflow: x.yaml
          image: alpine
          wait: "yes"
        - name: c
          type: workflow
          workflow: {repo: acme/x, path: y.yaml}
          inputs: {list: [1], "bad-name": 1}
        - name: d
          workflow: x.yaml
    """) == [
        ".clarity/ci.yaml:6:5: error: invalid output name '2bad'\n  hint: Letters, digits and '_', not starting with a digit.",
        ".clarity/ci.yaml:7:11: error: 'list': expected a boolean or a number or a string, got a list",
        ".clarity/ci.yaml:9:7: error: missing required key 'workflow' in task 'a'",
        ".clarity/ci.yaml:14:7: error: unknown key 'image' in task 'b'\n"
        "  hint: allowed keys: name, needs, when, type, workflow, inputs, wait",
        ".clarity/ci.yaml:15:13: error: 'wait': expected a boolean, got a string in task 'b'",
        ".clarity/ci.yaml:18:18: error: 'repo' needs 'ref' in task 'c'",
        ".clarity/ci.yaml:19:22: error: 'list': expected a boolean or a number or a string, got a list in task 'c'",
        ".clarity/ci.yaml:19:27: error: invalid input name 'bad-name' in task 'c'\n  hint: Letters, digits and '_'.",
        ".clarity/ci.yaml:20:7: error: missing required key 'image' in task 'd'",
        ".clarity/ci.yaml:21:7: error: unknown key 'workflow' in task 'd'\n"
        "  hint: allowed keys: name, needs, when, env, workdir, timeout, retries, secrets, artifacts, network, labels, "
        "resources, type, image, commands",
    ]


def test_outputs_refer_to_tasks_that_exist_and_hold_no_secret() -> None:
    assert messages("""
    workflow:
      name: w
      outputs:
        url: "${tasks.deploy.outputs.url}"
        typo: "see ${tasks.buid.output}"
        token: "${secrets.TOKEN}"
      tasks:
        - {name: build, image: alpine}
        - {name: deploy, image: alpine}
    """) == [
        ".clarity/ci.yaml:6:16: error: ${tasks.buid.output} refers to an unknown task 'buid'\n"
        "  hint: did you mean 'build'?",
        ".clarity/ci.yaml:7:12: error: output 'token': a secret cannot be an output (outputs are stored and shown)",
    ]


def test_the_model_of_a_workflow_task_and_of_outputs() -> None:
    wf, diags = lint_text(textwrap.dedent("""
    workflow:
      name: w
      outputs: {url: "${tasks.deploy.outputs.url}", n: 3}
      tasks:
        - {name: build, image: alpine, needs: []}
        - name: deploy
          type: workflow
          workflow: {repo: acme/ci, ref: v2, path: deploy.yaml}
          inputs: {version: "${tasks.build.outputs.version}", replicas: 2, dry: false}
          wait: false
    """), "w.yaml", TYPES)
    assert wf is not None, diags
    deploy = wf.task("deploy")
    assert deploy.workflow == FileRef("deploy.yaml", "acme/ci", "v2")
    assert deploy.inputs == {"version": "${tasks.build.outputs.version}", "replicas": 2, "dry": False}
    assert deploy.wait is False and deploy.image is None
    assert wf.task("build").workflow is None and wf.task("build").wait is True
    assert wf.outputs == {"url": "${tasks.deploy.outputs.url}", "n": "3"}
    assert dag.edges(wf)["deploy"] == ("build",)  # an input reading a task orders after it


def test_the_published_schema_knows_the_workflow_task() -> None:
    import jsonschema

    v = jsonschema.Draft202012Validator(json_schema())
    ok = {"workflow": {"name": "w", "outputs": {"x": "${tasks.a.output}"}, "tasks": [
        {"name": "a", "type": "workflow", "workflow": {"repo": "r", "ref": "v1", "path": "p.yaml"}, "inputs": {"n": 1}},
        {"name": "b", "type": "some-plugin", "config": {}}]}}
    assert list(v.iter_errors(ok)) == []
    bad = {"workflow": {"name": "w", "tasks": [{"name": "a", "type": "workflow", "workflow": "x.yaml", "image": "i"}]}}
    assert list(v.iter_errors(bad))


def test_without_sources_a_file_running_itself_and_expressions_in_the_path() -> None:
    assert messages("""
    workflow:
      name: w
      tasks:
        - {name: again, type: workflow, workflow: ci.yaml}
        - {name: same, type: workflow, workflow: .clarity/ci.yaml}
        - {name: other, type: workflow, workflow: "${inputs.file}"}
        - {name: secret, type: workflow, workflow: x.yaml, inputs: {t: "${secrets.TOKEN}"}}
    """) == [
        ".clarity/ci.yaml:5:47: error: task 'again' runs the workflow it is part of (.clarity/ci.yaml): it would "
        "start itself without end\n  hint: run another workflow; put what both need in a file each of them runs",
        ".clarity/ci.yaml:6:46: error: task 'same' runs the workflow it is part of (.clarity/ci.yaml): it would "
        "start itself without end\n  hint: run another workflow; put what both need in a file each of them runs",
        ".clarity/ci.yaml:7:47: error: task 'other': the workflow to run is read before the run starts, so it cannot "
        "hold ${...} expressions\n  hint: name the file as it is",
        ".clarity/ci.yaml:8:68: error: task 'secret': a secret cannot be given as an input (inputs are stored and "
        "shown with the sub-run)\n  hint: the sub-run's tasks can declare the secret themselves",
    ]


DEPLOY = """
workflow:
  name: deploy
  triggers:
    - type: manual
      inputs:
        env: {type: choice, options: [staging, production], required: true}
        replicas: {type: number, default: 1}
        dry_run: {type: boolean, default: false}
        version: {type: string}
  tasks:
    - {name: d, image: alpine, commands: ['echo ${inputs.env}']}
"""


def test_literal_inputs_are_checked_against_the_sub_workflows_types() -> None:
    sources = DictSources({".clarity/deploy.yaml": DEPLOY})
    assert messages("""
    workflow:
      name: ci
      tasks:
        - {name: build, image: alpine}
        - name: deploy
          type: workflow
          workflow: deploy.yaml
          inputs:
            env: prod
            replicas: many
            dry_run: maybe
            version: "${tasks.build.outputs.version}"
            replica: 2
        - name: fine
          type: workflow
          workflow: deploy.yaml
          inputs: {env: production, replicas: 3, dry_run: true, version: 1.0}
        - name: missing
          type: workflow
          workflow: deploy.yaml
          inputs: {replicas: "${tasks.build.outputs.n}"}
        - {name: none, type: workflow, workflow: deploy.yaml}
    """, sources) == [
        ".clarity/ci.yaml:10:14: error: task 'deploy': .clarity/deploy.yaml: input 'env' must be one of staging, "
        "production, got 'prod'",
        ".clarity/ci.yaml:11:19: error: task 'deploy': .clarity/deploy.yaml: input 'replicas' must be a number, "
        "got 'many'",
        ".clarity/ci.yaml:12:18: error: task 'deploy': .clarity/deploy.yaml: input 'dry_run' must be true or false, "
        "got 'maybe'",
        ".clarity/ci.yaml:14:9: error: task 'deploy': .clarity/deploy.yaml has no input 'replica' (its inputs: env, "
        "replicas, dry_run, version)\n  hint: did you mean 'replicas'?",
        ".clarity/ci.yaml:22:7: error: task 'missing': .clarity/deploy.yaml: input 'env' is required\n"
        "  hint: give it in the task's inputs: env: VALUE",
        ".clarity/ci.yaml:23:46: error: task 'none': .clarity/deploy.yaml: input 'env' is required\n"
        "  hint: give it in the task's inputs: env: VALUE",
    ]


def test_unreadable_and_broken_sub_workflows() -> None:
    sources = DictSources({".clarity/broken.yaml": "workflow:\n  name: b\n  tasks:\n    - {name: x}\n"})
    assert messages("""
    workflow:
      name: ci
      tasks:
        - {name: a, type: workflow, workflow: nothing.yaml}
        - {name: b, type: workflow, workflow: broken.yaml}
        - {name: c, type: workflow, workflow: {repo: acme/ci, ref: v9, path: x.yaml}}
    """, sources) == [
        ".clarity/ci.yaml:5:43: error: task 'a': cannot read the workflow .clarity/nothing.yaml: no file "
        ".clarity/nothing.yaml\n  hint: a bare file name is read in .clarity/, a path with '/' from the repository root",
        ".clarity/ci.yaml:6:43: error: task 'b': the workflow .clarity/broken.yaml has errors: "
        ".clarity/broken.yaml:4:7: error: missing required key 'image' in task 'x'\n"
        "  hint: clarity lint .clarity/broken.yaml",
        ".clarity/ci.yaml:7:43: error: task 'c': cannot read the workflow acme/ci@v9:.clarity/x.yaml: repository "
        "acme/ci has no tag, branch or commit 'v9'\n  hint: check that the repository acme/ci is known here (its URL "
        "or path, or a name registered with `clarity repo add`, or in the setting repositories for clarity run) and "
        "has the tag, branch or commit v9",
    ]


def test_recursion_through_other_files_is_an_error_with_both_positions() -> None:
    sources = DictSources({
        ".clarity/build.yaml": """
        workflow:
          name: build
          tasks:
            - {name: test, image: alpine}
            - {name: release, type: workflow, workflow: release.yaml}
        """,
        ".clarity/release.yaml": """
        workflow:
          name: release
          tasks:
            - {name: again, type: workflow, workflow: .clarity/ci.yaml}
        """,
    })
    assert messages("""
    workflow:
      name: ci
      tasks:
        - {name: build, type: workflow, workflow: build.yaml}
    """, sources) == [
        ".clarity/ci.yaml:5:47: error: task 'build': the workflows run one another without end: .clarity/ci.yaml -> "
        ".clarity/build.yaml -> .clarity/release.yaml -> .clarity/ci.yaml\n"
        "  hint: the way back: .clarity/build.yaml:6:49 runs .clarity/release.yaml; .clarity/release.yaml:5:47 runs "
        ".clarity/ci.yaml",
    ]


def test_recursion_inside_another_repository_is_followed() -> None:
    template = """
    workflow:
      name: t
      tasks:
        - {name: loop, type: workflow, workflow: other.yaml}
    """
    other = template.replace("other.yaml", "t.yaml").replace("name: t", "name: other")
    sources = DictSources(repos={("acme/ci", "v2"): {".clarity/t.yaml": template, ".clarity/other.yaml": other}})
    found = messages("""
    workflow:
      name: ci
      tasks:
        - {name: use, type: workflow, workflow: {repo: acme/ci, ref: v2, path: t.yaml}}
    """, sources)
    assert found == [
        ".clarity/ci.yaml:5:45: error: task 'use': the workflows run one another without end: .clarity/ci.yaml -> "
        "acme/ci@v2:.clarity/t.yaml -> acme/ci@v2:.clarity/other.yaml -> acme/ci@v2:.clarity/t.yaml\n"
        "  hint: the way back: acme/ci@v2:.clarity/t.yaml:5:46 runs acme/ci@v2:.clarity/other.yaml; "
        "acme/ci@v2:.clarity/other.yaml:5:46 runs acme/ci@v2:.clarity/t.yaml",
    ]


def test_a_clean_composition_and_the_sub_workflows_it_reaches() -> None:
    sources = DictSources({".clarity/deploy.yaml": DEPLOY.replace(
        "- {name: d,", "- {name: notify, type: workflow, workflow: notify.yaml}\n    - {name: d,"),
        ".clarity/notify.yaml": "workflow: {name: notify, tasks: [{name: n, image: alpine, labels: [gpu]}]}\n"})
    text = """
    workflow:
      name: ci
      outputs: {url: "${tasks.deploy.outputs.url}"}
      tasks:
        - {name: deploy, type: workflow, workflow: deploy.yaml, inputs: {env: staging}}
    """
    assert messages(text, sources) == []
    wf, _ = lint_text(textwrap.dedent(text), ".clarity/ci.yaml", TYPES)
    assert wf is not None
    assert [w.name for w in sub_workflows(wf, sources)] == ["deploy", "notify"]


@pytest.mark.parametrize("file, path", [
    (".clarity/ci.yaml", ".clarity/ci.yaml"), ("/home/me/repo/.clarity/ci.yaml", ".clarity/ci.yaml"),
    ("acme/ci@v2:.clarity/x.yaml", ".clarity/x.yaml"), ("./ci/build.yaml", "ci/build.yaml"),
])
def test_own_path(file: str, path: str) -> None:
    assert own_path(file) == path
