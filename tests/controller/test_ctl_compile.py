"""compile.render_task: workflow text + RunContext -> TaskSpec; when_skip_reason."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.controller.conftest import load_workflow
from controller.workflow.compile import (
    DEFAULT_TIMEOUT_S, SCRIPT_PATH, GitInfo, RenderError, RunContext, render_task, when_skip_reason,
)
from controller.workflow.model import When
from runner.backends.fake import FakeBackend
from runner.execute import execute
from runner.spec import ArtifactIn, Limits, Outcome, TaskResult, TaskSpec, Workspace
from runner.workspace import WorkspaceCache

WS = Workspace(repo="/src/repo", commit="c" * 40)
GIT = GitInfo(sha="0123456789abcdef" * 2 + "01234567", ref="refs/heads/main", branch="main",
              message="fix: things", author="Dev One", repo="/src/repo")


def ctx_for(text: str, **kw: Any) -> RunContext:
    kw.setdefault("git", GIT)
    return RunContext(run_id=kw.pop("run_id", 7), workflow=load_workflow(text), workspace=WS, **kw)


def render(text: str, task: str | None = None, results: dict[str, TaskResult] | None = None,
           upstream: tuple[str, ...] = (), attempt: int = 1, **kw: Any) -> TaskSpec:
    ctx = ctx_for(text, **kw)
    t = ctx.workflow.task(task) if task else ctx.workflow.tasks[-1]
    return render_task(t, ctx, results or {}, upstream, attempt=attempt)


def script_of(spec: TaskSpec) -> str:
    assert [f.path for f in spec.files] == [SCRIPT_PATH]
    assert spec.files[0].mode == 0o755
    return spec.files[0].content.decode()


MINIMAL = """
workflow:
  name: ci
  tasks:
    - name: build
      image: alpine:3
      commands: ["make"]
"""

FULL = """
workflow:
  name: ci
  version: "1.2"
  env:
    GLOBAL: "g-${git.short_sha}"
    SHARED: from-workflow
  tasks:
    - name: build
      image: alpine:3
      workdir: sub/dir
      timeout: 90s
      network: bridge
      resources: {memory: 512m, cpus: 1.5, pids: 100}
      secrets: [TOKEN]
      artifacts: [dist/, "*.log"]
      env:
        WHO: "${git.author}"
        SHARED: from-task
        NUM: 3
      commands:
        - echo "${git.branch}" on ${workflow.name}
        - echo "$HOME ${HOME} $${literal.thing}"
"""

# (id, workflow, context kwargs, expected TaskSpec fields)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("minimal", MINIMAL, {}, {
        "run_id": "7", "task": "build", "image": "alpine:3",
        "argv": ("/bin/sh", "-e", SCRIPT_PATH),
        "workdir": "/workspace", "timeout_s": DEFAULT_TIMEOUT_S,
        "limits": Limits(memory_bytes=None, cpus=None, pids=512),
        "network": "none", "mask": (), "artifacts": (), "artifacts_in": (), "attempt": 1,
        "workspace": WS, "labels": {"io.clarity.workflow": "ci"},
        "script": "set -e\nprintf '%s\\n' '+ make'\nmake\n",
    }),
    ("full", FULL, {"secrets": {"TOKEN": "s3cr3t-value", "OTHER": "other-secret", "EMPTY": ""}}, {
        "argv": ("/bin/sh", "-e", SCRIPT_PATH),
        "workdir": "/workspace/sub/dir", "timeout_s": 90.0,
        "limits": Limits(memory_bytes=512 * 1024 * 1024, cpus=1.5, pids=100),
        "network": "bridge",
        "mask": ("s3cr3t-value",),  # the secrets this task reads, not OTHER: a runner never gets another task's
        "artifacts": ("dist/", "*.log"),
        "env_sub": {
            "GLOBAL": "g-01234567", "WHO": "Dev One", "SHARED": "from-task", "NUM": "3",
            "TOKEN": "s3cr3t-value", "CLARITY_EXPR_1": "main", "CLARITY_EXPR_2": "ci",
        },
        "script": (
            "set -e\n"
            "printf '%s\\n' '+ echo \"${git.branch}\" on ${workflow.name}'\n"
            "echo \"${CLARITY_EXPR_1}\" on ${CLARITY_EXPR_2}\n"
            "printf '%s\\n' '+ echo \"$HOME ${HOME} $${literal.thing}\"'\n"
            "echo \"$HOME ${HOME} ${literal.thing}\"\n"
        ),
    }),
    ("no commands: the image's default command", """
