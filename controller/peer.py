"""`runner.protocol.Peer`, in-process: the built-in runner of `clarity up` and `clarity run`
talks to the queue and the scheduler directly, through the same contract remote runners use."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from controller import artifacts
from controller.engine import Scheduler
from controller.store.queue import Item, Queue
from runner.protocol import Beat, Lease, LogLine
from runner.client import unpack
from runner.spec import TaskResult


class Observer(Protocol):
    """Who counts leases and results (the API's Prometheus metrics)."""

    def leased(self, item: Item) -> None: ...
    def finished(self, result: TaskResult) -> None: ...


class InProcessPeer:
    def __init__(self, queue: Queue, scheduler: Scheduler, observer: Observer | None = None,
                 home: Path | None = None) -> None:
        """`home`: the controller's, where remote runners' artifacts are stored (see `get_artifacts`)."""
        self.queue, self.scheduler, self.observer, self.home = queue, scheduler, observer, home

    def get_artifacts(self, lease_id: str, ref: str, dest: Path) -> None:
        """Unpack the artifacts a remote runner uploaded (a `controller:` ref) into dest: a
        downstream task may land on the built-in runner. (No `put_artifacts`: the built-in
        runner's own artifacts stay where they are, on the controller's disk.)"""
        self.queue.check(lease_id)
        if self.home is None:
            raise LookupError(f"no artifacts store here for {ref}")
        path = artifacts.path(self.home, ref)
        if not path.is_file():
            raise LookupError(f"no artifacts {ref}")
        unpack(path.read_bytes(), dest)

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
