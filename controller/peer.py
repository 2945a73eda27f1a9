"""`runner.protocol.Peer`, in-process: the built-in runner of `clarity up` and `clarity run`
talks to the queue and the scheduler directly, through the same contract remote runners use."""

from __future__ import annotations

from typing import Protocol, Sequence

from controller.engine import Scheduler
from controller.store.queue import Item, Queue
from runner.protocol import Beat, Lease, LogLine
from runner.spec import TaskResult


class Observer(Protocol):
    """Who counts leases and results (the API's Prometheus metrics)."""

    def leased(self, item: Item) -> None: ...
    def finished(self, result: TaskResult) -> None: ...


class InProcessPeer:
    def __init__(self, queue: Queue, scheduler: Scheduler, observer: Observer | None = None) -> None:
        self.queue, self.scheduler, self.observer = queue, scheduler, observer

    def lease(self, runner: str, labels: Sequence[str], wait_s: float) -> Lease | None:
        item = self.queue.lease(runner, labels, wait_s)
        if item is None:
            return None
        self.scheduler.leased(item)
        if self.observer is not None:
            self.observer.leased(item)
        assert item.lease_id is not None and item.lease_expires_at is not None
        return Lease(item.lease_id, item.spec, item.lease_expires_at)

    def wake(self) -> None:
        """End waiting long polls now (the agent is stopping)."""
        self.queue.interrupt()

    def heartbeat(self, lease_id: str) -> Beat:
        return self.queue.heartbeat(lease_id)

    def logs(self, lease_id: str, lines: Sequence[LogLine]) -> None:
        self.scheduler.logged(self.queue.check(lease_id), lines)

    def finish(self, lease_id: str, result: TaskResult) -> None:
        item = self.queue.finish(lease_id, result)
        if item is not None:  # None: this lease's result is already in (a retried call)
            self.scheduler.finished(item, result)
            if self.observer is not None:
                self.observer.finished(result)
