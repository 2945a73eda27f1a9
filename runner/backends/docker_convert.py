"""TaskSpec -> docker SDK `containers.create` keyword arguments: pure, testable without a daemon.

Security posture of every task container:

- `no-new-privileges`, and every capability dropped except the few a normal build running as
  root needs: CHOWN, DAC_OVERRIDE, FOWNER, FSETID (package managers and `cp -p` fix owners and
  modes), SETUID, SETGID (`su`, `apt` dropping to `_apt`, `useradd` users), KILL (signal own
  children). Not kept from Docker's default set: NET_RAW (ping/spoofing), NET_BIND_SERVICE,
  MKNOD, SYS_CHROOT, SETPCAP, SETFCAP, AUDIT_WRITE: builds rarely need them and they widen the
  attack surface.
- Memory and memory+swap limits are equal, so exceeding the limit OOM-kills instead of swapping.
- No init process and no TTY: the task's argv is PID 1 and its exit code is the task's.
- The argv is passed as `command`: an image ENTRYPOINT, if any, still applies (Docker semantics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.backends.base import LABEL, BackendError
from docker.types import Mount as DockerMount

from runner.spec import CLARITY_DIR, WORKSPACE_PATH, Mount, TaskSpec

NETWORK_MODES = frozenset({"none", "host", "bridge"})
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "KILL")


def labels(spec: TaskSpec) -> dict[str, str]:
    # Ours last: a spec label cannot hide a container from sweep().
    return {**spec.labels, LABEL: "1", f"{LABEL}.run": spec.run_id, f"{LABEL}.task": spec.task}


def create_kwargs(spec: TaskSpec, host_dir: Path) -> dict[str, Any]:
    if spec.network not in NETWORK_MODES:
        raise BackendError(
            f"network mode {spec.network!r} is not supported; use one of {', '.join(sorted(NETWORK_MODES))}"
        )
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.argv) or None,
        "environment": dict(spec.env),
        "working_dir": spec.workdir,
        "labels": labels(spec),
        "volumes": {
            str(host_dir / "workspace"): {"bind": WORKSPACE_PATH, "mode": "rw"},
            str(host_dir / "clarity"): {"bind": CLARITY_DIR, "mode": "rw"},
        },
        "network_mode": spec.network,
        "mounts": [_mount(m) for m in spec.mounts],
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "cap_add": list(CAPABILITIES),
        "init": False,
        "tty": False,
        "stdin_open": False,
    }
    limits = spec.limits
    if limits.memory_bytes is not None:
        kwargs["mem_limit"] = limits.memory_bytes
        kwargs["memswap_limit"] = limits.memory_bytes
    if limits.cpus is not None:
        kwargs["nano_cpus"] = int(limits.cpus * 1e9)
    if limits.pids is not None:
        kwargs["pids_limit"] = limits.pids
    return kwargs


def _mount(m: Mount) -> DockerMount:
    """A bind mount of an existing absolute directory (never created by the engine)."""
    if not m.source.startswith("/") or not m.target.startswith("/"):
        raise BackendError(f"mount {m.source} -> {m.target}: both paths must be absolute")
    if m.target in ("/", WORKSPACE_PATH, CLARITY_DIR) or m.target.startswith((WORKSPACE_PATH + "/", CLARITY_DIR + "/")):
        raise BackendError(f"mount target {m.target} would hide the task's own files")
    if not Path(m.source).is_dir():
        raise BackendError(f"cannot mount {m.source}: no such directory on this runner (create it, or "
                           "configure the controller's storage_root to a directory every runner has)")
    return DockerMount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
