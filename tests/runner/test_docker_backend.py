"""What only the real engine can show: isolation, limits, images, sweep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from runner.backends.base import LABEL, Backend
from runner.execute import execute
from runner.spec import Limits, Outcome, TaskSpec
from runner.workspace import WorkspaceCache

if TYPE_CHECKING:
    from tests.runner.conftest import Run

pytestmark = pytest.mark.docker

Spec = Callable[..., TaskSpec]


@pytest.fixture
def run_docker(docker_backend: Backend, work_root: Path, workspaces: WorkspaceCache) -> Callable[[TaskSpec], Run]:
    from tests.runner.conftest import Run

    def run(spec: TaskSpec) -> Run:
        lines: list[str] = []
        result = execute(spec, docker_backend, work_root=work_root, workspaces=workspaces, on_log=lines.append)
        return Run(result, lines)

    return run


def test_oom_is_a_failure_with_a_sentence(run_docker: Callable[[TaskSpec], Run], make_spec: Spec) -> None:
    r = run_docker(make_spec("head -c 200m /dev/zero | tail", limits=Limits(memory_bytes=24 << 20)))
    assert r.result.outcome is Outcome.FAILED and r.result.oom_killed
    assert r.result.exit_code == 137
    assert r.result.error == "killed: out of memory (limit 24 MiB)"
    assert r.lines[-1] == "[clarity] killed: out of memory (limit 24 MiB)"


def test_network_none_has_only_loopback(run_docker: Callable[[TaskSpec], Run], make_spec: Spec) -> None:
    r = run_docker(make_spec("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"))
    assert r.lines == ["lo"]


def test_unprivileged_no_new_privileges_and_few_caps(run_docker: Callable[[TaskSpec], Run], make_spec: Spec) -> None:
    r = run_docker(make_spec("grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status | tr -s '\\t' ' '"))
    # CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID = bits 0,1,3,4,5,6,7
    assert r.lines == ["CapEff: 00000000000000fb", "CapBnd: 00000000000000fb", "NoNewPrivs: 1"]


def test_pids_limit(run_docker: Callable[[TaskSpec], Run], make_spec: Spec) -> None:
    r = run_docker(make_spec("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max", limits=Limits(pids=64)))
    assert r.lines == ["64"]


def test_missing_image_is_errored_with_a_sentence(docker_client: Any, make_spec: Spec, tmp_path: Path) -> None:
    # pull=False: no registry is contacted from the tests.
    from runner.backends.docker import DockerBackend
    from runner.execute import execute
    from runner.workspace import WorkspaceCache

    backend = DockerBackend(docker_client, pull=False)
    r = execute(make_spec("true", image="clarity-no-such-image:1"), backend, work_root=tmp_path / "w",
                workspaces=WorkspaceCache(tmp_path / "c"), on_log=lambda line: None)
    assert r.outcome is Outcome.ERRORED
    assert r.error == ("image 'clarity-no-such-image:1' is not present locally and could not be pulled "
                       "(pulling is off: CLARITY_PULL=never); build it locally (`bash .ci/images.sh` in Clarity's "
                       "checkout builds the clarity-* images), or fix the name")


def test_failed_pull_is_errored_with_a_sentence(make_spec: Spec, tmp_path: Path) -> None:
    # The engine's answer to a pull that cannot reach a registry, without contacting one.
    from docker.errors import APIError, ImageNotFound

    from runner.backends.base import BackendError
    from runner.backends.docker import DockerBackend

    class Images:
        def get(self, name: str) -> None:
            raise ImageNotFound("no such image")

        def pull(self, name: str) -> None:
            raise APIError("500", explanation='Get "https://registry.example/v2/": dial tcp: no such host')

    class Client:
        images = Images()

    backend = DockerBackend(Client(), pull=True)  # type: ignore[arg-type]
    with pytest.raises(BackendError) as caught:
        backend.prepare(make_spec("true", image="acme/app:1"), tmp_path)
    assert str(caught.value) == (
        "image 'acme/app:1' is not present locally and could not be pulled "
        "(registry docker.io cannot be reached: its name does not resolve); "
        "build or load it locally (docker build / docker load), or fix the name")


def test_containers_are_labelled_and_swept(docker_backend: Any, docker_client: Any, make_spec: Spec, tmp_path: Path) -> None:
    spec = make_spec("sleep 30", labels={"team": "core"})
    (tmp_path / "workspace").mkdir()
    (tmp_path / "clarity").mkdir()
    handle = docker_backend.prepare(spec, tmp_path)
    docker_backend.start(handle)
    labels = docker_client.containers.get(handle.container.id).labels
    assert {k: labels[k] for k in (LABEL, f"{LABEL}.run", f"{LABEL}.task", "team")} == {
        LABEL: "1", f"{LABEL}.run": spec.run_id, f"{LABEL}.task": "build", "team": "core",
    }
    t0 = time.monotonic()
    assert docker_backend.sweep(run_id=spec.run_id) == 1
    assert time.monotonic() - t0 < 5
    assert docker_backend.sweep(run_id=spec.run_id) == 0
    docker_backend.destroy(handle)  # safe after the container is gone
    docker_backend.kill(handle)


def test_destroy_and_kill_are_idempotent(docker_backend: Any, make_spec: Spec, tmp_path: Path) -> None:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "clarity").mkdir()
    handle = docker_backend.prepare(make_spec("true"), tmp_path)
    docker_backend.kill(handle)  # never started
    docker_backend.destroy(handle)
    docker_backend.destroy(handle)
    docker_backend.destroy(None)  # prepare failed before a handle existed


def test_output_streams_as_it_is_written(docker_backend: Backend, make_spec: Spec, work_root: Path,
                                         workspaces: WorkspaceCache) -> None:
    # Attached before start: a line is there when it is written, not around the task's exit.
    seen: list[tuple[float, str]] = []
    t0 = time.monotonic()
    r = execute(make_spec("echo go; sleep 3; echo done"), docker_backend, work_root=work_root, workspaces=workspaces,
                on_log=lambda line: seen.append((time.monotonic() - t0, line)))
    assert r.outcome is Outcome.SUCCEEDED
    assert [line for _, line in seen] == ["go", "done"]
    assert seen[1][0] - seen[0][0] > 2.0  # "go" came long before the end


def test_partial_lines_of_stdout_and_stderr_do_not_mix(run_docker: Callable[[TaskSpec], Run], make_spec: Spec) -> None:
    r = run_docker(make_spec("printf 'a'; echo b >&2; sleep 0.2; printf 'c\\n'; printf 'tail' >&2"))
    assert sorted(r.lines) == ["ac", "b", "tail"]


def test_whole_lines_per_stream() -> None:
    from runner.backends.docker import _whole_lines
    from runner.masking import MAX_LINE_BYTES

    frames = [(1, b"a"), (2, b"b\n"), (1, b"c\nd"), (2, b"tail"), (1, b"e\n")]
    assert list(_whole_lines(iter(frames))) == [b"b\n", b"ac\n", b"de\n", b"tail\n"]
    long = b"x" * (MAX_LINE_BYTES + 5)
    assert list(_whole_lines(iter([(1, long)]))) == [b"x" * MAX_LINE_BYTES + b"\n", b"xxxxx\n"]


def test_attached_stream_closed_when_never_started(docker_backend: Any, make_spec: Spec, tmp_path: Path) -> None:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "clarity").mkdir()
    handle = docker_backend.prepare(make_spec("true"), tmp_path)
    assert handle.stream is not None
    sock = docker_backend.client.api._get_raw_response_socket(handle.stream._response)
    assert not sock.closed
    docker_backend.destroy(handle)
    assert sock.closed  # the attach connection is released, not left to the garbage collector


def test_local_socket_client_ignores_proxy_variables(docker_client: Any) -> None:
    from runner.backends.docker import DockerBackend

    backend = DockerBackend()
    if backend.client.api.base_url.startswith("http+docker://"):
        assert backend.client.api.trust_env is False  # not read on every call
