"""`Loop`: a background thread calling `tick` every interval until stopped; the controller's
periodic work (lease reaper, schedules, file watching, plugin triggers, polling, artifact
retention) each runs in one."""

from __future__ import annotations

import threading
from typing import Callable

import structlog

log = structlog.get_logger("clarity.loop")


class Loop:
    """Call `tick` every `interval` seconds (a number, or a function giving each wait: jitter) in a
    daemon thread until stopped; a failing tick is logged with `failed` and the loop goes on."""

    def __init__(self, name: str, interval: float | Callable[[], float], tick: Callable[[], object], *,
                 failed: str = "loop tick failed") -> None:
        self.name, self.tick, self.failed = name, tick, failed
        self._wait = interval if callable(interval) else (lambda: interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def stopping(self) -> bool:
        """Asked to stop: a long tick may end early."""
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._wait()):
            try:
                self.tick()
            except Exception:  # the database went away for a moment, a bug in one pass: next tick
                log.exception(self.failed, loop=self.name)
