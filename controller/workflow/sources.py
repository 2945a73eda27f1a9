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

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

WORKFLOW_DIR = ".clarity"


class SourceError(Exception):
    """The file cannot be read (no such repository, ref or file): a sentence for the user."""


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
