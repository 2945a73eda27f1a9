"""The backend Protocol: the lifecycle verbs every container engine implements.

`runner.execute.execute()` drives a backend through these verbs for one `TaskSpec`; a backend never
decides outcomes, retries or masking. Implementations: `docker` (the default, over the docker SDK)
and `fake` (runs the task's argv as a host process, for fast scenario tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from runner.spec import TaskSpec

LABEL = "io.clarity"
"""Every object a backend creates carries this label (value "1"), plus io.clarity.run and
io.clarity.task, so `sweep()` can find leftovers of a crashed process."""


@dataclass(frozen=True)
class Exit:
    code: int
    oom_killed: bool = False


class BackendError(Exception):
    """Infrastructure failed (engine unreachable, image missing and not pullable, ...).

    The message is a sentence for the user; the task's outcome becomes ERRORED. `permanent`: trying
    again cannot help (an image that does not exist), so the task is not retried."""

    permanent = False


class Backend(Protocol):
    """A container engine, seen through the verbs one task needs.

    Lifecycle of one task: `prepare` -> `start` -> (`logs` in one thread, `wait` in another)
    -> `destroy`. `kill` may be called at any time from another thread (timeout, cancel).

    Mounts: `host_dir` (made by the caller) holds `workspace/` and `clarity/`; the backend makes
    them visible as `runner.spec.WORKSPACE_PATH` and `runner.spec.CLARITY_DIR` in the container.
    Files of `spec.files` have already been written under `host_dir/clarity` by the caller.

    Concurrency: one backend object serves many tasks at once from many threads; handles are
    independent. Idempotence: `destroy` is safe if `prepare` failed half-way and safe twice;
    `kill` is safe on a container that has already exited or was never started.
    """

    name: str

    def prepare(self, spec: TaskSpec, host_dir: Path) -> Any:
        """Create (not start) the container; return an opaque handle. Raises BackendError."""
        ...

    def start(self, handle: Any) -> None: ...

    def logs(self, handle: Any) -> Iterator[bytes]:
        """Merged stdout+stderr as raw chunks, following until the container exits."""
        ...

    def wait(self, handle: Any, timeout_s: float | None) -> Exit | None:
        """Block until exit, or return None once `timeout_s` has passed with it still running."""
        ...

    def kill(self, handle: Any) -> None: ...

    def destroy(self, handle: Any) -> None: ...

    def sweep(self) -> int:
        """Remove every leftover object carrying LABEL; return how many were removed."""
        ...
