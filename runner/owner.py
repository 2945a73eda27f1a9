"""Which process owns a container: so a sweep removes only the leftovers of dead processes.

Several Clarity processes may share one Docker engine (two `clarity run` in two terminals, a
runner agent beside them, parallel test sessions); a start-up sweep must not remove the live
containers of another. Each container is labelled with its owner's host, pid and process start
time (pids are reused; the start time tells a reused pid apart).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

OWNER_LABEL = "io.clarity.owner"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may hold spaces, so split after ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def _machine() -> str:
    """This host, and this pid namespace on it: a runner in a container (even one sharing the
    host's name and network) sees other pids, so its processes are another "machine"."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}/{namespace}"


def current() -> str:
    pid = os.getpid()
    return f"{_machine()}:{pid}:{_start_time(pid) or '0'}"


def is_orphan(owner: str | None) -> bool:
    """True when the owning process is gone (or unknown). Owners on other hosts are alive as far
    as this host can tell."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != _machine():
        return False
    if not pid_text.isdigit():
        return True
    return _start_time(int(pid_text)) != started