workflow:
  name: ci
  tasks:
    - name: serve
      image: nginx
""", {}, {"argv": (), "files": ()}),
    ("multi-line command shown by its first line", """
workflow:
  name: ci
  tasks:
    - name: build
      image: alpine
      commands:
        - |
          echo one
          echo two
""", {}, {"script": "set -e\nprintf '%s\\n' '+ echo one ...'\necho one\necho two\n\n"}),
    ("expressions everywhere", """
workflow:
  name: ci
  version: "2.0"
  triggers: [{type: manual, inputs: {target: {type: string}}}]
  tasks:
    - name: deploy
      image: alpine
      workdir: "${inputs.target}"
      env:
        RUN: "${workflow.id}/${workflow.version}/${workflow.file}"
        EVENT: "${trigger.event} by ${trigger.by}"
        SHA: "${git.sha}"
      commands: ["echo ${inputs.target} ${git.short_sha} ${inputs.target}"]
""", {"inputs": {"target": "prod"}, "event": "manual", "trigger": {"by": "alice"}, "run_id": 42}, {
        "run_id": "42", "workdir": "/workspace/prod",
        "env_sub": {
            "RUN": "42/2.0/.clarity/ci.yaml", "EVENT": "manual by alice", "SHA": GIT.sha,
            "CLARITY_EXPR_1": "prod", "CLARITY_EXPR_2": "01234567", "CLARITY_EXPR_3": "prod",
            "CLARITY_EVENT": "manual", "CLARITY_RUN_ID": "42",
        },
        "script": "set -e\nprintf '%s\\n' '+ echo ${inputs.target} ${git.short_sha} ${inputs.target}'\n"
                  "echo ${CLARITY_EXPR_1} ${CLARITY_EXPR_2} ${CLARITY_EXPR_3}\n",
    }),
    ("workdir normalised inside the workspace", """
workflow:
  name: ci
  tasks:
    - name: b
      image: alpine
      workdir: a/../b/./c/
      commands: ["true"]
""", {}, {"workdir": "/workspace/b/c"}),
    ("workdir '.' is the workspace", """
workflow:
  name: ci
  tasks:
    - name: b
      image: alpine
      workdir: .
      commands: ["true"]
