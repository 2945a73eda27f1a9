from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.backends.base import BackendError
from runner.backends.docker_convert import create_kwargs
from runner.spec import Limits, TaskSpec

HOST = Path("/var/lib/clarity/work/task-1")
BASE = TaskSpec(run_id="r7", task="test", image="python:3.12", argv=("sh", "-e", "/clarity/script.sh"))

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "defaults",
        {},
        {
            "image": "python:3.12",
            "command": ["sh", "-e", "/clarity/script.sh"],
            "environment": {},
            "working_dir": "/workspace",
            "labels": {"io.clarity": "1", "io.clarity.run": "r7", "io.clarity.task": "test"},
            "volumes": {
                f"{HOST}/workspace": {"bind": "/workspace", "mode": "rw"},
                f"{HOST}/clarity": {"bind": "/clarity", "mode": "rw"},
            },
            "network_mode": "none",
            "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"],
            "cap_add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "KILL"],
            "init": False,
            "tty": False,
            "stdin_open": False,
            "pids_limit": 512,
        },
    ),
    (
        "limits: memory and swap equal, cpus in nano",
        {"limits": Limits(memory_bytes=64 << 20, cpus=1.5, pids=100)},
        {"mem_limit": 64 << 20, "memswap_limit": 64 << 20, "nano_cpus": 1_500_000_000, "pids_limit": 100},
    ),
    ("no pids limit", {"limits": Limits(pids=None)}, {"pids_limit": None}),
    ("host network", {"network": "host"}, {"network_mode": "host"}),
    ("bridge network", {"network": "bridge"}, {"network_mode": "bridge"}),
    ("env and workdir", {"env": {"A": "1"}, "workdir": "/workspace/sub"}, {"environment": {"A": "1"}, "working_dir": "/workspace/sub"}),
    (
        "spec labels kept, ours win",
        {"labels": {"team": "core", "io.clarity": "0", "io.clarity.run": "x"}},
        {"labels": {"team": "core", "io.clarity": "1", "io.clarity.run": "r7", "io.clarity.task": "test"}},
    ),
    ("empty argv: image default command", {"argv": ()}, {"command": None}),
]


@pytest.mark.parametrize("changes,expected", [(c, e) for _, c, e in CASES], ids=[n for n, _, _ in CASES])
def test_create_kwargs(changes: dict[str, Any], expected: dict[str, Any]) -> None:
    import dataclasses

    got = create_kwargs(dataclasses.replace(BASE, **changes), HOST)
    for key, value in expected.items():
        assert got.get(key) == value, key
    if "mem_limit" not in expected:
        assert "mem_limit" not in got and "memswap_limit" not in got and "nano_cpus" not in got


def test_no_privileged_and_no_auto_remove() -> None:
    got = create_kwargs(BASE, HOST)
    assert not got.get("privileged") and not got.get("auto_remove")


def test_unknown_network_is_a_sentence() -> None:
    import dataclasses

    with pytest.raises(BackendError, match="network mode 'overlay' is not supported"):
        create_kwargs(dataclasses.replace(BASE, network="overlay"), HOST)
