"""`clarity run`: the workflows of the current repository, run on this machine.

The very same planner and engine as the controller, with an in-process runner: what passes here
passes there.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping

from controller.console import Console, GuardedOutput, summary_table
from controller.engine import RunSpec, Scheduler
from controller.peer import InProcessPeer
from controller.store.queue import Queue
from controller.localrepo import LocalRepo, RepoError, WorkflowSource
from controller.settings import Settings
from controller.store.runs import Store
from controller.triggers.manual import InputError, resolve_inputs
from controller.triggers.match import why_not
from controller.workflow import compose
from controller.workflow.compile import GitInfo, RunContext, when_skip_reason
from controller.workflow import extends
from controller.workflow.lint import lint_text
from controller.workflow.diagnostics import Diagnostic, Pos
from controller.workflow.model import Task, Workflow
from controller.workflow.select import SelectError, select_tasks
from controller.workflow.sources import Loaded, LocalSources, SourceError
from controller.workflow.uses import missing_inputs, missing_secrets
from runner import owner
from runner.agent import Agent
from runner.backends.base import Backend, BackendError
from runner.masking import MIN_LEN
from runner.spec import Outcome, Workspace
from runner.workspace import WorkspaceCache


class LocalRunError(Exception):
    """Raised for user mistakes; the CLI prints the message."""


USER_ERRORS = (LocalRunError, RepoError, InputError, SelectError)


@dataclass(frozen=True)
class LocalRunOptions:
    files: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    event: str = "push"
    inputs: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    dirty: bool = False
    backend: str = "docker"
    payload: Mapping[str, Any] | None = None  # --payload: ${trigger.payload.*}, as a webhook would give


def make_backend(name: str, settings: Settings) -> Backend:
    if name == "fake":
        from runner.backends.fake import FakeBackend

        return FakeBackend()
    from runner.backends.docker import DockerBackend

    return DockerBackend(pull=settings.pull)


def _load(repo: LocalRepo, cwd: Path, sha: str | None, options: LocalRunOptions, out: IO[str],
          grants: Mapping[str, frozenset[str]] | None = None,
          sources: LocalSources | None = None) -> list[tuple[Workflow, WorkflowSource]]:
    if options.files:
        paths = [repo.relpath(Path(f), cwd) for f in options.files]
    else:
        paths = repo.workflow_paths(sha)
        if not paths:
            where = "the working tree" if sha is None else f"commit {sha[:8]}"
            hint = " (they exist in the working tree: commit them, or use --dirty)" if sha and repo.workflow_paths(None) else ""
            raise LocalRunError(f"no workflow files in .clarity/ at {where}{hint}")
    loaded: list[tuple[Workflow, WorkflowSource]] = []
    failed = False
    for path in paths:
        try:
            source = repo.read(path, sha)
        except RepoError as exc:
            raise LocalRunError(str(exc)) from None
        if sha is not None and repo.is_modified(path):
            print(f"clarity: note: {path} has uncommitted changes; running the committed version (use --dirty to run yours)", file=sys.stderr)
        own = sources.own(path, source.text, source.blob_sha) if sources is not None else None
        workflow, diagnostics = lint_text(source.text, path, grants=grants, sources=sources, loaded=own)
        for d in diagnostics:
            print(d.format(), file=sys.stderr)
        if workflow is None or any(d.severity == "error" for d in diagnostics):
            failed = True
            continue
        loaded.append((workflow, source))
    if failed:
        raise LocalRunError("the workflow files have errors (above); nothing was run")
    return loaded


def run_local(cwd: Path, settings: Settings, options: LocalRunOptions, cancel: threading.Event, out: IO[str]) -> int:
    repo = LocalRepo.find(cwd)
    sha: str | None = None
    try:
        sha = repo.head_sha()
    except RepoError:
        if not options.dirty:
            raise
    at = None if options.dirty else sha
    # the bases of `extends:`: this repository at the same commit (or working tree), others by URL,
    # path or a name of the setting `repositories`
    sources = LocalSources(repo.root, at, cache=settings.cache, repositories=settings.repositories)
    workflows = _load(repo, cwd, at, options, out, settings.plugin_permissions, sources)

    branch = repo.branch()
    # A tag at HEAD makes a `tag` event; a push is the branch's, whatever tags the commit has.
    tag = repo.tag(sha) if sha and options.event == "tag" else ""
    changed = repo.changed_files(sha, options.dirty) if sha else None
    selected: list[tuple[Workflow, WorkflowSource]] = []
    for wf, source in workflows:
        reason = None if options.files else why_not(wf, options.event, branch, tag, changed)
        if reason:
            print(f"clarity: {wf.file}: not run: {reason}", file=out)
            continue
        if options.tasks:
            wf = select_tasks(wf, options.tasks) if any(t.name in options.tasks for t in wf.tasks) else dataclasses.replace(wf, tasks=())
            if not wf.tasks:
                continue
        selected.append((wf, source))
    if options.tasks:
        everywhere = {t.name for wf, _ in selected for t in wf.tasks}
        missing = [t for t in options.tasks if t not in everywhere]
        for name in missing:
            homes = [wf.file for wf, _ in workflows if any(t.name == name for t in wf.tasks)]
            if homes:
                raise LocalRunError(f"task '{name}' is in {homes[0]}, which does not run for a {options.event} "
                                    f"event (name the file, or pick the event with --event)")
            known = sorted({t.name for wf, _ in workflows for t in wf.tasks})
            raise LocalRunError(f"no task named '{name}' (the tasks: {', '.join(known)})")
    if not selected:
        print(f"clarity: no workflow runs for a {options.event} event", file=out)
        return 0

    git = GitInfo(
        sha=sha or "", ref=f"refs/heads/{branch}" if branch else "", branch=branch, tag=tag,
        message=repo.message(sha) if sha else "", author=repo.author(sha) if sha else "", repo=str(repo.root),
    )
    workspace = Workspace(repo=str(repo.root), dirty_path=str(repo.root)) if options.dirty else Workspace(repo=str(repo.root), commit=sha)
    # Mistakes in the command (inputs, secrets) are found before anything runs.
    prepared: list[tuple[Workflow, WorkflowSource, dict[str, str]]] = []
    images: dict[str, Pos] = {}  # every literal image the tasks that will run need: where it is written first
    for wf, source in selected:
        inputs = resolve_inputs(wf, options.inputs, strict=options.event == "manual")
        ctx = RunContext(run_id=0, workflow=wf, workspace=workspace, git=git, event=options.event,
                         inputs=inputs, secrets=options.secrets, changed_files=changed)
        _check_values(ctx)
        for task in wf.tasks:
            if when_skip_reason(task.when, ctx) is None:
                _add_image(images, wf, task)
        prepared.append((wf, source, inputs))

    for name, value in options.secrets.items():
        if 0 < len(value) < MIN_LEN:
            print(f"clarity: warning: secret {name} is shorter than {MIN_LEN} characters and cannot be masked in logs",
                  file=sys.stderr)
    backend = make_backend(options.backend, settings)
    try:
        backend.sweep()
    except BackendError as exc:
        raise LocalRunError(str(exc)) from None
    # `type: workflow` tasks: their sub-runs read from the same sources, and run here too
    subs = [sub for wf, source, _i in prepared
            for sub in compose.sub_workflows(wf, sources, sources.own(source.path, source.text, source.blob_sha))]
    _report_missing([d for sub_wf in subs for task in sub_wf.tasks  # their inputs come from the parent
                     for d in missing_secrets(sub_wf, task, options.secrets)])
    for sub_wf in subs:
        for task in sub_wf.tasks:
            _add_image(images, sub_wf, task)
    _check_images(backend, images)
    store = Store.open(settings.database_url)
    store.reap_orphans(owner.is_orphan)
    settings.work_root.mkdir(parents=True, exist_ok=True)
    queue = Queue(store.engine)
    scheduler = Scheduler(store, queue, secrets=lambda run: options.secrets, sources_for=lambda run: sources)
    # The built-in runner: the same agent loop as a remote runner, through the same protocol.
    agent = Agent(InProcessPeer(queue, scheduler), backend, settings.work_root, WorkspaceCache(settings.cache),
                  name=f"local-{owner.current()}", slots=settings.parallel, poll_s=0.5, heartbeat_s=0.5,
                  # this machine stands in for every runner: it takes tasks whatever labels they ask for
                  labels=sorted({label for wf in [*(p[0] for p in prepared), *subs] for t in wf.tasks
                                 for label in t.labels}),
                  log_flush_s=0.05)
    # Many short-lived threads hand work to each other (scheduler, agent slots, log senders): a
    # shorter GIL switch interval than the default 5 ms cuts the hand-off latency between tasks.
    storage_root = str(settings.storage_root) if settings.storage_root else None
    if storage_root and any(t.type != "container" for wf, _s, _i in prepared for t in wf.tasks):
        Path(storage_root).mkdir(parents=True, exist_ok=True)  # the storage tasks' root, mounted in their containers
    previous_switch = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    agent.start()
    guarded = GuardedOutput(out, cancel.set)  # `clarity run | head`: the run stops when the reader goes
    out = guarded.as_io()
    tty = out.isatty()
    verdicts: list[str] = []
    try:
        for wf, source, inputs in prepared:
            if cancel.is_set():
                break
            run_id = scheduler.create_run(RunSpec(
                workflow=wf, workflow_text=extends.workflow_text(wf, source.text),
                files=extends.files(wf, sources.own(source.path, source.text, source.blob_sha)),
                workspace=workspace, git=git, event=options.event,
                repo=str(repo.root), blob_sha=source.blob_sha, dirty=options.dirty,
                trigger={"by": "clarity run", "event": options.event, "inputs": dict(inputs),
                         **({"payload": dict(options.payload)} if options.payload is not None else {})},
                inputs=inputs, changed_files=changed, owner=owner.current(),
                selected=tuple(t.name for t in wf.tasks) if options.tasks else None,
                grants=settings.plugin_permissions, storage_root=storage_root,
            ))
            assert run_id is not None  # no dedupe key: never refused
            own = sources.own(source.path, source.text, source.blob_sha)
            console = Console(out, [t.name for t in wf.tasks], tty=tty, workflow=wf.name,
                              shown=_shown_names(wf, sources, own, subs))
            where = "working tree" if options.dirty else (sha or "")[:8]
            console.banner(f"▶ run {run_id}: {wf.name} ({wf.file} at {where}, {options.event})")
            scheduler.watch(run_id, console)
            try:
                scheduler.start(run_id)
                verdict = scheduler.wait(run_id, cancel)
                for sub in store.sub_runs(run_id):  # `wait: false` tasks' sub-runs: this process runs them out
                    scheduler.wait(sub.id, cancel)
            finally:
                console.close()
            verdicts.append(verdict)
            rows = [
                (t.name, t.state, t.duration_s, _detail(t.state, t.exit_code, t.error))
                for t in store.list_tasks(run_id)
            ]
            print(summary_table(rows, tty), file=out)
            for sub in store.sub_runs(run_id):  # `type: workflow` tasks: their runs, shown above as TASK/SUBTASK
                print(f"  sub-run {sub.id} of task {sub.parent_task}: {sub.workflow} ({sub.workflow_file}) {sub.state}",
                      file=out)
            print(f"run {run_id} {verdict} — logs: clarity logs {run_id}\n", file=out)
            out.flush()
    finally:
        agent.stop()
        sys.setswitchinterval(previous_switch)
    if guarded.closed:
        return 141  # as a process killed by SIGPIPE: the reader went away, the run was canceled
    if cancel.is_set():
        return 130
    return 0 if verdicts and all(v == Outcome.SUCCEEDED.value for v in verdicts) else 1


def _add_image(images: dict[str, Pos], wf: Workflow, task: Task) -> None:
    """Note the image `task` runs in, when it is known before the run: a container task's
    `image:` without expressions, or the image of the plugin that provides the task's type (as
    its manifest names it; the plugin's compile step could still pick another at run time)."""
    if task.type == "container":
        image, key = task.image, "image"
    elif task.type == "workflow":  # its sub-workflow's tasks are looked at as such
        return
    else:
        from controller.plugins import installed

        found = installed().task_type(task.type)
        image, key = (found[0].manifest.image if found is not None else None), "type"
    if image and "${" not in image and image not in images:
        images[image] = _value_pos(wf, task, key)


