"""The intake worker: stored webhook deliveries -> runs, off the request path.

One thread claims `received` deliveries (compare-and-set, so replicas on one database never
process one twice), parses the stored payload, and hands the event to the Starter. It wakes when
the hook route stores a delivery in this process, and every `poll_s` seconds for those stored by
another replica. On start it first takes back what a killed process left `processing`.

A delivery ends `processed` (the note says which runs, or why none), `ignored` or `failed` (a
sentence for the user: an unreachable clone URL, a payload missing a field). No delivery can stop
the worker: every failure is caught, recorded on that delivery, and the loop goes on.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from controller.forges import FORGES, HookError, not_acted_on
from controller.services import Services
from controller.starter import Outcome, StartError
from controller.store import deliveries as store_deliveries
from controller.store.deliveries import Deliveries, DeliveryRow
from controller.triggers.events import Delivery, PingEvent, PullRequestEvent, PushEvent
from runner import owner
from runner.workspace import WorkspaceError

log = structlog.get_logger("clarity.intake")

POLL_S = 3.0
# A claim older than this is taken back even if its owner (on another host) cannot be checked.
STALE_S = 15 * 60.0


class IntakeWorker:
    def __init__(self, services: Services, *, poll_s: float = POLL_S, stale_s: float = STALE_S) -> None:
        self.services = services
        self.deliveries = Deliveries(services.store.engine)
        self.poll_s, self.stale_s = poll_s, stale_s
        self.owner = owner.current()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intake", daemon=True)
        store_deliveries.subscribe(self._wake)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        try:
            self.recover()
        except Exception:
            log.exception("intake recovery failed")
        while not self._stop.is_set():
            self._wake.clear()  # before draining: a delivery stored meanwhile sets it again
            try:
                self.drain()
            except Exception:  # the database went away for a moment: try again next round
                log.exception("intake round failed")
            self._wake.wait(self.poll_s)

    def recover(self) -> list[int]:
        back = self.deliveries.recover(owner.is_orphan, self.stale_s)
        if back:
            log.info("deliveries taken back after a restart", deliveries=back)
        return back

    def drain(self) -> int:
        """Process claimed deliveries until none is left (or stop); how many were processed."""
        count = 0
        while not self._stop.is_set():
            row = self.deliveries.claim_next(self.owner)
            if row is None:
                break
            self.process(row)
            count += 1
        return count

    def process(self, row: DeliveryRow) -> str:
        """Act on one claimed delivery and record its end; the final state."""
        try:
            state, note = self._act(row)
        except StartError as exc:
            state, note = "failed", str(exc)
        except HookError as exc:
            state, note = "failed", exc.message
        except WorkspaceError as exc:  # a fork's head could not be fetched either
            state, note = "failed", str(exc)
        except Exception as exc:
            log.exception("delivery processing crashed", delivery=row.delivery_id, forge=row.forge)
            state, note = "failed", f"internal error: {type(exc).__name__}: {exc}"
        try:
            self.deliveries.done(row.id, state, note)
        except Exception:  # left `processing`: recover() retries it after the claim goes stale
            log.exception("could not record a delivery's end", delivery=row.delivery_id)
        # a delivery that started nothing because something is wrong is for the operator to see
        (log.warning if state == "failed" else log.info)(
            "delivery processed", delivery=row.delivery_id, forge=row.forge, state=state, note=note)
        return state

    def _act(self, row: DeliveryRow) -> tuple[str, str | None]:
        forge = FORGES.get(row.forge)
        if forge is None:
            return "failed", f"no forge {row.forge!r}"
        if row.repo_id is None:
            return "failed", "the delivery names no repository"
        try:
            repo = self.services.repos.get_id(row.repo_id)
        except LookupError:
            return "ignored", "the repository was removed from Clarity"
        if not repo.enabled:
            return "ignored", f"repository {repo.name} is disabled"
        payload: dict[str, Any] = row.payload if isinstance(row.payload, dict) else {}
        event = forge.parse(Delivery(forge=row.forge, delivery_id=row.delivery_id, event_name=row.event,
                                     repo=repo.name, payload=payload))
        source = {"delivery": row.delivery_id, "forge": row.forge}
        if isinstance(event, PushEvent):
            outcome = self.services.starter.push(repo, event, source=source)
        elif isinstance(event, PullRequestEvent):
            outcome = self.services.starter.pull_request(repo, event, source=source)
        elif isinstance(event, PingEvent):
            return "ignored", "ping"
        else:
            return "ignored", not_acted_on(row.event, payload)
        return "processed", describe(outcome)


def describe(outcome: Outcome) -> str:
    """The note kept on a processed delivery: the runs made, and why each other workflow did not run."""
    parts = []
    if outcome.runs:
        parts.append("runs " + ", ".join(str(r) for r in outcome.runs))
    parts.extend(f"{path}: {why}" for path, why in sorted(outcome.skipped.items()))
    return "; ".join(parts) or "no workflow files at this commit"
