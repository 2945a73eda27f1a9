"""Event triggers: a workflow starts when another one finishes, or on a custom event posted to the API.

```yaml
triggers:
  - {type: event, workflow: build, state: success}    # success (default) | failure | any
  - {type: event, workflow: build, repo: acme/other}  # a workflow of another registered repository
  - {type: event, name: deploy-requested}             # POST /api/v1/events/deploy-requested
```

The triggers are those of each repository's default branch head (`Starter.declared`, kept in the
`triggers` table by the schedule loop). The started run is the listening workflow file at the
current head of that branch (`Starter.event`), with `event: event`.

A finished run (`Events.run_finished`, hooked on `Scheduler.on_state`) fires the event triggers,
of every repository, whose `workflow` is the run's workflow name, whose `repo` (default: the
trigger's own repository) is the run's repository, and whose `state` matches the run's final state:

- `success`: the run succeeded;
- `failure`: the run failed or errored (a workflow file that does not lint makes a failed run: it
  counts);
- `any`: succeeded, failed, errored, and also canceled. A canceled run fires `any` only: someone
  stopped it on purpose, which is not a failure, but clean-up work (`any`) is still wanted.

The hook only reads the database; starting the runs (a git fetch, lint) happens in a worker
thread, so a runner finishing a task never waits for it, and nothing it does can fail the
scheduler: every error is logged. A run finishing is acted on once: the new run's dedupe key names
the trigger and the finished run (`{repo id}:event:{trigger key}:run:{run id}`), so a second
controller, or the same hook called twice, makes no second run. A workflow file with several
triggers that match the same finished run (or the same custom event) starts once.

Loops: lint refuses a workflow whose event trigger names itself (in its own repository). Chains
through other workflows or repositories are cut at run time: a run started by a finished run has
`trigger.depth` = the finished run's depth + 1 (a run started otherwise has depth 0); a run deeper
than `MAX_DEPTH` is not started, and the warning (in the controller's log, and as a `[clarity]`
line at the end of the finished run's last task log) names the chain of workflows.

A custom event (`Events.custom`) starts every workflow with an event trigger of that `name` (of
every repository, or of one), with the JSON object posted as `${trigger.payload.*}`. A run of a
custom event has depth 0: a task that posts the event that started it makes a loop lint cannot see.

Not handled: a run that finishes while its controller is going down may have its event triggers
not fired (nothing replays a missed finish).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import structlog

from controller.starter import StartError, Starter
from controller.store.repos import RepoRow, Repos
from controller.store.runs import RunRow, Store
from controller.store.triggers import TriggerRow, Triggers

log = structlog.get_logger("clarity.events")

MAX_DEPTH = 10  # runs started by finished runs, one after the other; the next one is not started
FINAL = ("succeeded", "failed", "errored", "canceled")
FIRES: dict[str, frozenset[str]] = {
    "success": frozenset({"succeeded"}),
    "failure": frozenset({"failed", "errored"}),
    "any": frozenset(FINAL),
}


def depth_of(trigger: Any) -> int:
    """How many runs, each started by the end of the one before, led to a run (its `trigger` JSON)."""
    depth = trigger.get("depth") if isinstance(trigger, Mapping) and trigger.get("by") == "event" else None
    return depth if isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0 else 0


def listens(trigger: TriggerRow, run: RunRow) -> bool:
    """Does this event trigger fire when `run` ends (in its final state)?"""
    config = trigger.config
    if trigger.type != "event" or config.get("workflow") != run.workflow:
        return False
    watched = config.get("repo")
    if watched is None:
        if trigger.repo_id != run.repo_id:
            return False
    elif watched != run.repo:
        return False
    return run.state in FIRES.get(str(config.get("state") or "success"), frozenset())


@dataclass
class Fired:
    """What a custom event did: the runs started, why a listening workflow did not run
    (`owner/repo:.clarity/file.yaml` -> why), and how many workflow files listen."""

    runs: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    listening: int = 0


class Events:
    def __init__(self, store: Store, repos: Repos, starter: Starter) -> None:
        self.store, self.repos, self.starter = store, repos, starter
        self.triggers = Triggers(store.engine)
        self._jobs: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = False

    # -- a run finished ----------------------------------------------------------------------

    def run_finished(self, run_id: int) -> None:
        """The `Scheduler.on_state` hook: quick (reads the database), never raises."""
        try:
            run = self.store.get_run(run_id)
            if run.state not in FINAL or run.repo_id is None:
                return
            listening = [t for t in self.triggers.list("event") if listens(t, run)]
            if listening:
                self._submit(lambda: self._fire(run, listening))
        except Exception:
            log.exception("event triggers of a finished run failed", run=run_id)

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Wait until the runs of every finished run seen so far are started (tests); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._busy, timeout_s)

    def _submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._jobs.append(job)
            if self._busy:
                return
            self._busy = True
        threading.Thread(target=self._work, name="events", daemon=True).start()

    def _work(self) -> None:
        """Run the queued jobs, then end (a thread only while there is work)."""
        while True:
            with self._lock:
                if not self._jobs:
                    self._busy = False
                    self._idle.notify_all()
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception:
                log.exception("event trigger job failed")

    def _fire(self, run: RunRow, listening: list[TriggerRow]) -> None:
        depth = depth_of(run.trigger) + 1
        seen: set[tuple[int, str]] = set()
        for trigger in listening:
            if (trigger.repo_id, trigger.workflow_file) in seen:
                continue  # one run per workflow file, however many of its triggers match
            seen.add((trigger.repo_id, trigger.workflow_file))
            try:
                self._start(run, trigger, depth)
            except Exception:
                log.exception("event trigger failed", run=run.id, trigger=trigger.key)

    def _start(self, run: RunRow, trigger: TriggerRow, depth: int) -> None:
        try:
            repo = self.repos.get_id(trigger.repo_id)
        except LookupError:
            return  # the repository was removed since its triggers were read
        if not repo.enabled:
            log.info("event trigger not fired: the repository is disabled", repo=repo.name, trigger=trigger.key,
                     run=run.id)
            return
        if depth > MAX_DEPTH:
            self._cut(run, trigger, repo, depth)
            return
        cause: dict[str, object] = {"by": "event", "event": "event", "workflow": run.workflow, "state": run.state,
                                    "run": run.id, "repo": run.repo, "depth": depth, "sha": run.commit_sha,
                                    "ref": run.ref}
        try:
            outcome = self.starter.event(repo, trigger, cause,
                                         dedupe_key=f"{repo.id}:event:{trigger.key}:run:{run.id}")
        except StartError as exc:
            log.warning("event run not started", repo=repo.name, workflow=trigger.workflow_file, cause=run.id,
                        error=str(exc))
            return
        log.info("event run", repo=repo.name, workflow=trigger.workflow_file, cause=run.id, cause_state=run.state,
                 depth=depth, runs=outcome.runs, skipped=outcome.skipped or None)

    def _cut(self, run: RunRow, trigger: TriggerRow, repo: RepoRow, depth: int) -> None:
        """The chain is too long: say so, naming it (in the log, and in the finished run's log)."""
        chain = " -> ".join([*self.chain(run), _label(repo.name, trigger.workflow, run.repo, None)])
        why = (f"{trigger.workflow_file} of {repo.name} not started: the chain of runs started by event triggers "
               f"would reach depth {depth}, and the limit is {MAX_DEPTH} (a loop?): {chain}")
        log.warning("event chain cut", run=run.id, repo=repo.name, workflow=trigger.workflow_file, depth=depth,
                    limit=MAX_DEPTH, chain=chain)
        tasks = sorted(self.store.list_tasks(run.id), key=lambda t: (t.finished_at or 0.0, t.position))
        if tasks:
            self.store.append_logs(run.id, tasks[-1].name, [(time.time(), f"[clarity] event trigger: {why}")])

    def chain(self, run: RunRow) -> list[str]:
        """The workflows that led to `run`, first to last: `build [run 3]`, with the repository
        when it is not the run's own."""
        runs = [run]
        while len(runs) <= MAX_DEPTH + 1:
            cause = runs[-1].trigger
            before = cause.get("run") if isinstance(cause, Mapping) and cause.get("by") == "event" else None
            if not isinstance(before, int) or isinstance(before, bool):
                break
            try:
                runs.append(self.store.get_run(before))
            except LookupError:
                break
        return [_label(r.repo, r.workflow, run.repo, r.id) for r in reversed(runs)]

    # -- a custom event -----------------------------------------------------------------------

    def custom(self, name: str, payload: Mapping[str, Any], *, by: str, repo: RepoRow | None = None) -> Fired:
        """Start every workflow with an event trigger of this `name` (of `repo` only, if given)."""
        fired = Fired()
        seen: set[tuple[int, str]] = set()
        for trigger in self.triggers.list("event", repo_id=repo.id if repo is not None else None):
            if trigger.config.get("name") != name or (trigger.repo_id, trigger.workflow_file) in seen:
                continue
            seen.add((trigger.repo_id, trigger.workflow_file))
            fired.listening += 1
            try:
                owner = repo if repo is not None else self.repos.get_id(trigger.repo_id)
            except LookupError:
                continue
            where = f"{owner.name}:{trigger.workflow_file}"
            if not owner.enabled:
                fired.skipped[where] = "the repository is disabled"
                continue
            cause = {"by": by, "event": "event", "name": name, "payload": dict(payload)}
            try:
                outcome = self.starter.event(owner, trigger, cause)
            except StartError as exc:
                fired.skipped[where] = str(exc)
                continue
            fired.runs.extend(outcome.runs)
            fired.skipped.update({f"{owner.name}:{k}": v for k, v in outcome.skipped.items()})
        log.info("custom event", name=name, by=by, repo=repo.name if repo is not None else None,
                 listening=fired.listening, runs=fired.runs, skipped=fired.skipped or None)
        return fired


def _label(repo: str, workflow: str, home: str, run_id: int | None) -> str:
    where = f"{repo}:" if repo != home else ""
    return f"{where}{workflow} [{'run ' + str(run_id) if run_id is not None else 'not started'}]"
