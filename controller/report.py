"""Results back to git: a status per workflow and commit on the forge, and git notes.

The scheduler tells `Reporting.run_changed` when a run is queued, starts and ends; the starter
tells `Reporting.skipped` when a workflow does not run for a commit (a branch, paths or `[skip ci]`
filter), so that a check the forge requires never hangs at pending. Neither ever waits for a forge
nor fails because of one: each only writes the newest state to the outbox
(`controller.store.outbox`). `Sender` sends from there in a background thread, retrying with
backoff (honouring `Retry-After` and rate-limit resets) while a forge is down, giving up on a state
the forge refuses (the error stays on the outbox row, shown with the run).

A repository reports statuses when it has forge credentials (`forge_token`, `forge_token_file`,
or a GitHub App), and writes git notes when `notes` is on.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import structlog

from controller.console import fmt_duration
from controller.forges.report import (CheckDetails, Rejected, ReportError, Reporter, Retry, State, Status, Target,
                                      describe, reporter)
from controller.settings import Settings
from controller.store.outbox import Outbox, OutboxRow
from controller.store.repos import RepoRow, Repos
from controller.store.runs import RunRow, Store, TaskRow

log = structlog.get_logger("clarity.report")

NEUTRAL: dict[str, State] = {"queued": "queued", "running": "running", "succeeded": "success",
                             "failed": "failure", "errored": "error", "canceled": "canceled", "skipped": "skipped"}
DEFAULT_CONTEXT = "clarity/{workflow}"
STATUS_FORGES = ("github", "gitlab", "gitea")
BACKOFF_CAP_S = 60.0
GIVE_UP_S = 24 * 3600.0  # a state not sent within a day is given up (a newer one is still sent)
NOTE_ATTEMPTS = 8  # a git remote that refuses notes (403, a hook) is not waited for all day
LOG_TAIL = 20  # lines of the failing task's log in a GitHub check run


def context_of(repo: RepoRow, workflow: str) -> str:
    return (repo.status_context or DEFAULT_CONTEXT).replace("{workflow}", workflow)


def default_api_url(forge: str, url: str) -> str | None:
    """The forge's API base URL for a repository cloned from `url` (None: cannot tell; set
    `forge_url`)."""
    if forge == "github":
        host = urlsplit(url).hostname if "://" in url else None
        return "https://api.github.com" if host in (None, "github.com") else f"https://{host}/api/v3"
    if "://" not in url or urlsplit(url).scheme not in ("http", "https"):
        return None
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    return base if forge == "gitlab" else f"{base}/api/v1"


def short_ref(ref: str | None) -> str | None:
    """The branch or tag name of a ref, as GitLab's `ref` wants it (None for other refs: a merge
    request's head is not a branch)."""
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref and ref.startswith(prefix):
            return ref[len(prefix):]
    return None


def reports_statuses(repo: RepoRow) -> bool:
    return repo.forge in STATUS_FORGES and bool(repo.forge_token or repo.forge_token_file or repo.github_app_id)


class TargetError(Exception):
    """A repository's forge settings cannot be used (a missing file, a token that cannot be opened)."""


def target_of(repo: RepoRow, home: Path) -> Target:
    api_url = repo.forge_url or default_api_url(repo.forge, repo.url)
    if api_url is None:
        raise TargetError(f"cannot tell the {repo.forge} API's URL from {repo.url}: set it with "
                          f"`clarity repo set {repo.name} --forge-url URL`")
    token = None
    if repo.forge_token:
        from controller.secretbox import SecretBox, SecretBoxError

        try:
            token = SecretBox.for_home(home).open(repo.forge_token)
        except SecretBoxError as exc:
            raise TargetError(str(exc)) from None
    elif repo.forge_token_file:
        token = _read(repo.forge_token_file, "forge token file").strip()
    key = _read(repo.github_app_key_file, "GitHub App key file") if repo.github_app_id and repo.github_app_key_file \
        else None
    try:
        return Target(forge=repo.forge, api_url=api_url, token=token,  # type: ignore[arg-type]
                      app_id=repo.github_app_id if key else None, private_key=key,
                      installation_id=repo.github_installation_id)
    except ValueError as exc:
        raise TargetError(str(exc)) from None


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetError(f"{what} {path}: {exc.strerror or exc}") from None


# -- what is said -----------------------------------------------------------------------------


def _failing(tasks: list[TaskRow]) -> list[TaskRow]:
    return [t for t in tasks if t.state in ("failed", "errored")]


