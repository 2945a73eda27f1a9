"""Run one TaskSpec on a backend, from an empty directory to a TaskResult.

Host layout of one task (`host_dir`, a fresh temporary directory under `work_root`, removed at
the end): `workspace/` (mounted at /workspace: the checkout, plus upstream artifacts) and
`clarity/` (mounted at /clarity: `spec.files`, and the `output` / `outputs` files, which are
created empty and world-writable so a non-root image user can write them).

Decisions:
- Only masked lines ever reach `on_log`; the runner's own notes are prefixed `[clarity] ` and
  masked as well. `output`, `outputs` and error sentences are masked too.
- `$CLARITY_OUTPUT`: JSON if it parses, else the stripped text; empty -> None.
  `$CLARITY_OUTPUTS`: `key=value` lines, and GitHub-style `key<<DELIM` ... `DELIM` blocks for
  multi-line values; blank lines ignored; a malformed line becomes a note, not a failure.
  Both are read without following symlinks and capped at OUTPUT_MAX_BYTES.
- Artifacts are collected whenever the container ran (failed test reports matter most), into
  `work_root/artifacts/<run_id>/<task>/` with workspace-relative paths kept; the directory is
  replaced on a retry. A declared artifact that matches nothing, or a path that escapes the
  workspace, is a note in the log, NOT a failure: a missing report must not hide the real
  outcome of the task. Symlinks are copied as symlinks, never followed.
- Timeout (`spec.timeout_s`) counts from container start; a cancel set before start skips it.
- `destroy` runs on every path and its errors are logged, never raised.

Phase timings: pass a `Timings` and execute records how long each phase of the task took (stage,
the backend's own steps, run, log drain, collect, and the cleanup), in milliseconds. The agent
logs them, one line per task, when CLARITY_RUNNER_TIMINGS=1 (or `runner.timings` logs at DEBUG).
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from runner.backends.base import Backend, BackendError, Exit
from runner.masking import LineSplitter, Masker
from runner.spec import CLARITY_DIR, WORKSPACE_PATH, Outcome, TaskResult, TaskSpec
from runner.workspace import WorkspaceCache, WorkspaceError

log = logging.getLogger(__name__)

WAIT_SLICE_S = 0.2
KILL_GRACE_S = 10.0
LOG_DRAIN_S = 2.0
OUTPUT_MAX_BYTES = 1 << 20
NOTE = "[clarity] "


class StageError(Exception):
    """The host side of the task could not be prepared; a sentence for the user."""


TIMINGS_ENV = "CLARITY_RUNNER_TIMINGS"
timings_log = logging.getLogger("runner.timings")


class Timings:
    """Where one task's time went: phase name -> milliseconds, filled from several threads (the
    slot, the backend's wait thread, the deferred cleanup). `expect(part)` / `done(part)` mark the
    parts still to come; once every expected part is done, the line is logged (if enabled)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.phases: dict[str, float] = {}
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._emitted = False

    @staticmethod
    def asked() -> bool:
        """CLARITY_RUNNER_TIMINGS=1: log the lines at INFO."""
        return os.environ.get(TIMINGS_ENV, "") not in ("", "0")

    @classmethod
    def enabled(cls) -> bool:
        return cls.asked() or timings_log.isEnabledFor(logging.DEBUG)

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            self.phases[name] = self.phases.get(name, 0.0) + ms

    def since(self, name: str, t0: float) -> None:
        """Record `name` as the time from perf_counter() value `t0` to now."""
        self.add(name, (time.perf_counter() - t0) * 1000)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.since(name, t0)

    def merge(self, phases: dict[str, float] | None) -> None:
        for name, ms in dict(phases or {}).items():
            self.add(name, ms)

    def expect(self, part: str) -> None:
        with self._lock:
            self._pending.add(part)

    def done(self, part: str) -> None:
        with self._lock:
            self._pending.discard(part)
            ready = not self._pending and not self._emitted
            if ready:
                self._emitted = True
        if ready and self.enabled():
            timings_log.log(logging.INFO if self.asked() else logging.DEBUG, "%s", self.line())

    def line(self) -> str:
        with self._lock:
            parts = " ".join(f"{k}={v:.1f}" for k, v in self.phases.items())
        return f"timings {self.label} {parts}"


