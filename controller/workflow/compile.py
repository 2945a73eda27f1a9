"""Compile one task of a workflow into a `runner.spec.TaskSpec`, expressions resolved.

Git-controlled and user-supplied values (branch names, commit messages, inputs, outputs of other
tasks) never become shell source: in `commands` every `${...}` is replaced by a reference to an
environment variable holding the value, so `git.branch = "$(touch /tmp/pwned)"` is only text.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from controller.workflow import expr, globs
from controller.workflow.uses import reads
from controller.workflow.model import Task, When, Workflow, env_value
from runner.spec import CLARITY_DIR, WORKSPACE_PATH, ArtifactIn, File, Limits, TaskResult, TaskSpec, Workspace

SCRIPT_PATH = f"{CLARITY_DIR}/script.sh"
DEFAULT_TIMEOUT_S = 3600.0


def task_secrets(wf: Workflow, task: Task) -> list[str]:
    """The secrets `task` reads (`secrets:`, `${secrets.NAME}` in its values or the workflow's env):
    the only ones its spec carries, in its environment and among the values its runner masks. A
    runner never receives another task's; the controller masks what comes back with all of the
    run's (engine.Scheduler.logged, finished)."""
    return [name for name, _pos in reads(wf, task, "secrets")]


class RenderError(Exception):
    """A value could not be resolved; the message names the expression and how to fix it."""


@dataclass(frozen=True)
class GitInfo:
    sha: str = ""
    ref: str = ""
    branch: str = ""
    tag: str = ""
    message: str = ""
    author: str = ""
    repo: str = ""

    @property
    def short_sha(self) -> str:
        return self.sha[:8]


@dataclass(frozen=True)
class RunContext:
    """Everything a run knows before its first task starts."""

    run_id: int
    workflow: Workflow
    workspace: Workspace
    git: GitInfo = field(default_factory=GitInfo)
    event: str = "push"
    trigger: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    changed_files: tuple[str, ...] | None = None  # None: unknown, path conditions match
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)  # plugin -> permissions granted here
    storage_root: str | None = None  # where storage tasks write (on the runners' machines)
    secrets_from: str | None = None  # the controller's repository whose secrets the run has; None: clarity run
    no_secrets: bool = False  # a pull request from a fork: no secret at all

    def missing_secret(self, name: str) -> str:
        """Why a secret the run names is not there, and how to give it: `secret 'X' <this>`."""
        if self.no_secrets:
            return "is not given to this run: a pull request from a fork gets no secrets"
        how = (f"clarity secret set {self.secrets_from} {name}" if self.secrets_from is not None
               else f"pass --secret {name}=VALUE or --secret-file {name}=PATH")
        return f"is not set ({how})"
    plugins: Any = None  # a controller.plugins.Registry; None: the installed plugins


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


