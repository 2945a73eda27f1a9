"""The mirror cache and the checkout of one commit into a task's workspace.

Layout: `root/mirrors/<sha256(repo)[:16]>.git` is a bare mirror (`git clone --mirror`) of each
repository URL or path, with a sibling `.lock` file. A mirror is fetched only when the wanted
commit is missing; the lock (flock, so it also holds across runner processes on one machine)
keeps concurrent tasks from cloning or fetching the same mirror at once.

A checkout is an export, not a clone: the commit's tree is written into the destination through a
throw-away index (`read-tree --reset -u`), so symlinks, executable bits and .gitattributes
filters behave as in a normal checkout, and checkouts of one mirror can run in parallel. The
workspace has no `.git` directory: a task sees files, not history. A full sha the mirror already
holds is exported at once, with that one git process; otherwise (or if that fails) the mirror is
made to hold it first (`ensure`).

With `Workspace.dirty_path` set, that working tree is copied instead, skipping `.git`, `.venv`
and `__pycache__` (gitignored files are copied).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from runner.spec import Workspace

DIRTY_SKIP = (".git", ".venv", "__pycache__")
_FULL_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # sha-1 or sha-256
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}


class WorkspaceError(Exception):
    """The workspace could not be prepared; the message is a sentence for the user."""


class WorkspaceCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def mirror_path(self, repo: str) -> Path:
        digest = hashlib.sha256(repo.encode()).hexdigest()[:16]
        return self.root / "mirrors" / f"{digest}.git"

    def checkout(self, ws: Workspace, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        if ws.dirty_path is not None:
            self._copy_dirty(Path(ws.dirty_path), dest)
            return
        if ws.commit is not None and _FULL_SHA.fullmatch(ws.commit):
            mirror = self.mirror_path(ws.repo)
            # The usual case: a commit the mirror holds already. One git process, no lookup first;
            # a commit it lacks fails before anything is written, and takes the long way below.
            if mirror.exists() and self._export(mirror, ws.commit, dest, check=False):
                return
        mirror, sha = self.ensure(ws.repo, ws.commit)
        self._export(mirror, sha, dest, check=True)

    @staticmethod
    def _export(mirror: Path, sha: str, dest: Path, *, check: bool) -> bool:
        """Write the tree of commit `sha` into dest (overwriting what is there). False when it
        failed and `check` is off; with it on, a WorkspaceError."""
        with tempfile.TemporaryDirectory(prefix="clarity-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            args = ("--git-dir", str(mirror), "--work-tree", str(dest), "read-tree", "--reset", "-u", f"{sha}^{{commit}}")
            if check:
                _git(*args, env=env, what=f"could not check out commit {sha}")
                return True
            return _run(args, env).returncode == 0

    def refresh(self, repo: str) -> tuple[Path, dict[str, str]]:
        """Fetch the mirror of `repo` (cloning it the first time); return its path and its refs
        (`refs/heads/*`, `refs/tags/*`) with the commit each points at (tags peeled)."""
        mirror = self.mirror_path(repo)
        with self._locked(mirror):
            if not mirror.exists():
                self._clone(repo, mirror)
            else:
                _git("--git-dir", str(mirror), "fetch", "--prune", "--quiet", "origin",
                     what=f"could not fetch {repo}")
        listed = _git("--git-dir", str(mirror), "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)",
                      "refs/heads", "refs/tags", what=f"could not list the refs of {repo}")
        refs: dict[str, str] = {}
        for line in listed.splitlines():
            name, sha, peeled = (line.split(" ") + ["", ""])[:3]
            refs[name] = peeled or sha
        return mirror, refs

    def ensure(self, repo: str, commit: str | None) -> tuple[Path, str]:
        """Make sure the mirror of `repo` holds `commit` (or, if None, fetch and use HEAD);
        return the mirror's path and the commit's full sha."""
        if commit is not None and commit.startswith("-"):
            raise WorkspaceError(f"{commit!r} is not a commit")
        mirror = self.mirror_path(repo)
        if commit is not None and mirror.exists():
            sha = _resolve(mirror, commit)
            if sha is not None:
                return mirror, sha
        with self._locked(mirror):
            if not mirror.exists():
                self._clone(repo, mirror)
            elif commit is None or _resolve(mirror, commit) is None:
                _git("--git-dir", str(mirror), "fetch", "--prune", "--quiet", "origin",
                     what=f"could not fetch {repo}")
            wanted = commit or "HEAD"
            sha = _resolve(mirror, wanted)
            if sha is None and commit is not None:
                # Not reachable from any ref (e.g. a force-pushed PR head): ask for it by sha.
                _try_git("--git-dir", str(mirror), "fetch", "--quiet", "origin", commit)
                sha = _resolve(mirror, wanted)
        if sha is None:
            raise WorkspaceError(f"commit {wanted} does not exist in repository {repo}")
        return mirror, sha

    def _clone(self, repo: str, mirror: Path) -> None:
        mirror.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=mirror.name + ".", dir=mirror.parent))
        try:
            _git("clone", "--mirror", "--quiet", "--", repo, str(tmp), what=f"could not clone {repo}")
            tmp.rename(mirror)  # atomic: a mirror exists complete or not at all
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def _locked(self, mirror: Path) -> Iterator[None]:
        mirror.parent.mkdir(parents=True, exist_ok=True)
        with open(mirror.with_suffix(".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @staticmethod
    def _copy_dirty(src: Path, dest: Path) -> None:
        if not src.is_dir():
            raise WorkspaceError(f"working tree {src} does not exist or is not a directory")
        shutil.copytree(
            src, dest, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*DIRTY_SKIP)
        )


def _resolve(mirror: Path, rev: str) -> str | None:
    if rev.startswith("-"):
        return None  # never let a revision be read as an option
    out = _try_git("--git-dir", str(mirror), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    return (out.strip() or None) if out is not None else None


def _run(args: tuple[str, ...], env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        env={**os.environ, **_GIT_ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )


def git_reason(stderr: str, code: int) -> str:
    """The line of git's complaint that says what went wrong (its first `fatal:`/`error:`), not
    the advice that follows it."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    return lines[0] if lines else f"git exited with {code}"


def _git(*args: str, what: str, env: dict[str, str] | None = None) -> str:
    proc = _run(args, env)
    if proc.returncode != 0:
        raise WorkspaceError(f"{what}: {git_reason(proc.stderr, proc.returncode)}")
    return proc.stdout


def _try_git(*args: str) -> str | None:
    proc = _run(args, None)
    return proc.stdout if proc.returncode == 0 else None