@contextmanager
def _phase(timings: Timings | None, name: str) -> Iterator[None]:
    if timings is None:
        yield
    else:
        with timings.phase(name):
            yield


def execute(
    spec: TaskSpec,
    backend: Backend,
    *,
    work_root: Path,
    workspaces: WorkspaceCache,
    on_log: Callable[[str], None],
    cancel: threading.Event | None = None,
    defer: Callable[[Callable[[], None]], None] | None = None,
    timings: Timings | None = None,
) -> TaskResult:
    """Run one task. Cleanup (remove the container and the host directory) happens on every path;
    with `defer`, it is handed to that callable (e.g. a pool the caller drains before it exits)
    so the next task need not wait for it."""
    started_at = time.time()
    out = _Log(on_log, Masker(spec.mask))

    def result(outcome: Outcome, **kw: Any) -> TaskResult:
        if kw.get("error"):
            kw["error"] = out.masker.mask(kw["error"])
            if outcome is not Outcome.FAILED or kw.get("oom_killed"):
                out.note(kw["error"])
        return TaskResult(outcome, started_at=started_at, finished_at=time.time(), **kw)

    work_root.mkdir(parents=True, exist_ok=True)
    host_dir = Path(tempfile.mkdtemp(prefix="task-", dir=work_root))
    handle: Any = None
    pump: threading.Thread | None = None
    try:
        try:
            with _phase(timings, "stage"):
                spec = _stage(spec, host_dir, workspaces)
            if cancel is not None and cancel.is_set():
                return result(Outcome.CANCELED, error="canceled before it started")
            with _phase(timings, "prepare"):
                handle = backend.prepare(spec, host_dir)
            with _phase(timings, "start"):
                backend.start(handle)
            running = time.perf_counter()
        except BackendError as e:
            return result(Outcome.ERRORED, error=str(e), retryable=not e.permanent)
        except (WorkspaceError, StageError) as e:
            return result(Outcome.ERRORED, error=str(e))
        except OSError as e:
            return result(Outcome.ERRORED, error=f"could not prepare the task's files: {e}")
        except Exception as e:  # a backend bug or an SDK error it did not wrap: still infrastructure
            log.exception("backend %s failed to start %s/%s", backend.name, spec.run_id, spec.task)
            return result(Outcome.ERRORED, error=f"the {backend.name} backend failed: {e}")

        pump = threading.Thread(target=_pump_logs, args=(backend, handle, out, timings, running), daemon=True)
        pump.start()
        try:
            exit, stopped = _supervise(spec, backend, handle, cancel)
        except BackendError as e:
            return result(Outcome.ERRORED, error=str(e))
        except Exception as e:
            log.exception("backend %s failed while running %s/%s", backend.name, spec.run_id, spec.task)
            return result(Outcome.ERRORED, error=f"the {backend.name} backend failed: {e}")
        if timings is not None:
            timings.since("run", running)
        with _phase(timings, "drain"):
            pump.join(LOG_DRAIN_S)

        with _phase(timings, "collect"):
            clarity = host_dir / "clarity"
            collected = {
                "output": _parse_output(_read_capped(clarity / "output", out), out.masker),
                "outputs": _parse_outputs(_read_capped(clarity / "outputs", out), out),
                "artifacts_dir": _collect_artifacts(spec, host_dir / "workspace", work_root, out),
            }
        if stopped is Outcome.TIMED_OUT:
            return result(stopped, error=f"timed out after {spec.timeout_s:g}s", **collected)
        if stopped is Outcome.CANCELED:
            return result(stopped, error="canceled", **collected)
        assert exit is not None
        if exit.code == 0:
            if exit.oom_killed:
                out.note("a process of the task was killed: out of memory (the task itself succeeded)")
            return result(Outcome.SUCCEEDED, exit_code=0, **collected)
        if exit.oom_killed:
            return result(Outcome.FAILED, exit_code=exit.code, oom_killed=True,
                          error=_oom_sentence(spec), **collected)
        return result(Outcome.FAILED, exit_code=exit.code, **collected)
    finally:
        if timings is not None:
            timings.expect("cleanup")
        cleanup = functools.partial(_cleanup, spec, backend, handle, pump, host_dir, out, timings)
        if defer is None:
            cleanup()
        else:
            defer(cleanup)


