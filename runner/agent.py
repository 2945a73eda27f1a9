"""The runner agent loop: N slots, each leasing a task, running it, reporting it.

The same loop drains the queue in-process (`clarity up`, `clarity run`) and, over HTTP, on remote
build machines (`clarity runner`): it only knows a `runner.protocol.Peer`. Beside each task, a
heartbeat thread extends the lease and watches for a cancel; logs go out in batches, masked.

Artifacts: over HTTP the runner of a downstream task is often another machine than the upstream
one's, so a peer with `put_artifacts`/`get_artifacts` (`HttpPeer`) moves them through the
controller: a task's collected artifacts are uploaded before its result is reported (the result's
`artifacts_dir` is then the controller's ref, `controller:<run>/<task>`), and the `artifacts_in`
given by ref are downloaded into a local directory before the task starts. The in-process peer has
only `get_artifacts` (it reads the controller's store directly, for a task downstream of a remote
one): the built-in runner shares the controller's disk, so its own artifacts' paths work as they are.
A failed download errors the task (infrastructure: retried); a failed upload keeps the task's
outcome (it ran), reports no artifacts and says so in the task's log.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from runner.backends.base import Backend
from runner.execute import NOTE, Timings, execute
from runner.protocol import LEASE_S, Lease, LeaseLost, LogLine, Peer
from runner.spec import Outcome, TaskResult, TaskSpec
from runner.workspace import WorkspaceCache

log = logging.getLogger(__name__)

REF_PREFIX = "controller:"  # an artifacts ref: stored by the controller, downloaded by lease
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
REPORT_DELAYS_S = (0.0, *BACKOFF_S, *BACKOFF_S[-1:] * 6)  # ~80 s: a controller restart fits in it
WARN_EVERY_S = 10.0


class _LogSender:
    """Buffers a task's masked lines and sends them in batches, in order, numbered from 1.

    A line is sent as soon as it comes when the sender is idle (a task's first lines reach the
    controller at once, and a short task's lines are already there when it ends, so its result
    is not queued behind a last batch); what comes while a batch is on its way goes in the next.
    A burst of BURST batches goes at once; past that, one batch per `flush_s` at most, so a chatty
    task costs the controller no more calls than a fixed flush interval would."""

    BURST = 4

    def __init__(self, peer: Peer, lease_id: str, flush_s: float, timings: Timings | None = None,
                 t0: float = 0.0) -> None:
        self.peer, self.lease_id, self.flush_s = peer, lease_id, flush_s
        self.timings, self.t0 = timings, t0  # first_line, first_line_acked: ms from t0 (perf_counter)
        self.lock = threading.Lock()
        self.pending: list[LogLine] = []
        self.seq = 0
        self.closed = threading.Event()
        self.wake = threading.Event()  # lines are pending (or we are closing)
        self.warned = -WARN_EVERY_S
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"logs-{lease_id[:6]}")
        self.thread.start()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.seq += 1
            self.pending.append(LogLine(self.seq, time.time(), line))
            first = self.seq == 1
        if first and self.timings is not None:
            self.timings.since("first_line", self.t0)
        self.wake.set()

    def _send(self) -> bool:
        """Send what is pending; False when the controller could not take it (kept for later)."""
        with self.lock:
            batch = list(self.pending)
        if not batch:
            return True
        try:
            self.peer.logs(self.lease_id, batch)
        except LeaseLost:
            raise
        except Exception as e:  # the controller is away: keep the lines, try again later
            now = time.monotonic()
            if now - self.warned >= WARN_EVERY_S:  # once in a while, not at every flush
                self.warned = now
                log.warning("could not send %d log lines (kept, will retry): %s", len(batch), e)
            return False
        with self.lock:
            del self.pending[: len(batch)]
        if batch[0].seq == 1 and self.timings is not None:
            self.timings.since("first_line_acked", self.t0)
        return True

    def _loop(self) -> None:
        tokens, refilled = float(self.BURST), time.monotonic()
        while True:
            self.wake.wait()
            if self.closed.is_set():
                return  # close() sends the rest
            now = time.monotonic()
            tokens = min(float(self.BURST), tokens + (now - refilled) / self.flush_s)
            refilled = now
            if tokens < 1.0:  # past the burst: one batch per flush_s
                if self.closed.wait((1.0 - tokens) * self.flush_s):
                    return
                tokens, refilled = 1.0, time.monotonic()
            tokens -= 1.0
            self.wake.clear()  # lines added from here on wake the next round
            try:
                sent = self._send()
            except LeaseLost:
                return
            if not sent:  # controller away: retry after a pause, never spin
                self.wake.set()
                if self.closed.wait(self.flush_s):
                    return

    def close(self) -> None:
        self.closed.set()
        self.wake.set()
        self.thread.join()
        for delay in REPORT_DELAYS_S:  # as long as the result itself is retried: no lines lost first
            time.sleep(delay)
            try:
                self._send()
            except LeaseLost:
                return
            if not self.pending:
                return


@dataclass
class Agent:
    peer: Peer
    backend: Backend
    work_root: Path
    workspaces: WorkspaceCache
    name: str = "local"
    labels: Sequence[str] = ()
    slots: int = 2
    poll_s: float = 10.0  # long-poll wait per lease request
    heartbeat_s: float = LEASE_S / 3
    log_flush_s: float = 0.25
    _stop: threading.Event = field(default_factory=threading.Event)
    _abandon: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cancels: set[threading.Event] = field(default_factory=set)
    _threads: list[threading.Thread] = field(default_factory=list)
    _cleanups: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=2, thread_name_prefix="cleanup"))

    def start(self) -> None:
        for i in range(self.slots):
            t = threading.Thread(target=self._slot, name=f"slot-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._cancels)

    def stop(self, grace_s: float | None = None) -> None:
        """Take no new task; let the current ones finish for `grace_s` seconds (None: as long as
        they take). Past that, they are stopped and handed back unreported: their leases expire
        and the controller queues them again."""
        self._stop.set()
        wake = getattr(self.peer, "wake", None)  # an in-process peer can end a long poll at once
        if wake is not None:
            wake()
        deadline = None if grace_s is None else time.monotonic() + grace_s
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            log.warning("%d task(s) still running after %ss: stopping them; they will run again", self.running, grace_s)
            self.hand_back()
            for t in self._threads:
                t.join(60)
        self._cleanups.shutdown(wait=True)

    def hand_back(self) -> None:
        """Stop the running tasks now, unreported: their leases expire and they run again elsewhere.
        Safe from a signal handler, and while `stop` waits."""
        self._abandon.set()
        with self._lock:
            for cancel in self._cancels:
                cancel.set()

    def _slot(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                lease = self.peer.lease(self.name, list(self.labels), self.poll_s)
                failures = 0
            except Exception as e:  # controller away: back off, never spin
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                log.warning("lease failed (%s); retrying in %.1fs", e, delay)
                self._stop.wait(delay)
                continue
            if lease is not None:
                self._run(lease)  # even when stopping: a task leased is a task run and reported

    def _run(self, lease: Lease) -> None:
        cancel = threading.Event()
        with self._lock:
            self._cancels.add(cancel)
        try:
            self._run_with(lease, cancel)
        finally:
            with self._lock:
                self._cancels.discard(cancel)

    def _run_with(self, lease: Lease, cancel: threading.Event) -> None:
        t0 = time.perf_counter()
        timings = Timings(f"{lease.spec.run_id}/{lease.spec.task}")  # logged once the task is reported and cleaned up
        timings.expect("report")
        try:
            self._run_timed(lease, cancel, timings, t0)
        finally:
            timings.since("total", t0)
            timings.done("report")

    def _run_timed(self, lease: Lease, cancel: threading.Event, timings: Timings, t0: float) -> None:
        lost = threading.Event()
        done = threading.Event()
        sender = _LogSender(self.peer, lease.lease_id, self.log_flush_s, timings, t0)

        # Beat well inside the lease the controller granted, whatever it is.
        interval = min(self.heartbeat_s, max(0.2, (lease.expires_at - time.time()) / 3))

        def beat() -> None:
            while not done.wait(interval):
                try:
                    if self.peer.heartbeat(lease.lease_id).cancel:
                        cancel.set()
                except LeaseLost:
                    lost.set()
                    cancel.set()
                    return
                except Exception as e:  # keep running; the lease may still be extended later
                    log.warning("heartbeat failed: %s", e)

        watcher = threading.Thread(target=beat, daemon=True, name=f"beat-{lease.lease_id[:6]}")
        watcher.start()
        log.info("task %s/%s (attempt %s) started", lease.spec.run_id, lease.spec.task, lease.spec.attempt)
        fetched = self.work_root / "artifacts-in" / uuid.uuid4().hex
        try:
            result = self._execute(lease, cancel, sender, fetched, timings)
            if result.artifacts_dir and hasattr(self.peer, "put_artifacts"):
                with timings.phase("upload"):
                    result = self._upload(lease, result, sender)
        except LeaseLost:
            lost.set()
            result = TaskResult(Outcome.ERRORED, error="lease lost")  # dropped below
        except Exception as e:  # a runner bug: report it as infrastructure, keep the slot alive
            log.exception("task %s/%s crashed the runner", lease.spec.run_id, lease.spec.task)
            result = TaskResult(Outcome.ERRORED, started_at=time.time(), finished_at=time.time(),
                                error=f"the runner failed: {type(e).__name__}: {e}")
        finally:
            t_close = time.perf_counter()
            done.set()
            watcher.join()
            sender.close()
            shutil.rmtree(fetched, ignore_errors=True)
            timings.since("logs_close", t_close)
        if lost.is_set():
            log.warning("lease of %s/%s was lost; its result is dropped", lease.spec.run_id, lease.spec.task)
            return
        if self._abandon.is_set():  # handed back: the lease expires and the task is queued again
            return
        with timings.phase("report"):
            self._report(lease, result)

    def _execute(self, lease: Lease, cancel: threading.Event, sender: _LogSender, fetched: Path,
                 timings: Timings) -> TaskResult:
        spec = lease.spec
        if hasattr(self.peer, "get_artifacts"):
            started = time.time()
            try:
                with timings.phase("download"):
                    spec = self._download(lease, fetched)
            except LeaseLost:
                raise
            except Exception as e:  # infrastructure: the task is retried (here or elsewhere)
                log.warning("task %s/%s: artifacts download failed: %s", spec.run_id, spec.task, e)
                sender(f"{NOTE}could not download the upstream artifacts: {e}")
                return TaskResult(Outcome.ERRORED, started_at=started, finished_at=time.time(),
                                  error=f"could not download the upstream artifacts: {e}")
        return execute(spec, self.backend, work_root=self.work_root, workspaces=self.workspaces,
                       on_log=sender, cancel=cancel, defer=self._defer, timings=timings)

    def _download(self, lease: Lease, fetched: Path) -> TaskSpec:
        """The spec with each `controller:` artifacts ref replaced by a local directory holding
        the downloaded files."""
        get = getattr(self.peer, "get_artifacts")
        sources = []
        for i, art in enumerate(lease.spec.artifacts_in):
            if not art.source.startswith(REF_PREFIX):
                sources.append(art)
                continue
            dest = fetched / str(i)
            try:
                get(lease.lease_id, art.source, dest)
            except LeaseLost:
                raise
            except Exception as e:
                raise RuntimeError(f"task {art.task!r} ({art.source}): {e}") from e
            sources.append(replace(art, source=str(dest)))
        return replace(lease.spec, artifacts_in=tuple(sources))

    def _upload(self, lease: Lease, result: TaskResult, sender: _LogSender) -> TaskResult:
        """The result with its artifacts uploaded: `artifacts_dir` is the controller's ref. A failed
        upload keeps the task's outcome (it ran); its artifacts are then missing, and its log says so."""
        local = Path(result.artifacts_dir or "")
        try:
            ref: str = getattr(self.peer, "put_artifacts")(lease.lease_id, local)
        except LeaseLost:
            raise
        except Exception as e:
            log.warning("task %s/%s: artifacts upload failed: %s", lease.spec.run_id, lease.spec.task, e)
            sender(f"{NOTE}the artifacts could not be uploaded to the controller; downstream tasks "
                   f"will not find them: {e}")
            return replace(result, artifacts_dir=None)
        shutil.rmtree(local, ignore_errors=True)
        return replace(result, artifacts_dir=ref)

    def _defer(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.submit(cleanup)  # containers are removed beside the next task, not before it

    def _report(self, lease: Lease, result: TaskResult) -> None:
        for delay in REPORT_DELAYS_S:
            if delay:
                time.sleep(delay)
            try:
                self.peer.finish(lease.lease_id, result)
                log.info("task %s/%s %s", lease.spec.run_id, lease.spec.task, result.outcome.value)
                return
            except LeaseLost:
                log.warning("lease of %s/%s was lost before its result was in", lease.spec.run_id, lease.spec.task)
                return
            except Exception as e:
                log.warning("could not report %s/%s: %s", lease.spec.run_id, lease.spec.task, e)
        log.error("gave up reporting %s/%s", lease.spec.run_id, lease.spec.task)
