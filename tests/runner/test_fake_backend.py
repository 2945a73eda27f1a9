from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from runner.backends.base import BackendError
from runner.backends.fake import FakeBackend, FakeHandle, rewriter
from runner.execute import execute
from runner.spec import Outcome, TaskResult, TaskSpec
from runner.workspace import WorkspaceCache


def test_rewriter_maps_container_paths_only() -> None:
    rw = rewriter(Path("/h"))
    assert rw("/workspace") == "/h/workspace"
    assert rw("cd /workspace/src && cat /clarity/x") == "cd /h/workspace/src && cat /h/clarity/x"
    assert rw("/workspaces /x/workspace a/clarity /clarity.d") == "/workspaces /x/workspace a/clarity /clarity.d"


def test_signal_exit_is_128_plus_n(tmp_path: Path) -> None:
    (tmp_path / "workspace").mkdir()
    be = FakeBackend()
    h = be.prepare(TaskSpec(run_id="r", task="t", image="-", argv=("sh", "-c", "kill -TERM $$")), tmp_path)
    be.start(h)
    assert list(be.logs(h)) == []
    exit = be.wait(h, 5)
    assert exit is not None and exit.code == 143
    be.destroy(h)
    be.destroy(h)
    assert be.sweep() == 0


def test_timeout_kills_the_whole_process_group(make_spec: Callable[..., TaskSpec], tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    t0 = time.monotonic()
    r = execute(
        make_spec(f"(sleep 1; touch {marker}) & sleep 30", timeout_s=0.3),
        FakeBackend(),
        work_root=tmp_path / "work",
        workspaces=WorkspaceCache(tmp_path / "cache"),
        on_log=lambda line: None,
    )
    assert r.outcome is Outcome.TIMED_OUT and time.monotonic() - t0 < 5
    time.sleep(1.3)
    assert not marker.exists()


class _Broken(FakeBackend):
    def __init__(self, fail: str) -> None:
        self.fail = fail

    def prepare(self, spec: TaskSpec, host_dir: Path) -> FakeHandle:
        if self.fail == "prepare":
            raise BackendError("the engine is on fire")
        return super().prepare(spec, host_dir)

    def destroy(self, handle: FakeHandle | None) -> None:
        super().destroy(handle)
        if self.fail == "destroy":
            raise RuntimeError("cannot remove")


def test_backend_error_is_errored_and_destroy_failure_is_shielded(
    make_spec: Callable[..., TaskSpec], tmp_path: Path
) -> None:
    def run(backend: FakeBackend) -> tuple[TaskResult, list[str]]:
        lines: list[str] = []
        r = execute(make_spec("echo ok"), backend, work_root=tmp_path / "work",
                    workspaces=WorkspaceCache(tmp_path / "cache"), on_log=lines.append)
        return r, lines

    r, lines = run(_Broken("prepare"))
    assert r.outcome is Outcome.ERRORED and r.error == "the engine is on fire"
    r, lines = run(_Broken("destroy"))
    assert r.outcome is Outcome.SUCCEEDED
    assert lines == ["ok", "[clarity] could not remove the container: cannot remove"]
    assert list((tmp_path / "work").iterdir()) == []
