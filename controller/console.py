"""What `clarity run` shows: live progress, log lines prefixed by task, a summary table.

On a terminal: colours and a status line redrawn under the logs. Elsewhere (CI logs, pipes):
plain lines only, one per event, nothing redrawn.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import IO, Callable, Sequence, cast

from runner.spec import Outcome, TaskResult

_COLOURS = (36, 35, 34, 33, 32, 96, 95, 94, 93, 92)
_STATE_COLOUR = {
    "succeeded": 32, "failed": 31, "errored": 31, "timed_out": 31, "canceled": 33, "skipped": 90,
    "running": 36, "pending": 90, "retrying": 33,
}
_MARK = {
    "succeeded": "✓", "failed": "✗", "errored": "!", "timed_out": "⏱", "canceled": "⊘", "skipped": "-",
    "running": "●", "pending": "○", "retrying": "↻",
}


_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """A task's line made safe for a terminal: control characters (escape sequences that could
    retitle, clear or rewrite the user's screen) are shown as \\xNN; tabs are kept."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class GuardedOutput:
    """`clarity run`'s output, surviving its reader going away (`clarity run | head`): the first
    write to a closed pipe calls `on_close` once (the run is canceled: nobody watches it) and the
    stream is pointed at /dev/null, so nothing after it (nor Python's flush at exit) fails."""

    def __init__(self, out: IO[str], on_close: Callable[[], None]) -> None:
        self.out, self.on_close = out, on_close
        self.closed = False
        self._lock = threading.Lock()

    def as_io(self) -> IO[str]:
        return cast(IO[str], self)

    def _gone(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # not a file (a test's buffer): nothing to point
            pass
        self.on_close()

    def write(self, text: str) -> int:
        if not self.closed:
            try:
                self.out.write(text)
            except (BrokenPipeError, ConnectionResetError):
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.closed:
            try:
                self.out.flush()
            except (BrokenPipeError, ConnectionResetError):
                self._gone()

    def isatty(self) -> bool:
        return self.out.isatty()


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class Console:
    """A `controller.engine.Listener` writing to a stream; thread-safe."""

    def __init__(self, out: IO[str], tasks: Sequence[str], *, tty: bool, workflow: str = "",
                 shown: Sequence[str] = ()) -> None:
        """`tasks`: the run's own (counted in the status line); `shown`: other names whose lines
        may appear, the tasks of sub-runs as `TASK/SUBTASK`: the prefix column fits them all."""
        self.out, self.tty, self.workflow = out, tty, workflow
        self.width = max((len(t) for t in [*tasks, *shown]), default=4)
        self.last: dict[str, str] = {}  # each task's last line: a reason just shown is not repeated
        self.colour = {t: _COLOURS[i % len(_COLOURS)] for i, t in enumerate(tasks)}
        self.state = {t: "pending" for t in tasks}
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()
        self.status_shown = False
        self._stop = threading.Event()
        if tty:  # keep the running tasks' clocks moving between log lines
            threading.Thread(target=self._tick, daemon=True, name="console-tick").start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self.lock:
                if self.status_shown:
                    self.out.write("\r\x1b[K" + self._status())
                    self.out.flush()

    def _c(self, code: int, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.tty else text

    def _write(self, text: str) -> None:
        if self.tty and self.status_shown:
            self.out.write("\r\x1b[K")
        self.out.write(text + "\n")
        if self.tty:
            self.out.write(self._status())
            self.status_shown = True
        self.out.flush()

    def _status(self) -> str:
        now = time.monotonic()
        parts = []
        for task, state in self.state.items():
            if state in ("pending", "skipped"):
                continue
            extra = f" {fmt_duration(now - self.started[task])}" if state == "running" and task in self.started else ""
            parts.append(self._c(_STATE_COLOUR[state], f"{_MARK[state]} {task}{extra}"))
        done = sum(1 for s in self.state.values() if s not in ("pending", "running", "retrying"))
        return f"{self._c(1, self.workflow)} [{done}/{len(self.state)}] " + "  ".join(parts)

    def _prefix(self, task: str) -> str:
        self.width = max(self.width, len(task))  # a name not foreseen: the lines after it align again
        return self._c(self.colour.get(task, 0), task.ljust(self.width)) + " │ "

    def banner(self, text: str) -> None:
        with self.lock:
            self._write(self._c(1, text))

    def task_started(self, task: str, attempt: int) -> None:
        with self.lock:
            self.state[task] = "running"
            self.started[task] = time.monotonic()
            again = f" (attempt {attempt})" if attempt > 1 else ""
            self._write(self._prefix(task) + self._c(36, f"▶ started{again}"))

    def task_log(self, task: str, line: str) -> None:
        with self.lock:
            self.last[task] = line
            self._write(self._prefix(task) + printable(line))

    def task_finished(self, task: str, result: TaskResult, will_retry: bool) -> None:
        with self.lock:
            state = "retrying" if will_retry else result.outcome.value
            self.state[task] = state
            words = result.outcome.value.replace("_", " ")
            error = (result.error or "").removeprefix("skipped: ")
            detail = f" ({error})" if error and result.outcome is not Outcome.SUCCEEDED else ""
            dur = f" in {fmt_duration(result.duration_s)}" if result.duration_s is not None else ""
            if error.startswith(words):  # "timed out after 2s" says it all
                words, detail, dur = error, "", ""
            if result.exit_code not in (None, 0) and not result.error:
                detail = f" (exit code {result.exit_code})"
            if error and self.last.pop(task, "") in (f"[clarity] {error}", f"error: {error}"):
                detail = ""  # the task's last line says why already
            tail = ", retrying" if will_retry else ""
            self._write(self._prefix(task) + self._c(_STATE_COLOUR[state], f"{_MARK[state]} {words}{dur}{detail}{tail}"))

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            if self.tty and self.status_shown:
                self.out.write("\r\x1b[K")
                self.out.flush()
                self.status_shown = False


def summary_table(rows: Sequence[tuple[str, str, float | None, str]], tty: bool) -> str:
    """rows: (task, state, duration, detail) -> an aligned table."""
    head = ("TASK", "RESULT", "TIME", "DETAIL")
    body = [(t, s.replace("_", " "), fmt_duration(d), detail) for t, s, d, detail in rows]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(3)]
    lines = []
    for i, row in enumerate([head, *body]):
        cells = [row[j].ljust(widths[j]) for j in range(3)]
        if tty and i > 0:
            cells[1] = f"\x1b[{_STATE_COLOUR.get(rows[i - 1][1], 0)}m{cells[1]}\x1b[0m"
        lines.append(("  ".join(cells) + "  " + row[3]).rstrip())
    return "\n".join(lines)