""", {}, {"workdir": "/workspace"}),
]


@pytest.mark.parametrize("text,kw,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_render_task_table(text: str, kw: dict[str, Any], expected: dict[str, Any]) -> None:
    spec = render(text, **kw)
    for key, want in expected.items():
        if key == "script":
            assert script_of(spec) == want
        elif key == "env_sub":
            got = {k: spec.env.get(k) for k in want}
            assert got == want
        else:
            assert getattr(spec, key) == want, key
    # the spec is plain data: it survives the JSON round trip the remote runners will use
    assert TaskSpec.from_json(spec.to_json()) == spec


def test_clarity_variables() -> None:
    spec = render(MINIMAL, attempt=3, git=GitInfo(sha="f" * 40, ref="refs/tags/v1", branch="", tag="v1"),
                  event="tag", run_id=9)
    assert {k: v for k, v in spec.env.items() if k.startswith("CLARITY") or k == "CI"} == {
        "CI": "true", "CLARITY": "true", "CLARITY_RUN_ID": "9", "CLARITY_WORKFLOW": "ci",
        "CLARITY_TASK": "build", "CLARITY_ATTEMPT": "3", "CLARITY_EVENT": "tag",
        "CLARITY_COMMIT_SHA": "f" * 40, "CLARITY_REF": "refs/tags/v1", "CLARITY_BRANCH": "",
        "CLARITY_TAG": "v1", "CLARITY_WORKSPACE": "/workspace",
        "CLARITY_OUTPUT": "/clarity/output", "CLARITY_OUTPUTS": "/clarity/outputs",
    }
    assert spec.attempt == 3


def test_outputs_and_artifacts_of_upstream_tasks(tmp_path: Path) -> None:
    text = """
    workflow:
      name: ci
      tasks:
        - name: a
          image: alpine
          commands: ["true"]
        - name: b
          image: alpine
          commands: ["true"]
        - name: c
          image: alpine
          env:
            JSON: "${tasks.a.output}"
            TEXT: "${tasks.b.output}"
            KV: "${tasks.a.outputs.k}"
            OUTCOME: "${tasks.b.outcome}"
          commands: ["echo ${tasks.a.outputs.k}"]
    """
    results = {
        "a": TaskResult(Outcome.SUCCEEDED, output={"b": [1, 2], "a": "x"}, outputs={"k": "v=1"},
                        artifacts_dir=str(tmp_path / "arts-a")),
        "b": TaskResult(Outcome.SUCCEEDED, output="plain text", artifacts_dir=None),
    }
    spec = render(text, "c", results=results, upstream=("a", "b"))
    assert spec.env["JSON"] == '{"a": "x", "b": [1, 2]}'
    assert spec.env["TEXT"] == "plain text"
    assert spec.env["KV"] == "v=1"
    assert spec.env["OUTCOME"] == "succeeded"
    assert spec.env["CLARITY_EXPR_1"] == "v=1"
    # only upstream tasks with collected artifacts are handed over
    assert spec.artifacts_in == (ArtifactIn(source=str(tmp_path / "arts-a"), task="a"),)
    # a task not in `upstream` gives no artifacts even when it has some
    assert render(text, "c", results=results, upstream=()).artifacts_in == ()


# -- injection safety ------------------------------------------------------------------------

INJECT = """
workflow:
  name: ci
  tasks:
    - name: t
      image: alpine
      env:
        MSG: "${git.message}"
      commands:
        - echo "branch=${git.branch}"
        - echo msg=${git.message}
        - 'printf "%s\\n" "$MSG"'
"""


def test_git_values_only_in_env_never_in_script(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    branch = f"$(touch {pwned})"
    message = f"fix `touch {pwned}` \"quoted\" 'single' $HOME ;rm -rf / \\"
    spec = render(INJECT, git=GitInfo(sha="a" * 40, branch=branch, message=message))
    text = script_of(spec)
    assert "touch" not in text and "quoted" not in text and "rm -rf" not in text
    assert spec.env["CLARITY_EXPR_1"] == branch
    assert spec.env["CLARITY_EXPR_2"] == message
    assert spec.env["MSG"] == message
    assert spec.env["CLARITY_BRANCH"] == branch

    # and when the script really runs, the values are only text
    lines: list[str] = []
    result = execute(spec_for_host(spec), FakeBackend(), work_root=tmp_path / "work",
                     workspaces=WorkspaceCache(tmp_path / "cache"), on_log=lines.append)
    assert result.outcome is Outcome.SUCCEEDED, lines
    assert f"branch={branch}" in lines
    assert f"msg={message}" in lines
    assert message in lines
    assert not pwned.exists()


def spec_for_host(spec: TaskSpec) -> TaskSpec:
    import dataclasses

    return dataclasses.replace(spec, workspace=None)


def test_expression_inside_single_quotes_is_still_a_variable_reference() -> None:
    """A reference is always `${CLARITY_EXPR_n}`: inside single quotes the shell prints it as is,
    which is not pretty but never runs the value."""
    text = """
    workflow:
      name: ci
      tasks:
        - name: t
          image: alpine
          commands: ["echo '${git.branch}'"]
    """
    spec = render(text, git=GitInfo(branch="$(id)"))
    assert "$(id)" not in script_of(spec)
    assert "echo '${CLARITY_EXPR_1}'" in script_of(spec)


# -- render errors -----------------------------------------------------------------------------


def one_task(**fields: str) -> str:
    lines = "\n".join(f"      {k}: {v}" for k, v in fields.items())
    return f"""