def _cleanup(spec: TaskSpec, backend: Backend, handle: Any, pump: threading.Thread | None,
             host_dir: Path, out: _Log, timings: Timings | None = None) -> None:
    try:
        if handle is not None:
            try:
                with _phase(timings, "remove"):
                    backend.destroy(handle)
            except Exception as e:  # shielded: cleanup trouble never changes the outcome
                log.exception("destroy failed for %s/%s", spec.run_id, spec.task)
                out.note(f"could not remove the container: {e}")
        if pump is not None:
            pump.join(LOG_DRAIN_S)
        with _phase(timings, "rmtree"):
            shutil.rmtree(host_dir, ignore_errors=True)
        if host_dir.exists():
            log.warning("could not remove %s", host_dir)
    finally:
        if timings is not None:
            timings.merge(getattr(handle, "timings", None))  # the backend's own steps
            timings.done("cleanup")


class _Log:
    """Masks, serialises and shields the caller's on_log."""

    def __init__(self, on_log: Callable[[str], None], masker: Masker) -> None:
        self.masker = masker
        self._on_log = on_log
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        masked = self.masker.mask(text)
        with self._lock:
            try:
                self._on_log(masked)
            except Exception:
                log.exception("on_log failed")

    def note(self, text: str) -> None:
        self.line(NOTE + text)


def _stage(spec: TaskSpec, host_dir: Path, workspaces: WorkspaceCache) -> TaskSpec:
    """Fill host_dir; return the spec with the output variables set."""
    ws = host_dir / "workspace"
    clarity = host_dir / "clarity"
    ws.mkdir()
    clarity.mkdir()
    os.chmod(clarity, 0o777)
    if spec.workspace is not None:
        workspaces.checkout(spec.workspace, ws)
    for art in spec.artifacts_in:
        if not Path(art.source).is_dir():
            raise StageError(f"the artifacts of task {art.task!r} are missing (no directory {art.source})")
        shutil.copytree(art.source, ws, symlinks=True, dirs_exist_ok=True)
    for f in spec.files:
        path = PurePosixPath(f.path)
        rel = path.relative_to(CLARITY_DIR) if path.is_relative_to(CLARITY_DIR) else None
        if rel is None or not rel.parts or ".." in rel.parts:
            raise StageError(f"file {f.path} must be inside {CLARITY_DIR}")
        target = clarity / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content)
        os.chmod(target, f.mode)
    for name in ("output", "outputs"):
        if not (clarity / name).exists():
            (clarity / name).touch()
            os.chmod(clarity / name, 0o666)
    env = {
        "CLARITY_OUTPUT": f"{CLARITY_DIR}/output",
        "CLARITY_OUTPUTS": f"{CLARITY_DIR}/outputs",
        **spec.env,
    }
    return dataclasses.replace(spec, env=env)


def _supervise(
    spec: TaskSpec, backend: Backend, handle: Any, cancel: threading.Event | None
) -> tuple[Exit | None, Outcome | None]:
    """Wait in short slices; return (exit, None) or (None, TIMED_OUT | CANCELED) after a kill."""
    deadline = time.monotonic() + spec.timeout_s
    while True:
        remaining = deadline - time.monotonic()
        exit = backend.wait(handle, max(0.0, min(WAIT_SLICE_S, remaining)))
        if exit is not None:
            return exit, None
        if cancel is not None and cancel.is_set():
            stopped = Outcome.CANCELED
            break
        if time.monotonic() >= deadline:
            stopped = Outcome.TIMED_OUT
            break
    backend.kill(handle)
    backend.wait(handle, KILL_GRACE_S)  # lets the log stream end before we read files
    return None, stopped


def _pump_logs(backend: Backend, handle: Any, out: _Log, timings: Timings | None = None,
               running: float | None = None) -> None:
    splitter = LineSplitter()
    first = timings is not None and running is not None
    try:
        for chunk in backend.logs(handle):
            if first:
                first = False
                assert timings is not None and running is not None
                timings.since("first_output", running)
            for line in splitter.feed(chunk):
                out.line(line)
    except Exception as e:  # the stream broke (container removed, daemon gone): keep what we have
        for line in splitter.flush():
            out.line(line)
        out.note(f"the log stream was interrupted: {e}")
        return
    for line in splitter.flush():
        out.line(line)