class _Resolver:
    def __init__(self, ctx: RunContext, results: Mapping[str, TaskResult]) -> None:
        self.ctx = ctx
        self.results = results

    def __call__(self, ref: expr.Ref) -> str:
        root, parts = ref.root, list(ref.parts)
        handler = getattr(self, f"_{root}", None)
        if handler is None:
            raise RenderError(f"{ref.raw}: unknown root '{root}'")
        value = str(handler(ref, parts))
        if "\x00" in value:  # an environment variable cannot hold it: the task could not start
            raise RenderError(f"{ref.raw}: the value holds a NUL byte, which cannot be passed to a task")
        return value

    def value(self, ref: expr.Ref) -> Any:
        """The JSON value of an expression that is a whole config string: an upstream task's
        output or a part of the trigger as it is (an object stays an object); else its text."""
        parts = list(ref.parts)
        if ref.root == "tasks" and len(parts) == 2 and parts[1] == "output" and parts[0] in self.results:
            return self.results[parts[0]].output
        if ref.root == "trigger":
            value: Any = {"event": self.ctx.event, **self.ctx.trigger}
            for part in parts:
                if isinstance(value, Mapping) and part in value:
                    value = value[part]
                elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                    value = value[int(part)]
                else:
                    return self(ref)  # the resolver's own error
            return value
        return self(ref)

    def _tasks(self, ref: expr.Ref, parts: list[str]) -> str:
        if len(parts) < 2:
            raise RenderError(f"{ref.raw}: say which field, e.g. ${{tasks.{parts[0] if parts else 'NAME'}.output}}")
        name, what = parts[0], parts[1]
        result = self.results.get(name)
        if result is None:
            raise RenderError(f"{ref.raw}: task '{name}' has not run before this task (add it to `needs`)")
        if what == "output" and len(parts) == 2:
            return _text(result.output)
        if what == "outputs" and len(parts) == 3:
            if parts[2] not in result.outputs:
                known = ", ".join(sorted(result.outputs)) or "none"
                raise RenderError(f"{ref.raw}: task '{name}' wrote no output '{parts[2]}' (it wrote: {known})")
            return result.outputs[parts[2]]
        if what == "outcome" and len(parts) == 2:
            return result.outcome.value
        raise RenderError(f"{ref.raw}: a task has .output, .outputs.KEY and .outcome")

    def _workflow(self, ref: expr.Ref, parts: list[str]) -> str:
        wf = self.ctx.workflow
        values = {"id": str(self.ctx.run_id), "name": wf.name, "version": wf.version or "", "file": wf.file}
        if len(parts) != 1 or parts[0] not in values:
            raise RenderError(f"{ref.raw}: workflow has {', '.join(values)}")
        return values[parts[0]]

    def _git(self, ref: expr.Ref, parts: list[str]) -> str:
        names = ("sha", "short_sha", "ref", "branch", "tag", "message", "author", "repo")
        if len(parts) != 1 or parts[0] not in names:
            raise RenderError(f"{ref.raw}: git has {', '.join(names)}")
        return str(getattr(self.ctx.git, parts[0]))

    def _trigger(self, ref: expr.Ref, parts: list[str]) -> str:
        value: Any = {"event": self.ctx.event, **self.ctx.trigger}
        for part in parts:
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise RenderError(f"{ref.raw}: the trigger has no '{part}'")
        return _text(value)

    def _inputs(self, ref: expr.Ref, parts: list[str]) -> str:
        if len(parts) != 1 or parts[0] not in self.ctx.inputs:
            raise RenderError(f"{ref.raw}: no input '{'.'.join(parts)}' was given (pass --input {parts[0] if parts else 'NAME'}=VALUE)")
        return self.ctx.inputs[parts[0]]

    def _secrets(self, ref: expr.Ref, parts: list[str]) -> str:
        if len(parts) != 1 or parts[0] not in self.ctx.secrets:
            name = ".".join(parts) or "NAME"
            raise RenderError(f"{ref.raw}: secret '{name}' {self.ctx.missing_secret(name)}")
        return self.ctx.secrets[parts[0]]

    def _env(self, ref: expr.Ref, parts: list[str]) -> str:
        env = self.ctx.workflow.env
        if len(parts) != 1 or parts[0] not in env:
            raise RenderError(f"{ref.raw}: the workflow's env has no '{'.'.join(parts)}'")
        return expr.render(str(env[parts[0]]), self)


def when_skip_reason(when: When | None, ctx: RunContext) -> str | None:
    """Why a task's `when` excludes it for this run, or None if it runs."""
    if when is None:
        return None
    if when.events is not None and ctx.event not in when.events:
        return f"event is {ctx.event}, the task runs on {', '.join(when.events)}"
    if when.branches is not None:
        if not any(globs.match(ctx.git.branch, g) for g in when.branches):
            return f"branch '{ctx.git.branch}' matches none of {', '.join(when.branches)}"
    if ctx.changed_files is not None and (when.paths is not None or when.paths_ignore is not None):
        changed = [p for p in ctx.changed_files if not any(_glob(p, g) for g in when.paths_ignore or ())]
        if when.paths is not None:
            changed = [p for p in changed if any(_glob(p, g) for g in when.paths)]
        if not changed:
            return "no changed file matches the task's path conditions"
    return None


def _glob(path: str, pattern: str) -> bool:
    if pattern.endswith("/"):
        pattern += "**"
    return globs.match(path, pattern)


def script(task: Task, env: dict[str, str], resolve: _Resolver) -> str:
    """The shell script for `commands`: each line echoed, then run under `sh -e`.

    Expressions become `${CLARITY_EXPR_n}` references, their values put in `env`."""
    lines = ["set -e"]
    counter = [0]

    def to_var(ref: expr.Ref) -> str:
        counter[0] += 1
        name = f"CLARITY_EXPR_{counter[0]}"
        env[name] = resolve(ref)
        return "${" + name + "}"

    for command in task.commands:
        shown = command if "\n" not in command else command.splitlines()[0] + " ..."
        lines.append(f"printf '%s\\n' {shlex.quote('+ ' + shown)}")
        lines.append(expr.render(command, to_var))
    return "\n".join(lines) + "\n"


def render_task(
    task: Task,
    ctx: RunContext,
    results: Mapping[str, TaskResult],
    upstream: tuple[str, ...] = (),
    *,
    attempt: int = 1,
) -> TaskSpec:
    """One task -> one TaskSpec. Raises RenderError for values that cannot be resolved."""
    if task.type == "workflow":  # the scheduler makes a sub-run of it, nothing runs on a runner
        raise RenderError(f"task '{task.name}' runs a workflow: it has no container")
    if task.type != "container":
        from controller.plugins.compile import render_plugin_task

        return render_plugin_task(task, ctx, results, upstream, attempt=attempt)
    if not task.image:
        raise RenderError(f"task '{task.name}' has no image")
    image = expr.render(task.image, _Resolver(ctx, results)).strip()  # `app:${inputs.version}`
    if not image:
        raise RenderError(f"task '{task.name}': its image {task.image!r} is empty once its expressions are resolved")
    return base_spec(task, ctx, results, upstream, attempt=attempt, image=image, with_commands=True)


