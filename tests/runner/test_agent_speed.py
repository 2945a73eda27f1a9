"""The agent's latency-sensitive parts: log batches sent at once when idle, rate-limited past a
burst; per-task phase timings (CLARITY_RUNNER_TIMINGS) logged once per task."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Sequence

import pytest

from runner.agent import Agent, _LogSender
from runner.backends.fake import FakeBackend
from runner.execute import Timings
from runner.protocol import Beat, Lease, LogLine
from runner.spec import Outcome, TaskResult, TaskSpec
from runner.workspace import WorkspaceCache


class Peer:
    """A controller that hands out `specs` one by one and records what comes back."""

    def __init__(self, specs: Sequence[TaskSpec] = (), fail_logs: int = 0) -> None:
        self.specs = list(specs)
        self.batches: list[tuple[float, list[LogLine]]] = []
        self.finished: list[TaskResult] = []
        self.fail_logs = fail_logs
        self.lock = threading.Lock()
        self.all_finished = threading.Event()

    def lease(self, runner: str, labels: Sequence[str], wait_s: float) -> Lease | None:
        with self.lock:
            if not self.specs:
                time.sleep(min(wait_s, 0.05))
                return None
            spec = self.specs.pop(0)
        return Lease(f"lease-{spec.run_id}", spec, time.time() + 30)

    def heartbeat(self, lease_id: str) -> Beat:
        return Beat(time.time() + 30)

    def logs(self, lease_id: str, lines: Sequence[LogLine]) -> None:
        with self.lock:
            if self.fail_logs:
                self.fail_logs -= 1
                raise ConnectionError("controller away")
            self.batches.append((time.monotonic(), list(lines)))

    def finish(self, lease_id: str, result: TaskResult) -> None:
        with self.lock:
            self.finished.append(result)
            if not self.specs:
                self.all_finished.set()


def _seqs(peer: Peer) -> list[int]:
    return [line.seq for _, batch in peer.batches for line in batch]


def test_first_line_is_sent_at_once_not_after_the_flush_interval() -> None:
    peer = Peer()
    sender = _LogSender(peer, "lease-1", flush_s=10.0)  # a flush interval far longer than the test
    try:
        t0 = time.monotonic()
        sender("hello")
        deadline = time.monotonic() + 5
        while not peer.batches and time.monotonic() < deadline:
            time.sleep(0.005)
        assert peer.batches and peer.batches[0][0] - t0 < 1.0
        assert [line.line for line in peer.batches[0][1]] == ["hello"]
    finally:
        sender.close()
    assert _seqs(peer) == [1]


def test_past_a_burst_batches_go_once_per_flush_interval() -> None:
    peer = Peer()
    flush_s = 0.2
    sender = _LogSender(peer, "lease-1", flush_s=flush_s)
    t0 = time.monotonic()
    for i in range(200):  # a chatty task
        sender(f"line {i}")
        time.sleep(0.005)
    sender.close()
    elapsed = time.monotonic() - t0
    assert _seqs(peer) == list(range(1, 201))  # every line, in order, once
    # At most the burst plus one batch per flush interval (and the final one at close).
    assert len(peer.batches) <= _LogSender.BURST + elapsed / flush_s + 2


def test_lines_kept_while_the_controller_is_away() -> None:
    peer = Peer(fail_logs=2)
    sender = _LogSender(peer, "lease-1", flush_s=0.05)
    for i in range(5):
        sender(f"line {i}")
    time.sleep(0.3)
    sender.close()
    assert _seqs(peer) == [1, 2, 3, 4, 5]


def _spec(run_id: str, script: str) -> TaskSpec:
    return TaskSpec(run_id=run_id, task="t", image="-", argv=("sh", "-c", script), timeout_s=30)


def test_timings_one_line_per_task(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARITY_RUNNER_TIMINGS", "1")
    peer = Peer([_spec("1", "echo one"), _spec("2", "echo two; exit 3")])
    agent = Agent(peer, FakeBackend(), tmp_path / "work", WorkspaceCache(tmp_path / "c"), slots=1, poll_s=0.05)
    with caplog.at_level(logging.INFO, logger="runner.timings"):
        agent.start()
        assert peer.all_finished.wait(10)
        agent.stop()  # drains the deferred cleanups: their phases are in the lines
    lines = [r.getMessage() for r in caplog.records if r.name == "runner.timings"]
    assert [line.split()[1] for line in lines] == ["1/t", "2/t"]
    for line in lines:
        phases = dict(pair.split("=") for pair in line.split()[2:])
        assert {"stage", "prepare", "start", "run", "drain", "collect", "logs_close", "report", "remove",
                "rmtree", "total"} <= set(phases)
        assert all(float(v) >= 0 for v in phases.values())
    assert [r.outcome for r in peer.finished] == [Outcome.SUCCEEDED, Outcome.FAILED]


def test_timings_are_quiet_unless_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLARITY_RUNNER_TIMINGS", raising=False)
    peer = Peer([_spec("1", "true")])
    agent = Agent(peer, FakeBackend(), tmp_path / "work", WorkspaceCache(tmp_path / "c"), slots=1, poll_s=0.05)
    with caplog.at_level(logging.INFO):
        agent.start()
        assert peer.all_finished.wait(10)
        agent.stop()
    assert not [r for r in caplog.records if r.name == "runner.timings"]


def test_timings_wait_for_every_part() -> None:
    t = Timings("9/x")
    t.expect("report")
    t.expect("cleanup")
    t.add("a", 1.0)
    t.add("a", 2.0)
    t.done("cleanup")
    assert not t._emitted
    t.done("report")
    assert t._emitted and t.line() == "timings 9/x a=3.0"