def _oom_sentence(spec: TaskSpec) -> str:
    limit = spec.limits.memory_bytes
    if limit is None:
        return "killed: out of memory"
    return f"killed: out of memory (limit {limit / (1 << 20):g} MiB)"


# -- outputs ---------------------------------------------------------------------------------


def _read_capped(path: Path, out: _Log) -> str:
    """The file's text; never follows a symlink the task may have planted (host files!)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return ""
    except OSError:
        out.note(f"${_var(path)} is not a regular file; ignored")
        return ""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            out.note(f"${_var(path)} is not a regular file; ignored")
            return ""
        data = f.read(OUTPUT_MAX_BYTES + 1)
    if len(data) > OUTPUT_MAX_BYTES:
        out.note(f"${_var(path)} is larger than {OUTPUT_MAX_BYTES} bytes; truncated")
        data = data[:OUTPUT_MAX_BYTES]
    return data.decode("utf-8", errors="replace")


def _var(path: Path) -> str:
    return "CLARITY_OUTPUTS" if path.name == "outputs" else "CLARITY_OUTPUT"


def _parse_output(text: str, masker: Masker) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return masker.mask(text)
    return masker.mask_value(value)


_HEREDOC = re.compile(r"^([^=<\s][^=<]*)<<(\S+)$")


def _parse_outputs(text: str, out: _Log) -> dict[str, str]:
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        n, line = i + 1, lines[i]
        i += 1
        if not line.strip():
            continue
        heredoc = _HEREDOC.match(line)
        if heredoc:
            key, delim = heredoc.group(1).strip(), heredoc.group(2)
            try:
                end = lines.index(delim, i)
            except ValueError:
                out.note(f"$CLARITY_OUTPUTS line {n}: no closing {delim!r} for {key!r}; ignored")
                continue
            values[key] = out.masker.mask("\n".join(lines[i:end]))
            i = end + 1
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            out.note(f"$CLARITY_OUTPUTS line {n} is not key=value; ignored")
            continue
        values[key.strip()] = out.masker.mask(value)
    return values


# -- artifacts -------------------------------------------------------------------------------


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _component(name: str) -> str:
    safe = _UNSAFE.sub("_", name)
    return "_" if safe in ("", ".", "..") else safe


def _collect_artifacts(spec: TaskSpec, ws: Path, work_root: Path, out: _Log) -> str | None:
    if not spec.artifacts:
        return None
    dest = work_root / "artifacts" / _component(spec.run_id) / _component(spec.task)
    if dest.exists():
        shutil.rmtree(dest)  # a retry replaces the previous attempt's files
    dest.mkdir(parents=True)
    ws_real = ws.resolve()
    for pattern in spec.artifacts:
        if pattern == WORKSPACE_PATH or pattern.startswith(WORKSPACE_PATH + "/"):
            pattern = pattern[len(WORKSPACE_PATH) :].lstrip("/") or "."
        pure = PurePosixPath(pattern)
        if pure.is_absolute() or ".." in pure.parts:
            out.note(f"artifact {pattern!r} is outside the workspace; not collected")
            continue
        if glob.has_magic(pattern):
            matches = sorted(ws.glob(pattern))
        else:
            matches = [ws / pure] if os.path.lexists(ws / pure) else []
        if not matches:
            out.note(f"artifact {pattern!r} matched nothing; not collected")
            continue
        for match in matches:
            # A symlinked directory on the way could lead out of the workspace (to host files).
            if not (match if match == ws else match.parent).resolve().is_relative_to(ws_real):
                out.note(f"artifact {str(match.relative_to(ws))!r} is outside the workspace; not collected")
                continue
            try:
                _copy_one(match, dest / match.relative_to(ws))
            except (OSError, shutil.Error) as e:
                out.note(f"artifact {str(match.relative_to(ws))!r} could not be collected: {e}")
    return str(dest)


def _copy_one(src: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        if not os.path.lexists(target):
            os.symlink(os.readlink(src), target)
    elif src.is_dir():
        shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
    elif src.is_file():
        shutil.copy2(src, target, follow_symlinks=False)
