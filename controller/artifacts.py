"""Where the controller keeps the artifacts remote runners upload: one tar.gz per task,
`<home>/artifacts/<run_id>/<task>.tar.gz`, named by a ref `controller:<run_id>/<task>` (what the
upstream task's `artifacts_dir` then holds, and what a downstream task's `artifacts_in` names)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

REF_PREFIX = "controller:"
_REF = re.compile(r"controller:(\d+)/(.+)")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class BadRef(ValueError):
    """Not a ref of the form `controller:<run_id>/<task>`."""


def ref(run_id: int | str, task: str) -> str:
    return f"{REF_PREFIX}{run_id}/{task}"


def parse(text: str) -> tuple[int, str]:
    """(run_id, task) of a ref; BadRef otherwise."""
    match = _REF.fullmatch(text)
    if match is None:
        raise BadRef(f"an artifacts ref is 'controller:<run_id>/<task>', got {text!r}")
    return int(match.group(1)), match.group(2)


def path(home: Path, text: str) -> Path:
    run_id, task = parse(text)
    safe = _UNSAFE.sub("_", task)
    return home / "artifacts" / str(run_id) / f"{'_' if safe in ('', '.', '..') else safe}.tar.gz"


def store(home: Path, text: str, data: bytes) -> None:
    """Write the tar.gz of a ref atomically (a reader sees the old file or the new one, whole)."""
    target = path(home, text)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
