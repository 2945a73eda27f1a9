"""A `Sources` of the composition tests: workflow files from dicts, no git."""

from __future__ import annotations

import hashlib
import textwrap
from dataclasses import dataclass, field

from controller.workflow.sources import FileRef, Loaded, SourceError


@dataclass
class DictSources:
    """`files`: path in the repository -> text (this repository); `repos`: (repo, ref) -> files."""

    files: dict[str, str] = field(default_factory=dict)
    repos: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    commit: str = "c" * 40
    reads: list[str] = field(default_factory=list)

    def read(self, ref: FileRef, *, relative_to: Loaded | None = None) -> Loaded:
        repo, at = ref.repo, ref.ref
        if repo is None and relative_to is not None and relative_to.ref.repo is not None:
            repo, at = relative_to.ref.repo, relative_to.ref.ref
        if repo is None:
            files, file = self.files, ref.repo_path
        else:
            if (repo, at or "") not in self.repos:
                raise SourceError(f"repository {repo} has no tag, branch or commit '{at}'")
            files, file = self.repos[(repo, at or "")], f"{repo}@{at}:{ref.repo_path}"
        path = ref.repo_path.removeprefix("./")
        if path not in files:
            raise SourceError(f"no file {path}")
        self.reads.append(file)
        text = textwrap.dedent(files[path])
        return Loaded(FileRef(ref.path, repo, at), text, file, repo or "this", self.commit,
                      hashlib.sha1(text.encode()).hexdigest())

    def own(self, path: str) -> Loaded:
        return Loaded(FileRef(path), textwrap.dedent(self.files[path]), path, "this", self.commit, None)
