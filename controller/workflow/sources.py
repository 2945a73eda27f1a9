"""Where the other workflow files a workflow names come from: the bases of `extends:` and the
sub-workflows of `type: workflow` tasks.

A reference is a path in the workflow's own repository at the same commit
(`extends: base.yaml`, `workflow: deploy.yaml`), or a file of another repository at a pinned ref
(`{repo: acme/ci-templates, ref: v2, path: python.yaml}`). A bare file name is read in
`.clarity/` (`base.yaml` -> `.clarity/base.yaml`); a path with a '/' is from the repository root.

`Sources` is what the linter and the engine are given to read them: `LocalSources` for `clarity
run` and `clarity lint` (the checkout's repository; other repositories by URL or path, or by a
name listed in the setting `repositories`), `MirrorSources` on a controller (other repositories
by their registered name, through the mirror cache). Every file read is recorded (`Loaded`:
repository, commit and blob sha) so a run can say exactly what went into it.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from controller.workflow.diagnostics import suggest
from runner.workspace import WorkspaceCache, WorkspaceError

WORKFLOW_DIR = ".clarity"


class SourceError(Exception):
    """The file cannot be read (no such repository, ref or file): a sentence for the user, and
    `hint`, how to fix it, when the reader knows more than `read_hint` does."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class FileRef:
    path: str  # as written: a bare name (in .clarity/) or a path from the repository root
    repo: str | None = None  # None: the repository of the workflow that names it, at its commit
    ref: str | None = None  # a tag, branch or commit of `repo` (required with `repo`)

    @property
    def repo_path(self) -> str:
        """The path in the repository: a bare name is in .clarity/."""
        path = self.path.lstrip("/")
        return path if "/" in path else f"{WORKFLOW_DIR}/{path}"

    @classmethod
    def parse(cls, value: Any) -> FileRef:
        """From `base.yaml` or `{repo, ref, path}` (the linter checks the shape first)."""
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            return cls(str(value["path"]), value.get("repo"), value.get("ref"))
        raise SourceError(f"expected a path or {{repo, ref, path}}, got {value!r}")

    def shown(self) -> str:
        return self.repo_path if self.repo is None else f"{self.repo}@{self.ref}:{self.repo_path}"


@dataclass(frozen=True)
class Loaded:
    """A file as read: its text, and exactly which version it was."""

    ref: FileRef
    text: str
    file: str  # the name diagnostics use: `.clarity/base.yaml`, or `acme/ci-templates@v2:.clarity/python.yaml`
    repo: str  # the repository (its registered name, URL or path)
    commit: str | None  # the commit it was read at (None: a working tree)
    blob: str | None  # its blob sha (None: a working tree)

    def record(self) -> dict[str, Any]:
        """What a run keeps of it."""
        return {"file": self.file, "repo": self.repo, "path": self.ref.repo_path, "ref": self.ref.ref,
                "commit": self.commit, "blob": self.blob}


class Sources(Protocol):
    def read(self, ref: FileRef, *, relative_to: Loaded | None = None) -> Loaded:
        """The file `ref` names. `relative_to`: the file that names it (a file of another
        repository names paths in that repository, at that commit). Raises SourceError."""
        ...


# -- hints ---------------------------------------------------------------------------------------

def read_hint(ref: FileRef, exc: SourceError) -> str:
    """How to fix a reference that cannot be read: what the reader said, or where paths are read."""
    if exc.hint:
        return exc.hint
    if ref.repo is None:
        return _WHERE
    return (f"check that the repository {ref.repo} is known here (its URL or path, or a name registered with "
            f"`clarity repo add`, or in the setting repositories for clarity run) and has the tag, branch or "
            f"commit {ref.ref}")


_WHERE = "a bare file name is read in .clarity/, a path with '/' from the repository root"
_LISTED = 10  # at most this many names in a hint


def _missing_hint(path: str, names: list[str] | None) -> str:
    """For a file that is not there: where it was looked for, and the workflow files of its folder."""
    folder = posixpath.dirname(path) or "."
    if names is None:
        return f"{_WHERE}; there is no folder {folder}/"
    files = sorted(n for n in names if n.endswith((".yaml", ".yml")))
    stems = {posixpath.splitext(n)[0]: n for n in files}  # the shared .yaml would make any two names look alike
    close = difflib.get_close_matches(posixpath.splitext(posixpath.basename(path))[0], stems, n=1, cutoff=0.6)
    if close:  # in the words of the workflow: a bare name for a file of .clarity/
        name = stems[close[0]]
        return f"did you mean {name if folder == WORKFLOW_DIR else posixpath.join(folder, name)}? ({_WHERE})"
    if not files:
        return f"{_WHERE}; {folder}/ holds no .yaml file"
    if len(files) > _LISTED:
        return f"{_WHERE}; {folder}/ holds {len(files)} .yaml files"
    return f"{_WHERE}; the .yaml files in {folder}/: {', '.join(files)}"