workflow:
  name: ci
  tasks:
    - name: up
      image: alpine
      commands: ["true"]
    - name: t
      image: alpine
{lines}
"""


ERRORS: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("missing input", one_task(commands='["echo ${inputs.version}"]'), {},
     ["${inputs.version}", "no input 'version' was given", "--input version=VALUE"]),
    ("missing secret expression", one_task(env='{T: "${secrets.TOKEN}"}'), {"secrets": {"OTHER": "x"}},
     ["${secrets.TOKEN}", "secret 'TOKEN' is not set", "--secret TOKEN=VALUE"]),
    ("missing secret on a controller", one_task(secrets="[DEPLOY_KEY]", commands='["true"]'),
     {"secrets_from": "acme/app"},
     ["task 't' needs secret 'DEPLOY_KEY', which is not set (clarity secret set acme/app DEPLOY_KEY)"]),
    ("a fork's pull request", one_task(env='{T: "${secrets.TOKEN}"}'), {"no_secrets": True, "secrets_from": "acme/app"},
     ["${secrets.TOKEN}: secret 'TOKEN' is not given to this run: a pull request from a fork gets no secrets"]),
    ("missing declared secret", one_task(secrets="[DEPLOY_KEY]", commands='["true"]'), {},
     ["task 't' needs secret 'DEPLOY_KEY'", "--secret DEPLOY_KEY=VALUE", "--secret-file DEPLOY_KEY=PATH"]),
    ("missing output key", one_task(commands='["echo ${tasks.up.outputs.nope}"]'),
     {"results": {"up": TaskResult(Outcome.SUCCEEDED, outputs={"a": "1", "b": "2"})}},
     ["${tasks.up.outputs.nope}", "wrote no output 'nope'", "it wrote: a, b"]),
    ("missing output key, none written", one_task(commands='["echo ${tasks.up.outputs.nope}"]'),
     {"results": {"up": TaskResult(Outcome.SUCCEEDED)}}, ["it wrote: none"]),
    ("task has not run", one_task(commands='["echo ${tasks.up.output}"]'), {},
     ["task 'up' has not run before this task", "needs"]),
    ("unknown workflow env", one_task(env='{X: "${env.NOPE}"}'), {}, ["the workflow's env has no 'NOPE'"]),
    ("unknown trigger field", one_task(env='{X: "${trigger.pr.number}"}'), {}, ["the trigger has no 'pr'"]),
    ("absolute workdir", one_task(workdir="/etc", commands='["true"]'), {},
     ["task 't': workdir '/etc' leaves the workspace"]),
    ("workdir escaping with ..", one_task(workdir="a/../../x", commands='["true"]'), {},
     ["workdir 'a/../../x' leaves the workspace"]),
    ("workdir from an input escaping", one_task(workdir='"${inputs.dir}"', commands='["true"]'),
     {"inputs": {"dir": "../../../etc"}}, ["workdir '../../../etc' leaves the workspace"]),
    ("workdir that only looks like the workspace", one_task(workdir="../workspace2", commands='["true"]'), {},
     ["leaves the workspace"]),
]


@pytest.mark.parametrize("text,kw,fragments", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_render_errors(text: str, kw: dict[str, Any], fragments: list[str]) -> None:
    results = kw.pop("results", {})
    with pytest.raises(RenderError) as info:
        render(text, "t", results=results, **kw)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_workflow_env_expression_resolved_recursively() -> None:
    text = """
    workflow:
      name: ci
      env:
        BASE: "v-${git.short_sha}"
      tasks:
        - name: t
          image: alpine
          env:
            FULL: "${env.BASE}-x"
          commands: ["echo ${env.BASE}"]
    """
    spec = render(text)
    assert spec.env["FULL"] == "v-01234567-x"
    assert spec.env["CLARITY_EXPR_1"] == "v-01234567"


# -- when ------------------------------------------------------------------------------------


def ctx_when(branch: str = "main", event: str = "push", changed: tuple[str, ...] | None = None) -> RunContext:
    return ctx_for(MINIMAL, git=GitInfo(branch=branch), event=event, changed_files=changed)


WHEN: list[tuple[str, When | None, dict[str, Any], str | None]] = [
    ("no when", None, {}, None),
    ("empty when", When(), {}, None),
    ("branch matches", When(branches=("main",)), {}, None),
    ("branch glob matches", When(branches=("release/*",)), {"branch": "release/1.0"}, None),
    ("branch does not match", When(branches=("release/*", "prod")), {"branch": "main"},
     "branch 'main' matches none of release/*, prod"),
    ("branch glob stays in one segment", When(branches=("release/*",)), {"branch": "release/1.0/hotfix"},
     "branch 'release/1.0/hotfix' matches none of release/*"),
    ("branch ** crosses segments", When(branches=("release/**",)), {"branch": "release/1.0/hotfix"}, None),
    ("event matches", When(events=("push", "tag")), {"event": "tag"}, None),
    ("event does not match", When(events=("tag",)), {"event": "push"}, "event is push, the task runs on tag"),
    ("paths: unknown changes run", When(paths=("docs/**",)), {"changed": None}, None),
    ("paths match", When(paths=("src/**",)), {"changed": ("src/a/b.py",)}, None),
    ("paths do not match", When(paths=("src/**",)), {"changed": ("docs/x.md",)},
     "no changed file matches the task's path conditions"),
    ("directory pattern", When(paths=("docs/",)), {"changed": ("docs/a/b.md",)}, None),
    ("**/ matches zero directories", When(paths=("**/*.md",)), {"changed": ("README.md",)}, None),
    ("**/ matches many directories", When(paths=("**/*.md",)), {"changed": ("a/b/c.md",)}, None),
    ("* stays within a segment", When(paths=("src/*.py",)), {"changed": ("src/a/b.py",)},
     "no changed file matches the task's path conditions"),
    ("* within a segment matches", When(paths=("src/*.py",)), {"changed": ("src/b.py",)}, None),
    ("paths_ignore all", When(paths_ignore=("docs/**",)), {"changed": ("docs/a.md",)},
     "no changed file matches the task's path conditions"),
    ("paths_ignore some", When(paths_ignore=("docs/**",)), {"changed": ("docs/a.md", "src/x.py")}, None),
    ("paths and paths_ignore", When(paths=("src/**",), paths_ignore=("src/gen/**",)),
     {"changed": ("src/gen/x.py",)}, "no changed file matches the task's path conditions"),
    ("no changed files at all", When(paths=("src/**",)), {"changed": ()},
     "no changed file matches the task's path conditions"),
    ("event checked before branch", When(events=("tag",), branches=("x",)), {},
     "event is push, the task runs on tag"),
]


@pytest.mark.parametrize("when,kw,expected", [w[1:] for w in WHEN], ids=[w[0] for w in WHEN])
def test_when_skip_reason(when: When | None, kw: dict[str, Any], expected: str | None) -> None:
    assert when_skip_reason(when, ctx_when(**kw)) == expected


def test_when_from_yaml() -> None:
    wf = load_workflow("""
    workflow:
      name: ci
      tasks:
        - name: t
          image: alpine
          when: {branch: [main], event: [push], path: ["src/**"], path_ignore: ["src/gen/**"]}
          commands: ["true"]
    """)
    when = wf.tasks[0].when
    assert when == When(("main",), ("push",), ("src/**",), ("src/gen/**",))
    assert when_skip_reason(when, ctx_when(changed=("src/a.py",))) is None
    assert when_skip_reason(when, ctx_when(branch="dev")) is not None


def test_the_image_is_rendered() -> None:
    text = """
workflow:
  name: ci
  tasks:
    - name: t
      image: "registry.example.org/app:${inputs.version}-${git.short_sha}"
      commands: ["true"]
"""
    spec = render(text, "t", inputs={"version": "1.2"})
    assert spec.image == f"registry.example.org/app:1.2-{GIT.short_sha}"
    with pytest.raises(RenderError, match="is empty once its expressions are resolved"):
        render(text.replace("registry.example.org/app:${inputs.version}-${git.short_sha}", "${inputs.version}"),
               "t", inputs={"version": ""})
