"""Neutral trigger events -> runs: the one write path that creates runs for the controller.

Webhook deliveries, polling, schedules and manual triggers all come here. The workflow files are read from
the commit in the controller's mirror (`<sha>:.clarity/*.yaml`), never from a working copy; each
run records repository, ref, commit, file and blob sha. A run is made at most once per
(repository, event, ref, commit, file): a delivery seen twice, or a push seen by both a webhook
and the poller, makes one run.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import sqlalchemy as sa
import yaml
import structlog

from controller.engine import RunSpec, Scheduler
from controller.store.repos import RepoRow, Repos
from controller.store.triggers import Declared, TriggerRow
from controller.triggers.events import PullRequestEvent, PushEvent, is_zero_sha
from controller.triggers.manual import resolve_inputs
from controller.triggers.match import skip_ci, why_not
from controller.workflow.compile import GitInfo
from controller.workflow.diagnostics import Diagnostic
from controller.workflow import extends
from controller.workflow.lint import lint_text
from controller.workflow.model import Workflow
from controller.workflow.sources import MirrorSources
from runner.spec import Workspace
from runner.workspace import WorkspaceCache, WorkspaceError, git_reason

if TYPE_CHECKING:
    from controller.plugins import Registry

WORKFLOW_DIR = ".clarity"
DECLARED_TYPES = ("schedule", "webhook", "event", "file_watch")  # triggers that start runs by themselves
LINT_CACHE = 256
log = structlog.get_logger("clarity.starter")


class StartError(Exception):
    """The event cannot become runs (the commit cannot be fetched, ...): a sentence for the user."""


@dataclass(frozen=True)
class Outcome:
    runs: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # workflow file -> why it did not run


def _git(mirror: Path, *args: str) -> str:
    proc = subprocess.run(["git", "--git-dir", str(mirror), *args], capture_output=True, text=True,
                          env={"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"})
    if proc.returncode != 0:
        raise StartError(f"git {args[0]} failed: {git_reason(proc.stderr, proc.returncode)}")
    return proc.stdout


class Starter:
    def __init__(self, scheduler: Scheduler, mirrors: WorkspaceCache,
                 on_skip: Callable[[RepoRow, str, str, str, str], None] | None = None, *,
                 grants: Mapping[str, frozenset[str]] | None = None, storage_root: str | None = None) -> None:
        self.scheduler, self.mirrors = scheduler, mirrors
        # plugin -> permissions its tasks may have: the controller's setting plugin_permissions, for the
        # repositories without their own (grants_for)
        self.grants: Mapping[str, frozenset[str]] = dict(grants or {})
        self.storage_root = storage_root
        # (repo, sha, ref, workflow name, why): a workflow that does not run for a commit
        self.on_skip = on_skip
        # (repo, ref): a push was seen (the schedules re-read a default branch's triggers)
        self.on_push: Callable[[RepoRow, str], None] | None = None
        self._linted: dict[tuple[str, str, str], tuple[Workflow | None, list[Diagnostic]]] = {}
        self._lint_lock = threading.Lock()

    def push(self, repo: RepoRow, event: PushEvent, *, source: Mapping[str, object]) -> Outcome:
        if event.deleted or is_zero_sha(event.after):
            return Outcome(skipped={"*": f"{event.ref} was deleted"})
        kind = "tag" if event.is_tag else "push"
        if self.on_push is not None:
            self.on_push(repo, event.ref)
        return self._start(repo, sha=event.after, ref=event.ref, kind=kind, branch=event.branch, tag=event.tag,
                           before=event.before, changed=event.changed_files, message=event.message,
                           author=event.author, trigger={**source, "event": kind, "ref": event.ref,
                                                         "sender": event.sender})

    def pull_request(self, repo: RepoRow, event: PullRequestEvent, *, source: Mapping[str, object]) -> Outcome:
        if not event.updates_code:
            return Outcome(skipped={"*": f"pull request #{event.number} was {event.action}"})
        return self._start(
            repo, sha=event.head_sha, ref=f"refs/pull/{event.number}/head", kind="pull_request",
            branch=event.base_ref, tag="", before=None, changed=None, message=None, author=event.sender,
            trigger={**source, "event": "pull_request", "number": event.number, "title": event.title,
                     "head_ref": event.head_ref, "base_ref": event.base_ref, "fork": event.fork,
                     "sender": event.sender},
            fork=event.fork, fetch_from=event.head_clone_url if event.fork else None,
        )

    def manual(self, repo: RepoRow, *, ref: str, workflow_file: str | None, inputs: Mapping[str, str],
               by: str) -> Outcome:
        mirror, refs = self._refresh(repo)
        full = ref if ref.startswith("refs/") else (f"refs/heads/{ref}" if f"refs/heads/{ref}" in refs else f"refs/tags/{ref}")
        sha = refs.get(full) or (ref if len(ref) == 40 else None)
        if sha is None:
            raise StartError(f"{repo.name} has no branch or tag '{ref}'")
        branch = full.removeprefix("refs/heads/") if full.startswith("refs/heads/") else ""
        tag = full.removeprefix("refs/tags/") if full.startswith("refs/tags/") else ""
        return self._start(repo, sha=sha, ref=full, kind="manual", branch=branch, tag=tag, before=None,
                           changed=None, message=None, author=by, trigger={"by": by, "event": "manual"},
                           inputs=inputs, only=workflow_file, once=False)

    def declared(self, repo: RepoRow) -> tuple[str, str, list[Declared]]:
        """The triggers the workflow files declare at the head of the repository's default branch
        (those that start runs by themselves: schedule, webhook, event, file_watch, and the trigger
        types of the installed plugins): (ref, sha, triggers). A file that does not lint declares
        nothing (its runs on push say why)."""
        mirror, refs = self._refresh(repo)
        try:
            ref = _git(mirror, "symbolic-ref", "HEAD").strip()
        except StartError:
            raise StartError(f"{repo.name} has no default branch") from None
        sha = refs.get(ref)
        if sha is None:
            raise StartError(f"{repo.name}: its default branch {ref} has no commit yet")
        found: list[Declared] = []
        files = [f for f in _git(mirror, "ls-tree", "--name-only", sha, f"{WORKFLOW_DIR}/").split()
                 if f.endswith((".yaml", ".yml"))]
        for path in files:
            blob = _git(mirror, "rev-parse", f"{sha}:{path}").strip()
            wf, diagnostics = self._lint(blob, path, _git(mirror, "cat-file", "blob", blob), self.grants_for(repo),
                                         self.sources(repo, mirror, sha))
            if wf is None or any(d.severity == "error" for d in diagnostics):
                continue
            for position, trig in enumerate(wf.triggers):
                if trig.type not in DECLARED_TYPES and installed_plugins().trigger_type(trig.type) is None:
                    continue
                digest = hashlib.sha256(json.dumps(trig.config, sort_keys=True, default=str).encode()).hexdigest()
                found.append(Declared(key=f"{repo.id}:{path}:{position}:{trig.type}:{digest[:16]}", workflow_file=path,
                                      workflow=wf.name, type=trig.type, config=dict(trig.config), blob_sha=blob))
        return ref, sha, found

    def scheduled(self, repo: RepoRow, trigger: TriggerRow, tick: float, *, backfill: int | None = None) -> Outcome:
        """Start the workflow of a schedule trigger for one tick, at the current head of the
        branch the trigger was read from. One run per tick (the dedupe key names it)."""
        _mirror, refs = self._refresh(repo)
        sha = refs.get(trigger.ref)
        if sha is None:
            raise StartError(f"{repo.name} has no branch {trigger.ref} any more")
        at = datetime.fromtimestamp(tick, timezone.utc).isoformat().replace("+00:00", "Z")
        audit: dict[str, object] = {"by": "schedule", "event": "schedule", "tick": at, "trigger": trigger.key,
                                    "cron": trigger.config.get("cron"),
                                    "timezone": trigger.config.get("timezone") or "UTC"}
        if backfill is not None:
            audit["backfill"] = backfill
        return self._start(repo, sha=sha, ref=trigger.ref, kind="schedule",
                           branch=trigger.ref.removeprefix("refs/heads/"), tag="", before=None, changed=None,
                           message=None, author="schedule", trigger=audit, only=trigger.workflow_file,
                           dedupe_key=f"{repo.id}:schedule:{trigger.key}:{tick}")

    # --

    def _refresh(self, repo: RepoRow) -> tuple[Path, dict[str, str]]:
        try:
            return self.mirrors.refresh(repo.url)
        except WorkspaceError as exc:
            raise StartError(str(exc)) from None

    def _start(self, repo: RepoRow, *, sha: str, ref: str, kind: str, branch: str, tag: str, before: str | None,
               changed: tuple[str, ...] | None, message: str | None, author: str, trigger: dict[str, object],
               fork: bool = False, fetch_from: str | None = None, inputs: Mapping[str, str] | None = None,
               only: str | None = None, once: bool = True, dedupe_key: str | None = None) -> Outcome:
        try:
            mirror, sha = self.mirrors.ensure(repo.url, sha)
        except WorkspaceError as exc:
            if fetch_from is None:
                raise StartError(str(exc)) from None
            try:
                mirror, sha = self.mirrors.ensure(fetch_from, sha)
            except WorkspaceError as exc2:
                raise StartError(str(exc2)) from None
        if message is None:
            message = _git(mirror, "log", "-1", "--format=%B", sha).strip()
        skipping = kind in ("push", "tag", "pull_request") and skip_ci(message)
        if changed is None and before and not is_zero_sha(before):
            try:
                changed = tuple(_git(mirror, "diff", "--name-only", before, sha).split())
            except StartError:
                changed = None  # the old commit is gone (force push): path filters let the run through
        files = [f for f in _git(mirror, "ls-tree", "--name-only", sha, f"{WORKFLOW_DIR}/").split()
                 if f.endswith((".yaml", ".yml"))]
        if only is not None:
            if only not in files:
                raise StartError(f"{repo.name} has no workflow file {only} at {sha[:8]}")
            files = [only]
        git = GitInfo(sha=sha, ref=ref, branch=branch, tag=tag, message=message, author=author, repo=repo.name)
        grants = self.grants_for(repo)
        sources = self.sources(repo, mirror, sha)
        result = Outcome()
        for path in files:
            blob = _git(mirror, "rev-parse", f"{sha}:{path}").strip()
            text = _git(mirror, "cat-file", "blob", blob)
            dedupe = dedupe_key or (f"{repo.id}:{kind}:{ref}:{sha}:{path}" if once else None)
            wf, diagnostics = self._lint(blob, path, text, grants, sources)
            errors = [d for d in diagnostics if d.severity == "error"]
            if (wf is None or errors) and skipping:
                result.skipped[path] = "the commit message asks to skip CI"
                continue
            if wf is None or errors:  # a failed run that carries the lint messages: the author sees why
                if not self._seen(dedupe):
                    try:
                        failed = self.scheduler.store.create_run(
                            repo=repo.name, workflow=_name_of(text) or path, workflow_file=path, blob_sha=blob, commit_sha=sha,
                            ref=ref, event=kind, dirty=False, trigger=trigger, tasks=[], repo_id=repo.id,
                            dedupe_key=dedupe, state="failed", message="\n".join(d.format() for d in errors),
                            workflow_text=text,
                        )
                    except sa.exc.IntegrityError:
                        pass  # made concurrently by another delivery of the same push
                    else:
                        result.runs.append(failed)
                        self.scheduler.state_changed(failed)
                continue
            if only is None:
                reason = "the commit message asks to skip CI" if skipping else why_not(wf, kind, branch, tag, changed)
                if reason is not None:
                    result.skipped[path] = reason
                    answers = any(t.type == kind or (t.type == "push" and kind == "tag") for t in wf.triggers)
                    if self.on_skip is not None and (skipping or answers):  # not for a schedule-only workflow
                        self.on_skip(repo, sha, ref, wf.name, reason)
                    continue
            if self._seen(dedupe):
                result.skipped[path] = "a run for this commit exists already"
                continue
            spec = RunSpec(
                workflow=wf, workflow_text=extends.workflow_text(wf, text),
                files=extends.files(wf, sources.own(path, text, blob)),
                workspace=Workspace(repo=repo.url, commit=sha), git=git,
                event=kind, repo=repo.name, blob_sha=blob, trigger=trigger,
                inputs=resolve_inputs(wf, inputs or {}, strict=kind == "manual"), changed_files=changed,
                repo_id=repo.id, dedupe_key=dedupe, no_secrets=fork, grants=grants,
                storage_root=self.storage_root,
            )
            run_id = self.scheduler.create_run(spec)
            if run_id is None:  # a concurrent delivery of the same push got there first
                result.skipped[path] = "a run for this commit exists already"
                continue
            log.info("run created", run=run_id, repo=repo.name, workflow=path, sha=sha, kind=kind)
            self.scheduler.start(run_id)
            result.runs.append(run_id)
        if skipping and not result.runs:
            result.skipped["*"] = "the commit message asks to skip CI"
        return result

    def grants_for(self, repo: RepoRow) -> Mapping[str, frozenset[str]]:
        """The plugin permissions the runs of `repo` may have: its own `plugin_permissions` when
        set (they replace the setting's, whole), else the controller's setting."""
        if repo.plugin_permissions is None:
            return self.grants
        return {plugin: frozenset(perms) for plugin, perms in repo.plugin_permissions.items()}

    def sources(self, repo: RepoRow, mirror: Path, sha: str) -> MirrorSources:
        """The files a workflow of `repo` at `sha` names (`extends:`): its own, in `mirror`, and
        those of the other registered repositories, by name."""
        return MirrorSources(self.mirrors, repo.name, mirror, sha, self._registered_url)

    def _registered_url(self, name: str) -> str | None:
        try:
            return Repos(self.scheduler.store.engine).get(name).url
        except LookupError:
            return None

    def _lint(self, blob: str, path: str, text: str, grants: Mapping[str, frozenset[str]],
              sources: MirrorSources | None = None) -> tuple[Workflow | None, list[Diagnostic]]:
        """Lint once per (blob, path, grants): many events arrive for commits that share a
        workflow file (and the same file lints differently under other grants). A file that
        extends another, or runs another as a sub-workflow, is linted each time, with the files it
        names: they may differ under the same blob."""
        key = (blob, path, json.dumps({k: sorted(v) for k, v in grants.items()}, sort_keys=True))
        if "extends" in text or _COMPOSES.search(text):
            own = sources.own(path, text, blob) if sources is not None else None
            return lint_text(text, path, grants=grants, sources=sources, loaded=own)
        with self._lint_lock:
            if key in self._linted:
                return self._linted[key]
        result = lint_text(text, path, grants=grants)
        with self._lint_lock:
            if len(self._linted) >= LINT_CACHE:
                self._linted.pop(next(iter(self._linted)))
            self._linted[key] = result
        return result

    def _seen(self, dedupe: str | None) -> bool:
        return dedupe is not None and self.scheduler.store.run_by_dedupe(dedupe) is not None

    def event(self, repo: RepoRow, trigger: TriggerRow, cause: Mapping[str, object], *,
              dedupe_key: str | None = None) -> Outcome:
        """Start the workflow of an `event` trigger (controller.events) at the current head of the
        branch the trigger was read from. `cause` is the run's audit (`${trigger.*}`): a finished
        run, or a custom event. With `dedupe_key`, one run per key (a run finishing is acted on
        once); without, every call makes a run (each custom event is one)."""
        _mirror, refs = self._refresh(repo)
        sha = refs.get(trigger.ref)
        if sha is None:
            raise StartError(f"{repo.name} has no branch {trigger.ref} any more")
        return self._start(repo, sha=sha, ref=trigger.ref, kind="event", branch=trigger.ref.removeprefix("refs/heads/"),
                           tag="", before=None, changed=None, message=None, author=str(cause.get("by") or "event"),
                           trigger={**cause, "trigger": trigger.key}, only=trigger.workflow_file,
                           once=dedupe_key is not None, dedupe_key=dedupe_key)

    def webhook(self, repo: RepoRow, trigger: TriggerRow, payload: Mapping[str, object], key_name: str, *,
                delivery: str | None = None) -> Outcome:
        """Start the workflow of a `webhook` trigger (an authenticated POST reached its path,
        controller.api.inbound) at the current head of the branch the trigger was read from. Every
        request makes its own run; the payload is in its audit (`${trigger.payload.NAME}`)."""
        import uuid

        _mirror, refs = self._refresh(repo)
        sha = refs.get(trigger.ref)
        if sha is None:
            raise StartError(f"{repo.name} has no branch {trigger.ref} any more")
        by = f"webhook-key:{key_name}"
        audit: dict[str, object] = {"by": by, "event": "webhook", "path": trigger.config.get("path"),
                                    "trigger": trigger.key, "payload": dict(payload),
                                    "delivery": delivery or str(uuid.uuid4())}
        return self._start(repo, sha=sha, ref=trigger.ref, kind="webhook",
                           branch=trigger.ref.removeprefix("refs/heads/"), tag="", before=None, changed=None,
                           message=None, author=by, trigger=audit, only=trigger.workflow_file, once=False)

    def plugin_trigger(self, repo: RepoRow, trigger: TriggerRow, payload: Mapping[str, object], *,
                       plugin: tuple[str, str] | None = None, dedupe_key: str | None = None) -> Outcome:
        """Start the workflow of a plugin's trigger (one payload its `poll` returned,
        controller.plugin_triggers) at the current head of the branch the trigger was read from.
        The run's event is the trigger's type; the payload is in its audit
        (`${trigger.payload.NAME}`). `plugin` is (name, version) of the plugin providing the type
        (default: the installed one); with `dedupe_key`, one run per key."""
        if plugin is None:
            found = installed_plugins().trigger_type(trigger.type)
            plugin = (found[0].name, found[0].version) if found is not None else (trigger.type, "?")
        _mirror, refs = self._refresh(repo)
        sha = refs.get(trigger.ref)
        if sha is None:
            raise StartError(f"{repo.name} has no branch {trigger.ref} any more")
        by = f"plugin:{plugin[0]} {plugin[1]}"
        audit: dict[str, object] = {"by": by, "event": trigger.type, "trigger": trigger.key, "payload": dict(payload)}
        return self._start(repo, sha=sha, ref=trigger.ref, kind=trigger.type,
                           branch=trigger.ref.removeprefix("refs/heads/"), tag="", before=None, changed=None,
                           message=None, author=by, trigger=audit, only=trigger.workflow_file,
                           once=dedupe_key is not None, dedupe_key=dedupe_key)


def installed_plugins() -> Registry:
    """The installed plugins (looked up on each call: tests put a registry of their own in place)."""
    from controller import plugins

    return plugins.installed()


_COMPOSES = re.compile(r"""type\s*:\s*["']?workflow\b""")  # a `type: workflow` task (controller.workflow.compose)


def _name_of(text: str) -> str | None:
    """The `workflow.name` of a file that does not lint, when it can still be read: its runs then
    report under the same forge context as the good ones (a required check sees the failure)."""
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            return None  # not expanded here: the linter guards against alias bombs, this does not
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    name = data.get("workflow", {}).get("name") if isinstance(data, dict) and isinstance(data.get("workflow"), dict) \
        else None
    return name if isinstance(name, str) and name.strip() else None