def _value_pos(wf: Workflow, task: Task, key: str) -> Pos:
    """Where the value of a task's `key` is written (with `extends:`, in the file it comes from)."""
    from controller.workflow.uses import task_path

    path = task_path(wf, task)
    return wf.source.pos(path + (key,)) if path is not None else task.pos


def _check_images(backend: Backend, images: Mapping[str, Pos]) -> None:
    """Every image the tasks need is here before anything runs: present, or pulled now (once:
    the tasks then find it present). One that cannot be had stops the run, saying where it is
    written, instead of a task erroring (and being retried) in the middle of the run."""
    from runner.backends.docker import DockerBackend, ImageUnavailable

    if not isinstance(backend, DockerBackend):  # the fake backend runs no image
        return
    missing = 0
    for image, pos in images.items():
        try:
            backend.ensure_image(image, on_pull=lambda name: print(f"clarity: pulling image {name!r} (not present locally)",
                                                                   file=sys.stderr, flush=True))
        except ImageUnavailable as exc:
            print(f"{pos}: image {image!r} is not present locally and could not be pulled ({exc.reason})\n"
                  f"  hint: {exc.hint}", file=sys.stderr)
            missing += 1
        except BackendError as exc:
            raise LocalRunError(str(exc)) from None
    if missing:
        what = "an image" if missing == 1 else f"{missing} images"
        raise LocalRunError(f"{what} that the tasks need cannot be had (above); nothing was run")