def _ref_hint(wanted: str, refs: Mapping[str, str]) -> str:
    """For a ref that is not there: the closest tag or branch, or the ones there are."""
    tags = sorted(r.removeprefix("refs/tags/") for r in refs if r.startswith("refs/tags/"))
    branches = sorted(r.removeprefix("refs/heads/") for r in refs if r.startswith("refs/heads/"))
    close = suggest(wanted, tags + branches)
    if close:
        return close
    shown = [f"{what}: {', '.join(names) if len(names) <= _LISTED else f'{len(names)} of them'}"
             for what, names in (("tags", tags), ("branches", branches)) if names]
    if not shown:
        return "the repository has no tag and no branch"
    return "check the tag, branch or commit; the repository's " + "; ".join(shown)


# -- reading from git ------------------------------------------------------------------------------

_FULL_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
_SCP = re.compile(r"^[\w.-]+@[\w.-]+:")


def _git(git_dir: Path, *args: str, work_tree: bool = False) -> str | None:
    """stdout of a git command in `git_dir` (a working copy's root with `work_tree`), None when it fails."""
    where = ["-C", str(git_dir)] if work_tree else ["--git-dir", str(git_dir)]
    proc = subprocess.run(["git", *where, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, **_GIT_ENV})
    return proc.stdout if proc.returncode == 0 else None


def _read_blob(git_dir: Path, commit: str, ref: FileRef, repo: str, *, work_tree: bool = False) -> Loaded:
    path = ref.repo_path.removeprefix("./")
    at = ref.ref or commit[:12]
    blob = _git(git_dir, "rev-parse", "--verify", "--quiet", f"{commit}:{path}", work_tree=work_tree)
    if not blob or (_git(git_dir, "cat-file", "-t", blob.strip(), work_tree=work_tree) or "").strip() != "blob":
        where = f"in {ref.repo} " if ref.repo else ""
        names = _tree(git_dir, commit, path, work_tree)
        raise SourceError(f"no file {path} {where}at {at}", _missing_hint(path, names))
    blob = blob.strip()
    data = _git_bytes(git_dir, blob, work_tree)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{path} at {at} is not UTF-8 text") from None
    return Loaded(ref, text, ref.shown(), repo, commit, blob)


def _tree(git_dir: Path, commit: str, path: str, work_tree: bool) -> list[str] | None:
    """The names in the folder of `path` at `commit` (None: no such folder)."""
    folder = posixpath.dirname(path)
    listing = _git(git_dir, "ls-tree", "--name-only", f"{commit}:{folder}" if folder else f"{commit}^{{tree}}",
                   work_tree=work_tree)
    return None if listing is None else listing.splitlines()


def _git_bytes(git_dir: Path, blob: str, work_tree: bool) -> bytes:
    where = ["-C", str(git_dir)] if work_tree else ["--git-dir", str(git_dir)]
    proc = subprocess.run(["git", *where, "cat-file", "blob", blob], capture_output=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, **_GIT_ENV})
    if proc.returncode != 0:
        raise SourceError(f"cannot read blob {blob[:12]}")
    return proc.stdout


class _GitSources:
    """Other repositories through the mirror cache: a tag or branch is looked up after a fetch
    (moved tags are followed), a full commit sha is fetched only when the mirror lacks it."""

    def __init__(self, mirrors: WorkspaceCache) -> None:
        self.mirrors = mirrors

    def _url(self, name: str) -> str:
        raise NotImplementedError

    def _read_own(self, ref: FileRef) -> Loaded:
        raise NotImplementedError

    def read(self, ref: FileRef, *, relative_to: Loaded | None = None) -> Loaded:
        if ref.repo is None and relative_to is not None and relative_to.ref.repo is not None:
            # a file of another repository names a path in that repository, at the same commit
            other = relative_to.ref
            if relative_to.commit is None:
                raise SourceError(f"{relative_to.file} was not read at a commit")
            mirror, _ = self._ensure(other.repo or "", relative_to.commit)
            return _read_blob(mirror, relative_to.commit, FileRef(ref.path, other.repo, other.ref), relative_to.repo)
        if ref.repo is None:
            return self._read_own(ref)
        if not ref.ref:
            raise SourceError(f"a file of repository {ref.repo} needs a ref (a tag, branch or commit)")
        mirror, commit = self._resolve(ref.repo, ref.ref)
        return _read_blob(mirror, commit, ref, ref.repo)

    def _ensure(self, name: str, commit: str) -> tuple[Path, str]:
        url = self._url(name)
        try:
            return self.mirrors.ensure(url, commit)
        except WorkspaceError as exc:
            raise SourceError(f"repository {name}: {exc}") from None

    def _resolve(self, name: str, ref: str) -> tuple[Path, str]:
        if ref.startswith("-"):
            raise SourceError(f"{ref!r} is not a ref")
        if _FULL_SHA.fullmatch(ref):
            return self._ensure(name, ref)
        url = self._url(name)
        try:
            mirror, refs = self.mirrors.refresh(url)
        except WorkspaceError as exc:
            raise SourceError(f"cannot read repository {name}: {exc}") from None
        for full in (f"refs/tags/{ref}", f"refs/heads/{ref}", ref):
            if full in refs:
                return mirror, refs[full]
        sha = _git(mirror, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") if re.fullmatch(
            r"[0-9a-f]{4,64}", ref) else None
        if not sha:
            raise SourceError(f"repository {name} has no tag, branch or commit '{ref}'", _ref_hint(ref, refs))
        return mirror, sha.strip()


