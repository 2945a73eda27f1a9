"""Workflow inheritance end to end in Docker through `clarity run`: a repository whose workflows
extend a template of a second local repository, one by the tag v1 (by a name of the setting
`repositories`), one pinned to the commit v1 was at (by path). Moving the tag changes what the
first runs and not the second: the child's ref decides. `clarity runs show` lists every file
that went into a run with its commit and blob sha."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.e2e.conftest import Env, git

pytestmark = pytest.mark.docker

COMMON = """\
workflow:
  name: template
  triggers: [{type: push, branches: [main]}]
  env: {TEMPLATE: "%s"}
  tasks:
    - name: lint
      image: clarity-busybox:latest
      commands: ['echo "lint by template $TEMPLATE"']
"""
PYTHON = """\
workflow:
  extends: common.yaml
  tasks:
    - name: test
      image: clarity-busybox:latest
      commands: ['echo "test by template $TEMPLATE with $WHO"']
      env: {WHO: template}
"""


def _commit(repo: Path, version: str) -> str:
    (repo / ".clarity" / "common.yaml").write_text(COMMON % version)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"template {version}")
    return git(repo, "rev-parse", "HEAD").strip()


def _logs(env: Env, run_id: int) -> str:
    return "\n".join(line for _t, _ts, line in env.store().logs(run_id))


def test_a_template_at_a_tag_and_at_a_pinned_commit(env: Env, docker_client: Any, unique: str,
                                                    no_leftovers: Callable[[str], None]) -> None:
    templates = env.repo({".clarity/python.yaml": PYTHON, ".clarity/common.yaml": COMMON % "one"})
    first = git(templates, "rev-parse", "HEAD").strip()
    git(templates, "tag", "v1")
    tagged = (f"workflow:\n  name: {unique}\n  extends: {{repo: acme/ci-templates, ref: v1, path: python.yaml}}\n"
              "  tasks:\n    - {name: test, env: {WHO: app}}\n"
              "    - {name: deploy, image: clarity-busybox:latest, commands: ['echo deployed']}\n")
    pinned = f"workflow:\n  name: {unique}\n  extends: {{repo: {templates}, ref: {first}, path: python.yaml}}\n"
    app = env.repo({".clarity/tagged.yaml": tagged, ".clarity/pinned.yaml": pinned})
    settings = {"CLARITY_REPOSITORIES": f"acme/ci-templates={templates}"}

    r = env.clarity(app, "run", extra_env=settings)
    assert r.code == 0, r.out + r.err
    runs = {run.workflow_file: run for run in env.store().list_runs()}
    tagged_run, pinned_run = runs[".clarity/tagged.yaml"], runs[".clarity/pinned.yaml"]
    assert [t.name for t in env.store().list_tasks(tagged_run.id)] == ["lint", "test", "deploy"]
    assert "test by template one with app" in _logs(env, tagged_run.id)
    assert "deployed" in _logs(env, tagged_run.id)
    assert [t.name for t in env.store().list_tasks(pinned_run.id)] == ["lint", "test"]
    assert "test by template one with template" in _logs(env, pinned_run.id)

    shown = env.clarity(app, "runs", "show", str(tagged_run.id))
    assert shown.code == 0, shown.err
    app_sha = git(app, "rev-parse", "HEAD").strip()
    lines = [line for line in shown.out.splitlines() if line.startswith("  file ")]

    def blob(repo: Path, rev: str, path: str) -> str:
        return git(repo, "rev-parse", f"{rev}:{path}").strip()[:12]

    assert lines == [
        f"  file        {app}  .clarity/tagged.yaml  commit {app_sha[:12]}  "
        f"blob {blob(app, 'HEAD', '.clarity/tagged.yaml')}",
        f"  file        acme/ci-templates  .clarity/python.yaml@v1  commit {first[:12]}  "
        f"blob {blob(templates, first, '.clarity/python.yaml')}",
        f"  file        acme/ci-templates  .clarity/common.yaml@v1  commit {first[:12]}  "
        f"blob {blob(templates, first, '.clarity/common.yaml')}",
    ]

    # the tag moves to a new commit of the template: the child that follows v1 runs it, the pinned one does not
    second = _commit(templates, "two")
    git(templates, "tag", "-f", "v1")
    r = env.clarity(app, "run", extra_env=settings)
    assert r.code == 0, r.out + r.err
    latest = {run.workflow_file: run for run in env.store().list_runs(limit=2)}
    assert "test by template two with app" in _logs(env, latest[".clarity/tagged.yaml"].id)
    assert "test by template one with template" in _logs(env, latest[".clarity/pinned.yaml"].id)
    files = latest[".clarity/tagged.yaml"].context["files"]
    assert [(f["path"], f["commit"]) for f in files[1:]] == [(".clarity/python.yaml", second),
                                                            (".clarity/common.yaml", second)]
    assert re.fullmatch(r"[0-9a-f]{40}", files[0]["blob"])
    no_leftovers(unique)


def test_a_missing_base_is_a_lint_error_before_anything_runs(env: Env, docker_client: Any, unique: str) -> None:
    app = env.repo({".clarity/ci.yaml": f"workflow:\n  name: {unique}\n  extends: {{repo: nowhere, ref: v1, "
                                        "path: python.yaml}\n"})
    r = env.clarity(app, "run")
    assert r.code != 0
    assert (".clarity/ci.yaml:3:12: error: cannot read the base nowhere@v1:.clarity/python.yaml: unknown repository "
            "'nowhere'") in r.err
    assert env.store().list_runs() == []


def test_a_workflow_that_extends_a_template_and_composes_a_sub_workflow(env: Env, docker_client: Any, unique: str,
                                                                        no_leftovers: Callable[[str], None]) -> None:
    # The issue's scenario in one run: a template from a second repository at a tag, and a
    # sub-workflow with typed inputs whose output is read downstream.
    templates = env.repo({".clarity/python.yaml": PYTHON, ".clarity/common.yaml": COMMON % "one"})
    git(templates, "tag", "v1")
    child = (f"workflow:\n  name: {unique}\n  extends: {{repo: acme/ci-templates, ref: v1, path: python.yaml}}\n"
             "  tasks:\n"
             "    - {name: ship, type: workflow, workflow: ship.yaml, inputs: {copies: 2}}\n"
             "    - {name: report, image: clarity-busybox:latest,\n"
             "       commands: ['echo \"shipped to ${tasks.ship.outputs.where}\"']}\n")
    ship = (f"workflow:\n  name: {unique}-ship\n  outputs: {{where: \"${{tasks.copy.outputs.where}}\"}}\n"
            "  triggers: [{type: manual, inputs: {copies: {type: number, required: true}}}]\n"
            "  tasks:\n    - name: copy\n      image: clarity-busybox:latest\n"
            "      commands: ['echo \"where=shelf-${inputs.copies}\" >> \"$CLARITY_OUTPUTS\"']\n")
    app = env.repo({".clarity/ci.yaml": child, ".clarity/ship.yaml": ship})
    r = env.clarity(app, "run", ".clarity/ci.yaml", extra_env={"CLARITY_REPOSITORIES": f"acme/ci-templates={templates}"})
    assert r.code == 0, r.out + r.err
    runs = {run.workflow: run for run in env.store().list_runs()}
    parent, sub = runs[unique], runs[f"{unique}-ship"]
    assert [t.name for t in env.store().list_tasks(parent.id)] == ["lint", "test", "ship", "report"]
    assert "lint by template one" in _logs(env, parent.id) and "shipped to shelf-2" in _logs(env, parent.id)
    assert sub.parent_run == parent.id and sub.outputs == {"where": "shelf-2"}
    shown = env.clarity(app, "runs", "show", str(parent.id)).out
    assert "acme/ci-templates  .clarity/python.yaml@v1" in shown and f"sub-run     {sub.id} (task ship)" in shown
    assert git(app, "rev-parse", "HEAD:.clarity/ship.yaml").strip()[:12] in shown
    no_leftovers(unique)
