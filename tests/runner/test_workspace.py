from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest

from runner.spec import Workspace
from runner.workspace import WorkspaceCache, WorkspaceError

if TYPE_CHECKING:
    from tests.runner.conftest import Repo


def test_checkout_exports_the_commit_without_git(
    make_repo: Callable[..., Repo], workspaces: WorkspaceCache, tmp_path: Path
) -> None:
    repo = make_repo()
    first = repo.commit({"README": "v1\n", "src/app.sh": "echo hi\n"})
    os.chmod(repo.path / "src/app.sh", 0o755)
    os.symlink("README", repo.path / "link")
    second = repo.commit({"README": "v2\n"})

    dest = tmp_path / "ws1"
    workspaces.checkout(Workspace(repo=str(repo.path), commit=first), dest)
    assert (dest / "README").read_text() == "v1\n"
    assert not (dest / "link").exists() and not (dest / ".git").exists()

    dest2 = tmp_path / "ws2"
    workspaces.checkout(Workspace(repo=str(repo.path), commit=second), dest2)
    assert (dest2 / "README").read_text() == "v2\n"
    assert os.readlink(dest2 / "link") == "README"
    assert os.stat(dest2 / "src/app.sh").st_mode & 0o111


def test_missing_commit_is_a_clear_error(make_repo: Callable[..., Repo], workspaces: WorkspaceCache, tmp_path: Path) -> None:
    repo = make_repo()
    repo.commit({"a": "1"})
    with pytest.raises(WorkspaceError, match=f"commit {'0' * 40} does not exist in repository {repo.path}"):
        workspaces.checkout(Workspace(repo=str(repo.path), commit="0" * 40), tmp_path / "ws")


def test_missing_repository_is_a_clear_error(workspaces: WorkspaceCache, tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="could not clone"):
        workspaces.checkout(Workspace(repo=str(tmp_path / "nope"), commit="0" * 40), tmp_path / "ws")


def test_option_like_commit_refused(make_repo: Callable[..., Repo], workspaces: WorkspaceCache, tmp_path: Path) -> None:
    repo = make_repo()
    repo.commit({"a": "1"})
    with pytest.raises(WorkspaceError, match="is not a commit"):
        workspaces.checkout(Workspace(repo=str(repo.path), commit="--upload-pack=touch x"), tmp_path / "ws")


def test_mirror_reused_and_fetched_only_when_missing(
    make_repo: Callable[..., Repo], workspaces: WorkspaceCache, tmp_path: Path
) -> None:
    repo = make_repo()
    first = repo.commit({"a": "1"})
    workspaces.checkout(Workspace(repo=str(repo.path), commit=first), tmp_path / "w1")
    mirror = workspaces.mirror_path(str(repo.path))
    assert mirror.is_dir() and mirror.name.endswith(".git") and len(mirror.stem) == 16
    inode = mirror.stat().st_ino
    fetch_head = mirror / "FETCH_HEAD"
    assert not fetch_head.exists()

    workspaces.checkout(Workspace(repo=str(repo.path), commit=first), tmp_path / "w2")
    assert mirror.stat().st_ino == inode and not fetch_head.exists()  # known commit: no fetch

    second = repo.commit({"a": "2"})
    workspaces.checkout(Workspace(repo=str(repo.path), commit=second), tmp_path / "w3")
    assert mirror.stat().st_ino == inode and fetch_head.exists()  # new commit: fetched, not re-cloned
    assert (tmp_path / "w3" / "a").read_text() == "2"


def test_concurrent_checkouts_share_one_mirror(
    make_repo: Callable[..., Repo], workspaces: WorkspaceCache, tmp_path: Path
) -> None:
    repo = make_repo()
    sha = repo.commit({"a": "same"})
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            workspaces.checkout(Workspace(repo=str(repo.path), commit=sha), tmp_path / f"c{i}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all((tmp_path / f"c{i}" / "a").read_text() == "same" for i in range(6))
    assert len(list((tmp_path / "cache" / "mirrors").glob("*.git"))) == 1


def test_commit_none_uses_head(make_repo: Callable[..., Repo], workspaces: WorkspaceCache, tmp_path: Path) -> None:
    repo = make_repo()
    repo.commit({"a": "1"})
    repo.commit({"a": "2"})
    workspaces.checkout(Workspace(repo=str(repo.path)), tmp_path / "ws")
    assert (tmp_path / "ws" / "a").read_text() == "2"


def test_dirty_copy_skips_git_venv_pycache(make_repo: Callable[..., Repo], workspaces: WorkspaceCache, tmp_path: Path) -> None:
    repo = make_repo()
    repo.commit({"a": "committed"})
    (repo.path / "a").write_text("edited")
    (repo.path / "new.txt").write_text("untracked")
    for skipped in (".venv/bin", "__pycache__", "pkg/__pycache__"):
        (repo.path / skipped).mkdir(parents=True)
        (repo.path / skipped / "x").write_text("x")
    dest = tmp_path / "ws"
    workspaces.checkout(Workspace(repo=str(repo.path), dirty_path=str(repo.path)), dest)
    assert (dest / "a").read_text() == "edited" and (dest / "new.txt").read_text() == "untracked"
    for skipped in (".git", ".venv", "__pycache__", "pkg/__pycache__"):
        assert not (dest / skipped).exists()


def test_dirty_path_missing(workspaces: WorkspaceCache, tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="does not exist"):
        workspaces.checkout(Workspace(repo="x", dirty_path=str(tmp_path / "none")), tmp_path / "ws")


def test_known_commit_is_one_git_process_and_keeps_attributes(
    make_repo: Callable[..., Repo], workspaces: WorkspaceCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runner.workspace as workspace

    repo = make_repo()
    sha = repo.commit({".gitattributes": "*.txt text eol=crlf\n", "a.txt": "x\ny\n", "bin/run": "#!/bin/sh\n"})
    os.chmod(repo.path / "bin/run", 0o755)
    sha = repo.commit({"bin/run": "#!/bin/sh\necho\n"})
    workspaces.checkout(Workspace(repo=str(repo.path), commit=sha), tmp_path / "w1")  # clones the mirror
    calls: list[tuple[str, ...]] = []
    real = workspace._run
    monkeypatch.setattr(workspace, "_run", lambda args, env: calls.append(args) or real(args, env))
    workspaces.checkout(Workspace(repo=str(repo.path), commit=sha), tmp_path / "w2")
    assert len(calls) == 1 and "read-tree" in calls[0]
    assert (tmp_path / "w2" / "a.txt").read_bytes() == b"x\r\ny\r\n"  # .gitattributes applied
    assert os.stat(tmp_path / "w2" / "bin/run").st_mode & 0o111
    assert not (tmp_path / "w2" / ".git").exists()
