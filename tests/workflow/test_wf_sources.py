"""`LocalSources` (controller.workflow.sources) against real git repositories: the working copy's
files at a commit or in the working tree, another repository by path or by a name of the setting
`repositories` at a tag (a moved tag is followed) or a commit (never moves), and `clarity lint`
/ `clarity lint --explain` reading bases through it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from controller import cli
from controller.workflow.lint import lint_text
from controller.workflow.sources import FileRef, LocalSources, SourceError

PYTHON_V1 = """\
workflow:
  extends: common.yaml
  tasks:
    - {name: test, image: busybox, commands: ["echo v1"]}
"""
COMMON = """\
workflow:
  name: python
  env: {CI: "true"}
  tasks:
    - {name: lint, image: busybox, commands: ["echo lint"]}
"""


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.org",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.org", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    if not (repo / ".git").exists():
        git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def templates(tmp_path: Path) -> tuple[Path, str]:
    """A template repository: python.yaml extends common.yaml; tag v1 at the first commit."""
    repo = tmp_path / "templates"
    first = commit(repo, {".clarity/python.yaml": PYTHON_V1, ".clarity/common.yaml": COMMON})
    git(repo, "tag", "v1")
    return repo, first


def test_another_repository_at_a_tag_and_its_relative_bases(templates: tuple[Path, str], tmp_path: Path) -> None:
    repo, first = templates
    sources = LocalSources(tmp_path, "0" * 40, cache=tmp_path / "cache")
    loaded = sources.read(FileRef("python.yaml", str(repo), "v1"))
    assert loaded.text == PYTHON_V1 and loaded.commit == first
    assert loaded.blob == git(repo, "rev-parse", "v1:.clarity/python.yaml")
    assert loaded.file == f"{repo}@v1:.clarity/python.yaml"
    common = sources.read(FileRef("common.yaml"), relative_to=loaded)  # that repository, that commit
    assert common.text == COMMON and common.commit == first and common.file == f"{repo}@v1:.clarity/common.yaml"
    assert common.record() == {"file": f"{repo}@v1:.clarity/common.yaml", "repo": str(repo),
                               "path": ".clarity/common.yaml", "ref": "v1", "commit": first,
                               "blob": git(repo, "rev-parse", "v1:.clarity/common.yaml")}


def test_a_moved_tag_is_followed_a_commit_is_not(templates: tuple[Path, str], tmp_path: Path) -> None:
    repo, first = templates
    sources = LocalSources(tmp_path, None, cache=tmp_path / "cache", repositories={"acme/templates": str(repo)})
    assert "echo v1" in sources.read(FileRef("python.yaml", "acme/templates", "v1")).text  # the mirror is made
    second = commit(repo, {".clarity/python.yaml": PYTHON_V1.replace("v1", "v2")})
    git(repo, "tag", "-f", "v1")
    moved = sources.read(FileRef("python.yaml", "acme/templates", "v1"))
    assert "echo v2" in moved.text and moved.commit == second
    pinned = sources.read(FileRef("python.yaml", "acme/templates", first))
    assert "echo v1" in pinned.text and pinned.commit == first
    short = sources.read(FileRef("python.yaml", "acme/templates", first[:10]))
    assert short.commit == first
    assert sources.read(FileRef("python.yaml", "acme/templates", "main")).commit == second


def test_what_cannot_be_read(templates: tuple[Path, str], tmp_path: Path) -> None:
    repo, _ = templates
    sources = LocalSources(tmp_path, None, cache=tmp_path / "cache", repositories={"t": str(repo)})
    with pytest.raises(SourceError, match="repository t has no tag, branch or commit 'v9'"):
        sources.read(FileRef("python.yaml", "t", "v9"))
    with pytest.raises(SourceError, match="no file .clarity/nope.yaml in t at v1"):
        sources.read(FileRef("nope.yaml", "t", "v1"))
    with pytest.raises(SourceError, match="unknown repository 'acme/other'.*CLARITY_REPOSITORIES"):
        sources.read(FileRef("python.yaml", "acme/other", "v1"))
    with pytest.raises(SourceError, match="cannot read repository /nowhere"):
        sources.read(FileRef("python.yaml", "/nowhere", "v1"))


def test_the_working_copy_at_a_commit_or_as_files(tmp_path: Path) -> None:
    app = tmp_path / "app"
    sha = commit(app, {".clarity/base.yaml": COMMON})
    (app / ".clarity" / "new.yaml").write_text(COMMON)
    (app / ".clarity" / "base.yaml").write_text(COMMON.replace("python", "changed"))
    at_commit = LocalSources(app, sha, cache=tmp_path / "cache")
    base = at_commit.read(FileRef("base.yaml"))
    assert base.text == COMMON and base.commit == sha and base.blob == git(app, "rev-parse", "HEAD:.clarity/base.yaml")
    with pytest.raises(SourceError, match="exists in the working tree: commit it, or use --dirty"):
        at_commit.read(FileRef("new.yaml"))
    tree = LocalSources(app, None, cache=tmp_path / "cache")
    assert "changed" in tree.read(FileRef("base.yaml")).text and tree.read(FileRef("new.yaml")).blob is None


def test_lint_text_resolves_through_local_sources(templates: tuple[Path, str], tmp_path: Path) -> None:
    repo, first = templates
    app = tmp_path / "app"
    child = f"workflow:\n  name: app\n  extends: {{repo: {repo}, ref: v1, path: python.yaml}}\n"
    sha = commit(app, {".clarity/ci.yaml": child})
    sources = LocalSources(app, sha, cache=tmp_path / "cache")
    wf, diags = lint_text(child, ".clarity/ci.yaml", {"container": None}, sources=sources,
                          loaded=sources.own(".clarity/ci.yaml", child, None))
    assert wf is not None, [d.format() for d in diags]
    assert [t.name for t in wf.tasks] == ["lint", "test"] and wf.env == {"CI": "true"}


def test_clarity_lint_reads_bases_and_explains(templates: tuple[Path, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    repo, first = templates
    app = tmp_path / "app"
    commit(app, {".clarity/ci.yaml": "workflow:\n  name: app\n  extends: {repo: templates, ref: v1, path: python.yaml}\n"
                                     "  tasks:\n    - {name: test, commands: [\"echo app\"]}\n",
                 ".clarity/cycle.yaml": "workflow:\n  name: c\n  extends: loop.yaml\n",
                 ".clarity/loop.yaml": "workflow:\n  extends: cycle.yaml\n"})
    monkeypatch.setenv("CLARITY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLARITY_REPOSITORIES", f"templates={repo}")
    monkeypatch.chdir(app)
    assert cli.main(["lint", ".clarity/ci.yaml"]) == 0
    assert cli.main(["lint", ".clarity/cycle.yaml"]) == 1
    out = capsys.readouterr().out
    assert (".clarity/cycle.yaml:3:12: error: extends makes a cycle: .clarity/cycle.yaml -> .clarity/loop.yaml -> "
            ".clarity/cycle.yaml (the base .clarity/loop.yaml extends .clarity/cycle.yaml at .clarity/loop.yaml:2:12)") in out
    assert cli.main(["lint", "--explain", ".clarity/ci.yaml"]) == 0
    out = capsys.readouterr().out
    python, common = "templates@v1:.clarity/python.yaml", "templates@v1:.clarity/common.yaml"
    assert f"# base: {python} (commit {first[:12]}, " in out and f"# base: {common} (commit {first[:12]}, " in out
    assert f"  name: app  # .clarity/ci.yaml:2\n" in out
    assert f"  env:  # {common}:3\n    CI: 'true'  # {common}:3\n" in out
    assert f"    - name: test  # .clarity/ci.yaml:5\n      image: busybox  # {python}:4\n" in out
    assert f"      commands:  # .clarity/ci.yaml:5\n        - echo app  # .clarity/ci.yaml:5\n" in out