def description(run: RunRow, tasks: list[TaskRow]) -> str:
    """A line for the forge (cut to its limit by the reporter): the state, and for a failure the
    task(s) that failed."""
    state = run.state
    took = fmt_duration(run.duration_s) if run.duration_s is not None else None
    if state == "queued":
        return "Queued"
    if state == "running":
        return f"Running ({len(tasks)} task{'s' if len(tasks) != 1 else ''})"
    if state == "succeeded":
        return f"Succeeded in {took}" if took else "Succeeded"
    if state == "canceled":
        return "Canceled"
    if state == "skipped":
        return "Skipped: every task was skipped"
    failing = _failing(tasks)
    if not tasks and run.message:  # the workflow file did not lint
        line = run.message.strip().splitlines()[0] if run.message.strip() else ""
        return f"The workflow file has errors: {line}"
    if failing:
        first = failing[0]
        why = f"exit {first.exit_code}" if first.exit_code not in (None, 0) else (first.error or first.state)
        more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
        verb = "Failed" if state == "failed" else "Errored"
        return f"{verb}: task {first.name} ({why.splitlines()[0] if why else first.state}){more}"
    return "Failed" if state == "failed" else "Errored"


def check_details(run: RunRow, tasks: list[TaskRow], title: str, store: Store) -> CheckDetails:
    rows = ["| task | result | duration |", "| --- | --- | --- |"]
    for t in tasks:
        took = fmt_duration(t.duration_s) if t.duration_s is not None else ""
        rows.append(f"| {_cell(t.name)} | {t.state} | {took} |")
    summary = "\n".join(rows)
    text = None
    failing = _failing(tasks)
    if failing:
        lines = [line for _task, _ts, line in store.logs(run.id, failing[0].name)][-LOG_TAIL:]
        text = f"Last {len(lines)} log lines of `{_cell(failing[0].name)}`:\n\n```\n" + "\n".join(
            line.replace("```", "`\u200b``") for line in lines) + "\n```"
    return CheckDetails(title=title, summary=summary, text=text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- producing ---------------------------------------------------------------------------------


class Reporting:
    """Turns run changes into outbox rows. Every entry point swallows and logs its errors: a run
    never fails because of reporting."""

    def __init__(self, store: Store, repos: Repos, outbox: Outbox, settings: Settings) -> None:
        self.store, self.repos, self.outbox, self.settings = store, repos, outbox, settings
        self.wake = threading.Event()  # set when there is something new to send

    def run_url(self, run_id: int) -> str:
        return f"{self.settings.base_url}/api/v1/runs/{run_id}"

    def run_changed(self, run_id: int) -> None:
        try:
            self._run_changed(run_id)
        except Exception:
            log.exception("reporting a run failed", run=run_id)

    def _run_changed(self, run_id: int) -> None:
        run = self.store.get_run(run_id)
        state = NEUTRAL.get(run.state)
        if state is None or run.repo_id is None or not run.commit_sha or run.dirty:
            return
        try:
            repo = self.repos.get_id(run.repo_id)
        except LookupError:
            return
        final = state not in ("queued", "running")
        tasks = self.store.list_tasks(run_id)
        if reports_statuses(repo) and run.parent_run is None:  # a sub-run is reported by its parent's run
            text = description(run, tasks)
            payload: dict[str, Any] = {
                "state": state, "context": context_of(repo, run.workflow), "description": text,
                "target_url": self.run_url(run_id), "sha": run.commit_sha, "repo": repo.name, "ref": short_ref(run.ref),
                "run_id": run_id}
            if repo.forge == "github" and repo.github_app_id:
                details = check_details(run, tasks, text, self.store)
                payload["check"] = {"title": details.title, "summary": details.summary, "text": details.text}
            key = f"status:{repo.id}:{run.commit_sha}:{payload['context']}"
            previous = self.outbox.get(key)
            self.outbox.put("status", key, repo.id, run_id, payload,
                            new_handle=previous is not None and previous.run_id != run_id)
            self.wake.set()
        if repo.notes and final:
            self.outbox.put("note", f"note:{run_id}", repo.id, run_id, {
                "sha": run.commit_sha, "run_id": run_id, "workflow": run.workflow, "workflow_file": run.workflow_file,
                "blob_sha": run.blob_sha, "state": run.state, "duration_s": run.duration_s, "event": run.event,
                "ref": run.ref, "url": self.run_url(run_id),
                "tasks": [[t.name, t.state, t.duration_s] for t in tasks]})
            self.wake.set()

    def skipped(self, repo: RepoRow, sha: str, ref: str, workflow: str, reason: str) -> None:
        """A workflow that does not run for this commit: a final `skipped` status (success where
        the forge has no such state), so a required check does not wait for it."""
        try:
            if not reports_statuses(repo):
                return
            context = context_of(repo, workflow)
            key = f"status:{repo.id}:{sha}:{context}"
            if self.outbox.get(key) is not None:  # a run on this commit reports for this workflow already
                return
            self.outbox.put("status", key, repo.id, None, {
                "state": "skipped", "context": context, "description": f"Skipped: {reason}", "target_url": None,
                "sha": sha, "repo": repo.name, "ref": short_ref(ref), "run_id": None})
            self.wake.set()
        except Exception:
            log.exception("reporting a skipped workflow failed", repo=repo.name, sha=sha, workflow=workflow)


# -- sending -------------------------------------------------------------------------------------


@dataclass
class _Cached:
    fingerprint: tuple[Any, ...]
    reporter: Reporter


class Sender:
    """Sends what the outbox holds, in a thread; `tick` is one pass (tests call it directly)."""

    def __init__(self, outbox: Outbox, repos: Repos, settings: Settings, wake: threading.Event | None = None, *,
                 make_reporter: Callable[[Target], Reporter] | None = None, poll_s: float = 1.0) -> None:
        self.outbox, self.repos, self.settings = outbox, repos, settings
        self.wake = wake or threading.Event()
        self.make_reporter = make_reporter or (lambda target: reporter(target))
        self.poll_s = poll_s
        self._reporters: dict[int, _Cached] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="report-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        for cached in self._reporters.values():
            cached.reporter.close()
        self._reporters.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.clear()
            try:
                busy = self.tick()
            except Exception:
                log.exception("sending reports failed")
                busy = 0
            if not busy:
                self.wake.wait(self.poll_s)

    def tick(self) -> int:
        """Send what is due; how many rows were handled."""
        handled = 0
        for row in self.outbox.due():
            if self._stop.is_set():
                break
            claimed = self.outbox.claim(row)
            if claimed is None:
                continue
            handled += 1
            self._send(claimed)
        return handled

    def _send(self, row: OutboxRow) -> None:
        try:
            repo = self.repos.get_id(row.repo_id)
        except LookupError:
            self.outbox.give_up(row, "the repository was removed")
            return
        try:
            if row.kind == "status":
                handle = self._status(repo, row)
            elif row.kind == "note":
                self._note(repo, row)
                handle = None
            else:
                raise Rejected(f"unknown outbox kind {row.kind!r}")
        except Retry as exc:
            self._retry(row, exc.message, exc.retry_after)
        except (Rejected, TargetError) as exc:
            log.warning("forge refused a report", repo=repo.name, key=row.key, error=str(exc))
            self.outbox.give_up(row, str(exc))
        except ReportError as exc:
            self._retry(row, exc.message, None)
        except Exception as exc:  # a bug or an unexpected answer: keep trying, within the day
            log.exception("sending a report failed", repo=repo.name, key=row.key)
            self._retry(row, f"{type(exc).__name__}: {exc}", None)
        else:
            self.outbox.sent(row, handle)
            log.info("report sent", repo=repo.name, key=row.key, state=row.payload.get("state"))

    def _retry(self, row: OutboxRow, error: str, retry_after: float | None) -> None:
        now = time.time()
        if row.kind == "note" and row.attempts + 1 >= NOTE_ATTEMPTS:
            self.outbox.give_up(row, f"gave up after {NOTE_ATTEMPTS} attempts: {error}")
            return
        if now - row.updated_at > GIVE_UP_S:
            self.outbox.give_up(row, f"gave up after {fmt_duration(now - row.updated_at)}: {error}")
            return
        delay = min(BACKOFF_CAP_S, 2.0 ** row.attempts) * random.uniform(0.8, 1.0)
        if retry_after is not None:
            delay = max(delay, retry_after)
        log.info("report not sent; will retry", key=row.key, error=error, in_s=round(delay, 1))
        self.outbox.retry(row, error, now + delay)

    def _status(self, repo: RepoRow, row: OutboxRow) -> str | None:
        if not reports_statuses(repo):
            raise Rejected("the repository has no forge credentials any more")
        target = target_of(repo, self.settings.home)
        fingerprint = (target.forge, target.api_url, target.token, target.app_id, target.private_key,
                       target.installation_id)
        cached = self._reporters.get(repo.id)
        if cached is None or cached.fingerprint != fingerprint:
            if cached is not None:
                cached.reporter.close()
            cached = self._reporters[repo.id] = _Cached(fingerprint, self.make_reporter(target))
        p = row.payload
        check = p.get("check")
        status = Status(state=p["state"], context=p["context"], description=describe(str(p["description"])),
                        target_url=p.get("target_url"), sha=p["sha"], repo=p["repo"], ref=p.get("ref"),
                        check=CheckDetails(**check) if isinstance(check, Mapping) else None)
        return cached.reporter.send(status, row.handle)

    def _note(self, repo: RepoRow, row: OutboxRow) -> None:
        from controller import notes

        p = row.payload
        run = notes.NoteRun(
            run_id=int(p["run_id"]), workflow=str(p["workflow"]), workflow_file=str(p["workflow_file"]),
            blob_sha=p.get("blob_sha"), state=str(p["state"]), duration_s=p.get("duration_s"), event=str(p["event"]),
            ref=p.get("ref"), url=str(p["url"]), tasks=[(str(n), str(s), d) for n, s, d in p.get("tasks", [])])
        try:
            notes.write_note(repo.url, str(p["sha"]), notes.format_note(run), work=self.settings.home / "notes")
        except notes.NotesError as exc:
            raise Retry(exc.message, None) from None