def render_inputs(task: Task, ctx: RunContext, results: Mapping[str, TaskResult]) -> dict[str, str]:
    """The inputs a `workflow` task gives its sub-run, expressions resolved (as in env)."""
    resolve = _Resolver(ctx, results)
    return {name: expr.render(value, resolve) if isinstance(value, str) else env_value(value)
            for name, value in task.inputs.items()}


def render_outputs(ctx: RunContext, results: Mapping[str, TaskResult]) -> dict[str, str]:
    """The workflow's declared `outputs:`, from the results of its tasks (a run that succeeded)."""
    resolve = _Resolver(ctx, results)
    found: dict[str, str] = {}
    for name, text in ctx.workflow.outputs.items():
        try:
            found[name] = expr.render(text, resolve)
        except RenderError as exc:
            raise RenderError(f"output '{name}': {exc}") from None
    return found


def render_config(value: Any, resolve: _Resolver) -> Any:
    """A plugin task's config with every expression resolved: a string that is exactly one
    expression keeps its JSON value (`${tasks.a.output}`), others are rendered as text."""
    if isinstance(value, str):
        refs = expr.find(value)
        if len(refs) == 1 and refs[0].start == 0 and refs[0].end == len(value):
            return resolve.value(refs[0])
        return expr.render(value, resolve)
    if isinstance(value, Mapping):
        return {k: render_config(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [render_config(v, resolve) for v in value]
    return value


def base_spec(task: Task, ctx: RunContext, results: Mapping[str, TaskResult], upstream: tuple[str, ...] = (), *,
              attempt: int = 1, image: str, with_commands: bool) -> TaskSpec:
    """The TaskSpec of a task: its environment, secrets, workspace, limits and network; the
    script of its `commands` when `with_commands`."""
    resolve = _Resolver(ctx, results)
    wf = ctx.workflow
    env: dict[str, str] = {
        "CI": "true",
        "CLARITY": "true",
        "CLARITY_RUN_ID": str(ctx.run_id),
        "CLARITY_WORKFLOW": wf.name,
        "CLARITY_TASK": task.name,
        "CLARITY_ATTEMPT": str(attempt),
        "CLARITY_EVENT": ctx.event,
        "CLARITY_COMMIT_SHA": ctx.git.sha,
        "CLARITY_REF": ctx.git.ref,
        "CLARITY_BRANCH": ctx.git.branch,
        "CLARITY_TAG": ctx.git.tag,
        "CLARITY_WORKSPACE": WORKSPACE_PATH,
        "CLARITY_OUTPUT": f"{CLARITY_DIR}/output",
        "CLARITY_OUTPUTS": f"{CLARITY_DIR}/outputs",
    }
    for source in (wf.env, task.env):
        for key, value in source.items():
            env[key] = expr.render(str(value), resolve)
    for name in task.secrets:
        if name not in ctx.secrets:
            raise RenderError(f"task '{task.name}' needs secret '{name}', which {ctx.missing_secret(name)}")
        env[name] = ctx.secrets[name]

    files: list[File] = []
    if task.commands and with_commands:
        files.append(File(SCRIPT_PATH, script(task, env, resolve).encode(), 0o755))
        argv: tuple[str, ...] = ("/bin/sh", "-e", SCRIPT_PATH)
    else:
        argv = ()
    for key, value in env.items():
        if "\x00" in value:
            raise RenderError(f"task '{task.name}': the value of {key} holds a NUL byte, which cannot be passed to a task")

    workdir = WORKSPACE_PATH
    if task.workdir:
        rendered = expr.render(task.workdir, resolve)
        workdir = posixpath.normpath(posixpath.join(WORKSPACE_PATH, rendered))
        if workdir != WORKSPACE_PATH and not workdir.startswith(WORKSPACE_PATH + "/"):
            raise RenderError(f"task '{task.name}': workdir '{rendered}' leaves the workspace")

    artifacts_in = tuple(
        ArtifactIn(source=results[name].artifacts_dir or "", task=name)
        for name in upstream
        if name in results and results[name].artifacts_dir
    )
    return TaskSpec(
        run_id=str(ctx.run_id),
        task=task.name,
        image=image,
        argv=argv,
        env=env,
        files=tuple(files),
        workspace=ctx.workspace,
        workdir=workdir,
        timeout_s=task.timeout_s or DEFAULT_TIMEOUT_S,
        limits=Limits(memory_bytes=task.memory_bytes, cpus=task.cpus, pids=task.pids or 512),
        network=task.network,
        mask=tuple(v for name in task_secrets(wf, task) if (v := ctx.secrets.get(name))),
        artifacts=task.artifacts,
        artifacts_in=artifacts_in,
        attempt=attempt,
        labels={"io.clarity.workflow": wf.name},
    )
