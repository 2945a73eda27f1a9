"""The git repository `clarity run` works in: the commit, its workflow files, what changed.

Workflow text is read from the commit (`<sha>:<path>`), never from the working tree, unless the
user asks for `--dirty`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import git

WORKFLOW_DIR = ".clarity"


class RepoError(Exception):
    """The user's repository is not usable as asked; the message says why and what to do."""


@dataclass(frozen=True)
class WorkflowSource:
    path: str  # repository-relative, posix
    text: str
    blob_sha: str | None  # None when read from the working tree


@dataclass(frozen=True)
class LocalRepo:
    root: Path
    repo: git.Repo

    @classmethod
    def find(cls, start: Path) -> LocalRepo:
        try:
            repo = git.Repo(start, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise RepoError(
                f"{start} is not inside a git repository: `clarity run` runs the workflows of a "
                "commit (run `git init` and commit your .clarity/*.yaml files)"
            ) from None
        if repo.bare or repo.working_tree_dir is None:
            raise RepoError(f"{start} is a bare repository; run clarity in a working copy")
        return cls(Path(repo.working_tree_dir).resolve(), repo)

    def head_sha(self) -> str:
        try:
            return self.repo.head.commit.hexsha
        except ValueError:
            raise RepoError(
                f"the repository at {self.root} has no commits yet: commit your workflow files, "
                "or use --dirty to run the working tree"
            ) from None

    def branch(self) -> str:
        return "" if self.repo.head.is_detached else self.repo.active_branch.name

    def tag(self, sha: str) -> str:
        for tag in self.repo.tags:
            if tag.commit.hexsha == sha:
                return tag.name
        return ""

    def message(self, sha: str) -> str:
        return str(self.repo.commit(sha).message).strip()

    def author(self, sha: str) -> str:
        return str(self.repo.commit(sha).author.name or "")

    def relpath(self, path: Path, cwd: Path) -> str:
        absolute = (cwd / path).resolve()
        try:
            return absolute.relative_to(self.root).as_posix()
        except ValueError:
            raise RepoError(f"{path} is outside the repository at {self.root}") from None

    def workflow_paths(self, sha: str | None) -> list[str]:
        """Workflow files at the commit (sha) or in the working tree (None)."""
        if sha is None:
            folder = self.root / WORKFLOW_DIR
            found = [p for p in folder.glob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
            return sorted(p.relative_to(self.root).as_posix() for p in found)
        try:
            tree = self.repo.commit(sha).tree / WORKFLOW_DIR
        except KeyError:
            return []
        return sorted(str(b.path) for b in tree.blobs if b.name.endswith((".yaml", ".yml")))

    def read(self, path: str, sha: str | None) -> WorkflowSource:
        if sha is None:
            file = self.root / path
            if not file.is_file():
                raise RepoError(f"{path}: no such file")
            return WorkflowSource(path, file.read_text(encoding="utf-8"), None)
        try:
            blob = self.repo.commit(sha).tree / path
        except KeyError:
            if not (self.root / path).exists():
                raise RepoError(f"{path}: no such file") from None
            raise RepoError(f"{path}: not in commit {sha[:8]} (it exists in the working tree: commit it, "
                            "or use --dirty)") from None
        return WorkflowSource(path, blob.data_stream.read().decode("utf-8"), blob.hexsha)

    def is_modified(self, path: str) -> bool:
        """True when the working tree's copy differs from HEAD (or is untracked)."""
        if not (self.root / path).exists():
            return False
        return bool(self.repo.git.status("--porcelain", "--", path).strip())

    def changed_files(self, sha: str, dirty: bool) -> tuple[str, ...]:
        """Files the commit changed against its first parent (all files of a root commit);
        with `dirty`, the working tree's changes too."""
        commit = self.repo.commit(sha)
        if commit.parents:
            names = self.repo.git.diff("--name-only", commit.parents[0].hexsha, sha).splitlines()
        else:
            names = self.repo.git.ls_tree("-r", "--name-only", sha).splitlines()
        if dirty:
            for line in self.repo.git.status("--porcelain", "-uall").splitlines():
                names.append(line[3:].split(" -> ")[-1])
        return tuple(sorted(set(n for n in names if n)))

