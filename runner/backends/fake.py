"""A backend that runs the task's argv as a HOST process, for fast scenario tests without Docker.

This is NOT a sandbox: the process runs as the runner's user with the host's file system and
network; the image, limits and network mode are ignored. Never point it at untrusted specs.

Container paths are mapped onto `host_dir`: every `/workspace...` and `/clarity...` path found in
argv items, env values and the workdir is rewritten (wherever it appears in the string, so
`sh -c "cd /workspace && ..."` works). File contents (e.g. scripts under /clarity) are not
rewritten: scripts should use $CLARITY_OUTPUT and relative paths. PATH and HOME are inherited
from the runner unless the spec sets them, so host tools are found.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from runner.backends.base import BackendError, Exit
from runner.spec import CLARITY_DIR, WORKSPACE_PATH, TaskSpec

_INHERITED = ("PATH", "HOME", "LANG", "TMPDIR")


@dataclass
class FakeHandle:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    proc: subprocess.Popen[bytes] | None = None
    streaming: bool = False  # logs() owns (and closes) the pipe once it has begun


def rewriter(host_dir: Path) -> Callable[[str], str]:
    """Return a function mapping container paths in a string onto host_dir."""
    targets = {WORKSPACE_PATH: str(host_dir / "workspace"), CLARITY_DIR: str(host_dir / "clarity")}
    pattern = re.compile(
        r"(?<![\w.\-/])(" + "|".join(re.escape(p) for p in targets) + r")(?=/|$|[^\w.\-])"
    )
    return lambda s: pattern.sub(lambda m: targets[m.group(1)], s)


class FakeBackend:
    name = "fake"

    def prepare(self, spec: TaskSpec, host_dir: Path) -> FakeHandle:
        rw = rewriter(host_dir)
        env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        env.update({k: rw(v) for k, v in spec.env.items()})
        if not spec.argv:
            raise BackendError("the fake backend needs an argv (it has no image default command)")
        return FakeHandle(argv=[rw(a) for a in spec.argv], env=env, cwd=rw(spec.workdir))

    def start(self, handle: FakeHandle) -> None:
        try:
            handle.proc = subprocess.Popen(
                handle.argv,
                cwd=handle.cwd,
                env=handle.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group, so kill() reaches grandchildren
            )
        except OSError as e:
            raise BackendError(f"could not start {handle.argv[0]!r}: {e}") from e

    def logs(self, handle: FakeHandle) -> Iterator[bytes]:
        assert handle.proc is not None and handle.proc.stdout is not None
        handle.streaming = True
        stdout = handle.proc.stdout
        try:
            while chunk := os.read(stdout.fileno(), 65536):
                yield chunk
        finally:
            stdout.close()

    def wait(self, handle: FakeHandle, timeout_s: float | None) -> Exit | None:
        assert handle.proc is not None
        try:
            code = handle.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
        return Exit(128 - code if code < 0 else code)  # killed by signal N: 128+N, as in Docker

    def kill(self, handle: FakeHandle) -> None:
        if handle.proc is None:
            return
        try:
            os.killpg(handle.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def destroy(self, handle: FakeHandle | None) -> None:
        if handle is None or handle.proc is None:
            return
        self.kill(handle)  # also reaps children left behind by an exited leader
        handle.proc.wait()
        if handle.proc.stdout is not None and not handle.streaming:
            handle.proc.stdout.close()

    def sweep(self) -> int:
        return 0  # processes die with their group; nothing outlives the runner process
