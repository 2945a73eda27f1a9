"""Where the controller keeps the artifacts remote runners upload: one tar.gz per task,
`<home>/artifacts/<run_id>/<task>.tar.gz`, named by a ref `controller:<run_id>/<task>` (what the
upstream task's `artifacts_dir` then holds, and what a downstream task's `artifacts_in` names).

Kept `artifact_retention_days` after their run finished (`prune`, from a controller loop), as are
the built-in runner's collected artifacts (`<home>/work/artifacts/<run_id>/`)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

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


def incoming(home: Path) -> Path:
    """Where an upload is streamed to before `adopt` moves it in place (same file system)."""
    return home / "artifacts" / ".incoming"


def adopt(home: Path, text: str, upload: Path) -> None:
    """Move an uploaded file (in `incoming(home)`) in place as the tar.gz of a ref, atomically."""
    target = path(home, text)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(upload, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(upload, target)


def prune(roots: Iterable[Path], finished_at: Callable[[Sequence[int]], Mapping[int, float | None]],
          keep_s: float, now: float | None = None) -> int:
    """Remove the artifact directories (`<root>/<run_id>`) of runs that finished more than `keep_s`
    seconds ago, or that no longer exist; the number removed. Uploads left behind by an
    interrupted request (`.incoming`, older than a day) go too."""
    now = time.time() if now is None else now
    removed = 0
    for root in roots:
        if not root.is_dir():
            continue
        runs = {int(p.name): p for p in root.iterdir() if p.is_dir() and p.name.isdigit()}
        known = finished_at(sorted(runs))
        for run_id, directory in runs.items():
            done = known.get(run_id, 0.0) if run_id in known else 0.0  # no such run: nothing can use them
            if done is not None and done < now - keep_s:
                shutil.rmtree(directory, ignore_errors=True)
                removed += 1
        stale = root / ".incoming"
        if stale.is_dir():
            for leftover in stale.iterdir():
                try:
                    if leftover.stat().st_mtime < now - 86400:
                        leftover.unlink()
                except OSError:
                    pass
    return removed
