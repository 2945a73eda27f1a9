"""`file_watch` triggers with a `directory`: a directory on the controller's machine, watched for
new or changed files; each one starts the workflow, the file's path in `${inputs.file}` and
`${trigger.file}`.

Only directories under the `watch_dirs` setting may be watched: a workflow file is written by
whoever can push to the repository, and must not make the controller look around its disk. A
directory outside them is refused (logged once).

Each pass lists the directory (and below it, up to MAX_FILES files, hidden ones left out) and
fires for every file version (path, modification time, size) not seen before that has been left
alone for SETTLE_S (a file still being written waits), whatever its modification time (`rsync -t`
keeps old ones). A new trigger starts from now: files already there do not fire. After a restart,
files modified since the last pass (`last_tick`) fire; one copied in with an older modification
time while the controller was down does not. The run's dedupe key names the file version, so it
starts one run, whichever controller sees it first.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import structlog

from controller.loop import Loop
from controller.services import Services
from controller.starter import StartError
from controller.store.triggers import TriggerRow, Triggers

log = structlog.get_logger("clarity.filewatch")

INTERVAL_S = 2.0
SETTLE_S = 1.0
MAX_FILES = 10_000


def allowed(directory: str, roots: tuple[Path, ...]) -> Path | None:
    """The directory, resolved, if it is one of `roots` or under one; None otherwise."""
    real = Path(os.path.realpath(directory))
    for root in roots:
        base = Path(os.path.realpath(root))
        if real == base or base in real.parents:
            return real
    return None


def _files(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    count = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):  # editors' and uploaders' temporary files
                continue
            path = Path(folder) / name
            try:
                st = path.stat()
            except OSError:
                continue
            count += 1
            if count > MAX_FILES:
                log.warning("watched directory has too many files; the rest are not looked at", directory=str(root),
                            limit=MAX_FILES)
                return
            yield path, st


class FileWatchLoop:
    def __init__(self, services: Services, *, clock: Callable[[], float] = time.time,
                 interval_s: float = INTERVAL_S) -> None:
        self.services, self.clock, self.interval_s = services, clock, interval_s
        self.triggers = Triggers(services.store.engine)
        self.roots = tuple(services.settings.watch_dirs)
        self._said: set[str] = set()
        self._seen: dict[str, set[tuple[Path, int, int]]] = {}  # trigger key -> file versions handled
        self._loop = Loop("filewatch", self.interval_s, self.tick, failed="file watch pass failed")
        self.start, self.stop = self._loop.start, self._loop.stop

    def tick(self) -> int:
        """One pass over every watched directory; the number of runs started."""
        started = 0
        for trigger in self.triggers.list("file_watch"):
            directory = trigger.config.get("directory")
            if isinstance(directory, str):
                started += self._scan(trigger, directory)
        return started

    def _once(self, key: str, message: str, **kw: object) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning(message, **kw)

    def _scan(self, trigger: TriggerRow, directory: str) -> int:
        root = allowed(directory, self.roots)
        if root is None:
            self._once(f"{trigger.key}:refused", "file_watch directory refused: not under the watch_dirs setting",
                       trigger=trigger.key, directory=directory, watch_dirs=[str(r) for r in self.roots])
            return 0
        if not root.is_dir():
            self._once(f"{trigger.key}:missing", "file_watch directory does not exist", trigger=trigger.key,
                       directory=str(root))
            return 0
        now = self.clock()
        present = {(path, st.st_mtime_ns, st.st_size): st for path, st in _files(root)}
        seen = self._seen.get(trigger.key)
        if seen is None:  # first look in this process: what is there is known, but what came since last_tick
            since = now if trigger.last_tick is None else trigger.last_tick
            seen = self._seen[trigger.key] = {v for v, st in present.items() if st.st_mtime <= since}
        started = 0
        for version, st in sorted(present.items(), key=lambda item: item[1].st_mtime):
            if version in seen or st.st_mtime > now - SETTLE_S:  # known, or still being written
                continue
            seen.add(version)
            started += self._start(trigger, root, version[0], st)
        seen &= set(present)  # forget deleted files: one written again under the same name fires
        self.triggers.advance(trigger.id, now - SETTLE_S)
        return started

    def _start(self, trigger: TriggerRow, root: Path, path: Path, st: os.stat_result) -> int:
        try:
            repo = self.services.repos.get_id(trigger.repo_id)
            _mirror, refs = self.services.starter._refresh(repo)
            sha = refs.get(trigger.ref)
            if sha is None:
                raise StartError(f"{repo.name} has no branch {trigger.ref} any more")
            relative = str(path.relative_to(root))
            changed = datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat().replace("+00:00", "Z")
            outcome = self.services.starter._start(
                repo, sha=sha, ref=trigger.ref, kind="file_watch", branch=trigger.ref.removeprefix("refs/heads/"),
                tag="", before=None, changed=None, message=None, author="file_watch",
                trigger={"by": "file_watch", "event": "file_watch", "directory": str(root), "file": str(path),
                         "relative": relative, "size": st.st_size, "modified": changed, "trigger": trigger.key},
                inputs={"file": str(path)}, only=trigger.workflow_file,
                dedupe_key=f"{repo.id}:file_watch:{trigger.key}:{relative}:{st.st_mtime_ns}:{st.st_size}")
        except (StartError, LookupError, OSError) as exc:
            log.warning("file_watch run not started", trigger=trigger.key, file=str(path), error=str(exc))
            return 0
        if outcome.runs:
            log.info("file_watch run", trigger=trigger.key, file=str(path), run=outcome.runs[0])
        return len(outcome.runs)
