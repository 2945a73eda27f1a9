"""Schedules: fire the runs of `schedule` triggers at their ticks, once each across controllers.

The triggers come from the workflow files at each repository's default branch head
(`Starter.declared`, kept in the `triggers` table by `refresh`): re-read every `refresh_s`, and
at once after a push to the default branch (`on_push`). A schedule removed from the file stops;
one that is new starts from now (nothing fires for its past).

Each pass (`tick`, driven by the injected `clock`) asks `controller.triggers.schedule.due` which
ticks to fire given the last one handled and the trigger's `catchup` policy, claims each tick in
the database (`Triggers.fire`: one insert wins, whichever controller gets there), and starts the
run through the starter. Then the trigger's `last_tick` moves to the newest tick passed, fired or
let go by the policy. Backfills (`controller.store.backfills`) fire a past window's ticks the same
way, a few each pass.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

import structlog

from controller.loop import Loop
from controller.services import Services
from controller.starter import StartError
from controller.store.backfills import BackfillRow, Backfills
from controller.store.repos import RepoRow
from controller.store.triggers import TriggerRow, Triggers
from controller.triggers.schedule import Schedule, ScheduleError, due

log = structlog.get_logger("clarity.schedules")

TICK_S = 1.0
REFRESH_S = 60.0
BACKFILL_STEP = 5  # ticks of a backfill fired per pass


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _iso(epoch: float) -> str:
    return _utc(epoch).isoformat().replace("+00:00", "Z")


def refresh_triggers(services: Services, repo: RepoRow) -> None:
    """Make the `triggers` table what the repository's default branch head declares now.
    StartError when the repository cannot be read."""
    ref, sha, declared = services.starter.declared(repo)
    added, removed = Triggers(services.store.engine).replace(repo.id, ref, sha, declared)
    if added or removed:
        log.info("triggers read", repo=repo.name, ref=ref, sha=sha[:12], added=added, removed=removed,
                 now=len(declared))


class ScheduleLoop:
    def __init__(self, services: Services, *, clock: Callable[[], float] = time.time, refresh_s: float = REFRESH_S,
                 tick_s: float = TICK_S) -> None:
        self.services, self.clock, self.refresh_s, self.tick_s = services, clock, refresh_s, tick_s
        self.triggers = Triggers(services.store.engine)
        self.backfills = Backfills(services.store.engine)
        self._refreshed: dict[int, float] = {}  # repo id -> when its triggers were last read
        self._bad: set[str] = set()  # triggers whose schedule cannot be used (said once)
        self._loop = Loop("schedules", self.tick_s, self.tick, failed="schedule pass failed")
        self.start, self.stop = self._loop.start, self._loop.stop

    # -- triggers --------------------------------------------------------------------------

    def refresh(self, repo: RepoRow) -> None:
        """Read the repository's declared triggers again (from its default branch head)."""
        try:
            refresh_triggers(self.services, repo)
        except StartError as exc:
            log.warning("cannot read the triggers of a repository", repo=repo.name, error=str(exc))
        finally:
            self._refreshed[repo.id] = self.clock()

    def on_push(self, repo: RepoRow, ref: str) -> None:
        """A push: if it is to the default branch, the declared triggers may have changed."""
        known = {t.ref for t in self.triggers.list(repo_id=repo.id)}
        if ref in known or not known:
            self._refreshed.pop(repo.id, None)  # read again on the next pass

    def _refresh_due(self, now: float) -> None:
        for repo in self.services.repos.list():
            if not repo.enabled:
                continue
            if now - self._refreshed.get(repo.id, float("-inf")) >= self.refresh_s:
                self.refresh(repo)

    # -- ticks -----------------------------------------------------------------------------

    def tick(self) -> int:
        """One pass: refresh what is due, fire what is due; the number of runs started."""
        now = self.clock()
        self._refresh_due(now)
        started = 0
        for trigger in self.triggers.list("schedule"):
            started += self._fire(trigger, now)
        for backfill in self.backfills.list("running"):
            started += self._backfill(backfill)
        return started

    def _backfill(self, backfill: BackfillRow) -> int:
        """Fire the next few ticks of a running backfill (a few a pass: a long window does not
        flood the queue, and a pause or cancel takes effect within a pass)."""
        try:
            trigger = self.triggers.get(backfill.trigger_key)
            schedule = Schedule.parse(trigger.config)
        except (LookupError, ScheduleError) as exc:
            log.warning("backfill cannot go on", backfill=backfill.id, error=str(exc))
            self.backfills.move(backfill.id, "cancel")
            return 0
        ticks = schedule.ticks(_utc(backfill.cursor), _utc(backfill.end_at), limit=BACKFILL_STEP)
        started = fired = 0
        for at in ticks:
            tick = at.timestamp()
            if self.triggers.fire(trigger.key, tick, backfill_id=backfill.id):
                fired += 1
                started += self._start(trigger, tick, backfill=backfill.id)
        cursor = ticks[-1].timestamp() if ticks else backfill.end_at
        self.backfills.progress(backfill.id, cursor, fired, done=len(ticks) < BACKFILL_STEP)
        return started

    def _fire(self, trigger: TriggerRow, now: float) -> int:
        try:
            schedule = Schedule.parse(trigger.config)
        except ScheduleError as exc:
            if trigger.key not in self._bad:
                self._bad.add(trigger.key)
                log.warning("schedule cannot be used", trigger=trigger.key, error=str(exc))
            return 0
        if trigger.last_tick is None:  # new: starts from now
            self.triggers.advance(trigger.id, now)
            return 0
        last = _utc(trigger.last_tick)
        firing = due(schedule, last, _utc(now))
        passed = schedule.latest_ticks(last, _utc(now), 1)
        started = 0
        for at in firing:
            tick = at.timestamp()
            if not self.triggers.fire(trigger.key, tick):
                continue  # another controller has it
            started += self._start(trigger, tick)
        newest = max([*(t.timestamp() for t in passed[-1:]), *(t.timestamp() for t in firing)], default=None)
        if newest is not None:
            self.triggers.advance(trigger.id, newest)
        return started

    def _start(self, trigger: TriggerRow, tick: float, backfill: int | None = None) -> int:
        try:
            repo = self.services.repos.get_id(trigger.repo_id)
            outcome = self.services.starter.scheduled(repo, trigger, tick, backfill=backfill)
        except (StartError, LookupError) as exc:
            log.warning("scheduled run not started", trigger=trigger.key, tick=_iso(tick), error=str(exc))
            return 0
        run_id = outcome.runs[0] if outcome.runs else None
        self.triggers.fired(trigger.key, tick, run_id)
        log.info("scheduled run", trigger=trigger.key, tick=_iso(tick), run=run_id,
                 skipped=outcome.skipped or None)
        return 1 if run_id is not None else 0
