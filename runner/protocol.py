"""The runner <-> controller contract: how a runner gets work and gives back what it did.

Written once, here; implemented twice: in-process (`controller.queue.InProcessPeer`, used by
`clarity up`'s built-in runner) and over HTTP (`runner.client.HttpPeer` against the controller's
`/api/v1/runner/...` routes, used by remote `clarity runner` agents). Plain data, stdlib only.

The life of one task on a runner:

1. `lease(runner, labels, wait_s)`: the runner asks for one task whose required labels are all
   among its own. The controller answers at once when a task is queued, or holds the call up to
   `wait_s` seconds (long poll) and answers None. A lease is exclusive: no other runner gets the
   same queue item while the lease lives. It lives until `expires_at`.
2. `heartbeat(lease_id)` every `LEASE_S / 3` seconds while the task runs: it extends the lease and
   returns whether the controller wants the task canceled (a user canceled the run). A runner
   whose lease is gone (`LeaseLost`) stops the task: it now belongs to somebody else.
3. `logs(lease_id, lines)`: batches of already-masked lines, each with a per-task sequence number
   starting at 1. Idempotent: a batch sent twice (a retry after a timeout) is stored once; lines
   are stored in sequence order whatever the arrival order.
4. `finish(lease_id, result)`: the TaskResult. Idempotent for the same lease. After it the lease
   is over; the controller stores outputs, decides retries and enqueues the next ready tasks.

A lease that expires (runner died, machine lost) is taken back by the controller's reaper: the
task is queued again (a new attempt) or, past its retry budget, ends as errored. Results and logs
from an expired lease are refused with `LeaseLost`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

from runner.spec import TaskResult, TaskSpec

PROTOCOL_VERSION = 1
LEASE_S = 30.0
"""How long a lease lives without a heartbeat."""


class LeaseLost(Exception):
    """The lease expired or was taken back: the runner must stop the task and drop its results."""


@dataclass(frozen=True)
class Lease:
    lease_id: str
    spec: TaskSpec
    expires_at: float  # unix seconds

    def to_json(self) -> dict[str, Any]:
        return {"lease_id": self.lease_id, "spec": self.spec.to_json(), "expires_at": self.expires_at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lease:
        return cls(data["lease_id"], TaskSpec.from_json(data["spec"]), float(data["expires_at"]))


@dataclass(frozen=True)
class Beat:
    """The controller's answer to a heartbeat."""

    expires_at: float
    cancel: bool = False


@dataclass(frozen=True)
class LogLine:
    seq: int  # 1, 2, 3, ... per task attempt
    ts: float
    line: str  # masked on the runner before it was sent


class Peer(Protocol):
    """The controller, as a runner sees it. Every method may raise LeaseLost (except lease)."""

    def lease(self, runner: str, labels: Sequence[str], wait_s: float) -> Lease | None: ...

    def heartbeat(self, lease_id: str) -> Beat: ...

    def logs(self, lease_id: str, lines: Sequence[LogLine]) -> None: ...

    def finish(self, lease_id: str, result: TaskResult) -> None: ...
