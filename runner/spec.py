"""The neutral description of one task, and of its result.

This module is the boundary between the controller and the runner: the controller compiles a
workflow into `TaskSpec` values and the runner executes them, knowing nothing of YAML, workflows,
forges or plugins. Everything here is plain, frozen data with a JSON round-trip (stdlib only), so
the same values travel in-process (`clarity run`) and over HTTP (remote runner agents).
"""

from __future__ import annotations

import base64
import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

WORKSPACE_PATH = "/workspace"
CLARITY_DIR = "/clarity"
"""Inside every container: the task's files (script, output files) live under this directory."""


class Outcome(str, enum.Enum):
    """How a task ended. A failing task is not an error: only `ERRORED` is infrastructure."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the task's own command exited non-zero
    ERRORED = "errored"  # infrastructure: image missing, daemon gone, checkout failed (retried)
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    SKIPPED = "skipped"

    @property
    def ok(self) -> bool:
        return self is Outcome.SUCCEEDED or self is Outcome.SKIPPED


@dataclass(frozen=True)
class File:
    """A file injected into the container before it starts (at an absolute path)."""

    path: str
    content: bytes
    mode: int = 0o644

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "content": base64.b64encode(self.content).decode(), "mode": self.mode}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> File:
        return cls(path=data["path"], content=base64.b64decode(data["content"]), mode=data["mode"])


@dataclass(frozen=True)
class Limits:
    """Resource limits; None means the engine's default (unlimited)."""

    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = 512


@dataclass(frozen=True)
class Workspace:
    """What is mounted at WORKSPACE_PATH.

    `repo` is a git URL or path; `commit` the full sha to check out. With `dirty_path` set the
    runner copies that directory instead (the user's working tree, `clarity run --dirty`).
    """

    repo: str
    commit: str | None = None
    dirty_path: str | None = None


@dataclass(frozen=True)
class ArtifactIn:
    """An artifact of an upstream task: `source` (a runner-readable directory holding the files
    as they were under the upstream workspace) copied into this task's workspace before start."""

    source: str
    task: str


@dataclass(frozen=True)
class Mount:
    """A directory of the runner's machine bound into the container (e.g. the storage root of a
    storage task). The controller grants these only to plugins allowed `host_paths`."""

    source: str  # absolute path on the runner's machine
    target: str  # absolute path in the container
    read_only: bool = False


@dataclass(frozen=True)
class TaskSpec:
    run_id: str
    task: str
    image: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    files: tuple[File, ...] = ()
    workspace: Workspace | None = None
    workdir: str = WORKSPACE_PATH
    timeout_s: float = 3600.0
    limits: Limits = field(default_factory=Limits)
    network: str = "none"  # "none" | "host" | "bridge"
    mask: tuple[str, ...] = ()  # secret values to mask in every log line and output
    artifacts: tuple[str, ...] = ()  # workspace-relative paths (files, dirs or globs) to collect
    artifacts_in: tuple[ArtifactIn, ...] = ()
    attempt: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["argv"] = list(self.argv)
        data["env"] = dict(self.env)
        data["files"] = [f.to_json() for f in self.files]
        data["mask"] = list(self.mask)
        data["artifacts"] = list(self.artifacts)
        data["artifacts_in"] = [asdict(a) for a in self.artifacts_in]
        data["labels"] = dict(self.labels)
        data["mounts"] = [asdict(m) for m in self.mounts]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskSpec:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        kw["argv"] = tuple(data["argv"])
        kw["files"] = tuple(File.from_json(f) for f in data.get("files", ()))
        kw["workspace"] = Workspace(**data["workspace"]) if data.get("workspace") else None
        kw["limits"] = Limits(**data.get("limits", {}))
        kw["mask"] = tuple(data.get("mask", ()))
        kw["artifacts"] = tuple(data.get("artifacts", ()))
        kw["artifacts_in"] = tuple(ArtifactIn(**a) for a in data.get("artifacts_in", ()))
        kw["mounts"] = tuple(Mount(**m) for m in data.get("mounts", ()))
        return cls(**kw)


@dataclass(frozen=True)
class TaskResult:
    outcome: Outcome
    exit_code: int | None = None
    started_at: float | None = None  # unix seconds
    finished_at: float | None = None
    output: Any = None  # parsed $CLARITY_OUTPUT: JSON value, or text
    outputs: Mapping[str, str] = field(default_factory=dict)  # $CLARITY_OUTPUTS key=value lines
    artifacts_dir: str | None = None  # runner-side directory holding the collected artifacts
    error: str | None = None  # a human sentence: why it errored / timed out / was OOM-killed
    oom_killed: bool = False
    retryable: bool = True  # False: an error that trying again cannot change (the image does not exist)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["outputs"] = dict(self.outputs)
        if self.retryable:  # the default: left out, as a runner before it sent it
            del data["retryable"]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskResult:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        kw["outcome"] = Outcome(data["outcome"])
        return cls(**kw)