def _shown_names(wf: Workflow, sources: LocalSources, loaded: Loaded, subs: list[Workflow]) -> list[str]:
    """The names the console shows for the tasks of `wf`'s sub-runs, `TASK/SUBTASK` (and deeper),
    so that its prefix column is wide enough for them from the first line on. `subs`: the
    sub-workflows, as linted (the files a task names are matched to them; none is linted again)."""
    by_file = {sub.file: sub for sub in subs}
    names: list[str] = []

    def walk(current: Workflow, at: Loaded | None, prefix: str, depth: int) -> None:
        for task in current.tasks:
            if task.workflow is None or depth >= compose.MAX_DEPTH:
                continue
            try:
                found = sources.read(task.workflow, relative_to=at)
            except SourceError:
                continue
            sub = by_file.get(found.file)
            if sub is not None:
                names.extend(f"{prefix}{task.name}/{t.name}" for t in sub.tasks)
                walk(sub, found, f"{prefix}{task.name}/", depth + 1)

    walk(wf, loaded, "", 0)
    return names


def _check_values(ctx: RunContext) -> None:
    """Every secret a task that will run declares (`secrets:`) or reads (`${secrets.NAME}`), and
    every input it reads (`${inputs.NAME}`), is given: found before anything runs."""
    wf = ctx.workflow
    problems = []
    for task in wf.tasks:
        if when_skip_reason(task.when, ctx) is None:
            problems += missing_secrets(wf, task, ctx.secrets) + missing_inputs(wf, task, ctx.inputs)
    _report_missing(problems)


def _report_missing(problems: list[Diagnostic]) -> None:
    for d in problems:
        print(d.format(), file=sys.stderr)
    if problems:
        raise LocalRunError("the workflow needs values that were not given (above); nothing was run")


def _detail(state: str, exit_code: int | None, error: str | None) -> str:
    if error:
        return error
    if exit_code not in (None, 0):
        return f"exit code {exit_code}"
    return ""