class LocalSources(_GitSources):
    """`clarity run` and `clarity lint`: the working copy's repository at `commit` (None: its
    working tree, as files), other repositories by URL or path, or by a name of the setting
    `repositories`, through the mirror cache under `cache`."""

    def __init__(self, root: Path, commit: str | None, *, cache: Path,
                 repositories: Mapping[str, str] | None = None) -> None:
        super().__init__(WorkspaceCache(cache))
        self.root, self.commit = root, commit
        self.repositories = dict(repositories or {})

    @classmethod
    def around(cls, file: Path, text: str, name: str, *, cache: Path,
               repositories: Mapping[str, str] | None = None) -> tuple[LocalSources, Loaded]:
        """For a file of a working tree (`clarity lint`), read as `text` and shown as `name`: the
        sources of its repository's working tree (outside git: of the folder holding its
        .clarity/), and the file as Loaded."""
        file = file.resolve()
        top = _git(file.parent, "rev-parse", "--show-toplevel", work_tree=True)
        if top:
            root = Path(top.strip()).resolve()
        else:
            root = file.parent.parent if file.parent.name == WORKFLOW_DIR else file.parent
        path = file.relative_to(root).as_posix()
        sources = cls(root, None, repositories=repositories, cache=cache)
        return sources, Loaded(FileRef(path if "/" in path else "./" + path), text, name, str(root), None, None)

    def own(self, path: str, text: str, blob: str | None) -> Loaded:
        """The workflow file itself (read by the caller), as its bases see it."""
        return Loaded(FileRef(path if "/" in path else "./" + path), text, path, str(self.root), self.commit, blob)

    def _url(self, name: str) -> str:
        if name in self.repositories:
            return self.repositories[name]
        if "://" in name or _SCP.match(name) or name.startswith(("/", "./", "../", "~")):
            if name.startswith(("./", "../", "~")):
                return str((self.root / Path(name).expanduser()).resolve())
            return name
        known = ", ".join(sorted(self.repositories)) or "none"
        raise SourceError(f"unknown repository '{name}': give its git URL or path, or name it in the setting "
                          f"repositories (CLARITY_REPOSITORIES=\"{name}=URL\"; named now: {known})",
                          f"e.g. repo: https://git.example.com/{name}.git, or repo: ../{name.rpartition('/')[2]} "
                          "for a clone next to this one")

    def _read_own(self, ref: FileRef) -> Loaded:
        path = ref.repo_path.removeprefix("./")
        if self.commit is None:
            file = self.root / path
            if not file.is_file():
                folder = file.parent
                names = sorted(f.name for f in folder.iterdir() if f.is_file()) if folder.is_dir() else None
                raise SourceError(f"no file {path}", _missing_hint(path, names))
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise SourceError(f"{path} is not UTF-8 text") from None
            return Loaded(ref, text, path, str(self.root), None, None)
        try:
            return _read_blob(self.root, self.commit, ref, str(self.root), work_tree=True)
        except SourceError:
            if (self.root / path).is_file():
                raise SourceError(f"no file {path} in commit {self.commit[:8]} (it exists in the working tree: "
                                  "commit it, or use --dirty)") from None
            raise


class MirrorSources(_GitSources):
    """The controller: the run's repository (`name`, its mirror) at `commit`; other repositories
    by their registered name (`lookup`: name -> URL, None when not registered)."""

    def __init__(self, mirrors: WorkspaceCache, name: str, mirror: Path, commit: str,
                 lookup: Callable[[str], str | None]) -> None:
        super().__init__(mirrors)
        self.name, self.mirror, self.commit, self.lookup = name, mirror, commit, lookup

    def own(self, path: str, text: str, blob: str | None) -> Loaded:
        return Loaded(FileRef(path if "/" in path else "./" + path), text, path, self.name, self.commit, blob)

    def _url(self, name: str) -> str:
        url = self.lookup(name)
        if url is None:
            raise SourceError(f"no repository '{name}' is registered on this controller "
                              f"(clarity repo add {name} URL)",
                              "`clarity repo list` shows the names registered; use one of them as repo")
        return url

    def _read_own(self, ref: FileRef) -> Loaded:
        return _read_blob(self.mirror, self.commit, ref, self.name)
