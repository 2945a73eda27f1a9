from __future__ import annotations

import os
import subprocess
import uuid
from typing import Any

import pytest

from runner import owner
from runner.backends.base import LABEL
from runner.owner import OWNER_LABEL

from tests.runner.conftest import IMAGE


def test_current_process_is_not_an_orphan() -> None:
    assert not owner.is_orphan(owner.current())


def test_dead_process_and_reused_pid_are_orphans() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    host = owner.current().split(":")[0]
    assert owner.is_orphan(f"{host}:{proc.pid}:12345")
    mine = owner.current().rsplit(":", 1)[0]
    assert owner.is_orphan(f"{mine}:999999999")  # same pid, another start time: a reused pid
    assert owner.is_orphan(None) and owner.is_orphan("")


def test_other_hosts_are_left_alone() -> None:
    assert not owner.is_orphan("some-other-host:1:1")


@pytest.mark.docker
def test_sweep_removes_only_orphans(docker_client: Any) -> None:
    from runner.backends.docker import DockerBackend

    run = f"sweep-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    host = owner.current().split(":")[0]
    base = {LABEL: "1", f"{LABEL}.run": run}
    dead = docker_client.containers.create(IMAGE, ["true"], labels={**base, OWNER_LABEL: f"{host}:999999999:1"})
    alive = docker_client.containers.create(IMAGE, ["true"], labels={**base, OWNER_LABEL: owner.current()})
    try:
        DockerBackend(docker_client).sweep()
        left = {c.id for c in docker_client.containers.list(all=True, filters={"label": f"{LABEL}.run={run}"})}
        assert dead.id not in left
        assert alive.id in left
    finally:
        for c in (dead, alive):
            try:
                c.remove(force=True)
            except Exception:
                pass


def test_another_pid_namespace_on_this_host_is_another_machine() -> None:
    # A runner in a container with --network host shares the host's name but not its pids: its
    # containers must not look like orphans of this host's processes, nor the other way round.
    import socket

    assert not owner.is_orphan(f"{socket.gethostname()}/1:1:1")
