"""Run results as git notes: formatting, merging, and writing to a real repository served over
smart HTTP on 127.0.0.1 (git http-backend, pushes enabled), concurrent writers included."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from controller.notes import NOTES_REF, NoteRun, NotesError, format_note, mask_url, merge_note, write_note
from tests.controller.conftest import Repo, git
from tests.e2e.githttp import GitHttpServer

RUN = NoteRun(
    run_id=42, workflow="ci", workflow_file=".clarity/ci.yaml", blob_sha="abc1234def5678", state="success",
    duration_s=72.4, event="push", ref="refs/heads/main", url="http://controller/api/v1/runs/42",
    tasks=[("lint", "success", 3.1), ("test", "failure", 40.2), ("build", "skipped", None)],
)
BLOCK = """\
clarity run 42: ci success (1m12s)
  workflow: ci (.clarity/ci.yaml @ blob abc1234)
  event: push refs/heads/main
  url: http://controller/api/v1/runs/42
  tasks: lint success 3.1s, test failure 40.2s, build skipped
"""


def run(run_id: int, **kw: object) -> NoteRun:
    return replace(RUN, run_id=run_id, url=f"http://controller/api/v1/runs/{run_id}", **kw)  # type: ignore[arg-type]


# -- the text ----------------------------------------------------------------------------------


def test_format_note_is_the_documented_block() -> None:
    assert format_note(RUN) == BLOCK
    assert format_note(RUN) == format_note(replace(RUN, tasks=list(RUN.tasks)))


def test_format_note_without_optional_parts() -> None:
    bare = replace(RUN, blob_sha=None, duration_s=None, ref=None, tasks=[])
    assert format_note(bare) == (
        "clarity run 42: ci success\n"
        "  workflow: ci (.clarity/ci.yaml)\n"
        "  event: push\n"
        "  url: http://controller/api/v1/runs/42\n"
        "  tasks: (none)\n"
    )


def test_strings_from_git_cannot_break_the_format() -> None:
    evil = replace(RUN, workflow="ci\nclarity run 7: forged success", ref="refs/heads/a\r\nb",
                   tasks=[("lint\n  url: http://evil", "success", 1.0), ("x\x1b[2J", "failure", None)])
    text = format_note(evil)
    lines = text.splitlines()
    assert len(lines) == 5 and all(line.startswith("  ") for line in lines[1:])
    assert lines[0] == "clarity run 42: ci\\x0aclarity run 7: forged success success (1m12s)"
    assert lines[2] == "  event: push refs/heads/a\\x0d\\x0ab"
    assert lines[4] == "  tasks: lint\\x0a  url: http://evil success 1.0s, x\\x1b[2J failure"
    # Merged with another run's block, it is still one block, and its url is the real one.
    merged = merge_note(text, format_note(run(7)))
    assert merged.count("\nclarity run ") == 1 and merged.startswith("clarity run 42: ")
    assert merge_note(merged, text) == merged


def test_merge_appends_replaces_and_keeps_foreign_text() -> None:
    one, two = format_note(run(1)), format_note(run(2))
    assert merge_note("", one) == one
    both = merge_note(one, two)
    assert both == one + "\n" + two
    assert merge_note(both, one) == both
    failed = format_note(run(1, state="failure"))
    assert merge_note(both, failed) == failed + "\n" + two  # replaced in place
    # Another controller's run 1 (another url) is another run.
    other = format_note(replace(run(1), url="http://other/api/v1/runs/1"))
    assert merge_note(both, other) == both + "\n" + other
    assert merge_note("reviewed by hand\n", one) == "reviewed by hand\n\n" + one
    with pytest.raises(ValueError):
        merge_note(one, "not a block\n")


def test_mask_url() -> None:
    assert mask_url("https://user:s3cret-token@host/r.git") == "https://***@host/r.git"
    assert mask_url("https://x-token@host/r.git") == "https://***@host/r.git"
    url = "https://user:s3cret%2Ftoken@host/r.git"
    assert mask_url("denied for s3cret/token and s3cret%2Ftoken", url) == "denied for *** and ***"
    assert mask_url("http://host/r.git") == "http://host/r.git"


# -- on a served repository --------------------------------------------------------------------


@dataclass
class Served:
    server: GitHttpServer
    root: Path
    source: Repo
    commits: list[str]
    tmp: Path

    def url(self, name: str = "repo.git") -> str:
        return f"{self.server.url}/{name}"

    def work(self, name: str = "work") -> Path:
        return self.tmp / "notes-work" / name

    def log(self, sha: str | None = None) -> str:
        """`git log --notes=clarity` in a fresh clone that fetched the notes ref; with `sha`,
        that commit's note (newline-terminated again: `git()` strips its output)."""
        clone = self.tmp / f"clone-{len(list(self.tmp.glob('clone-*')))}"
        git(self.tmp, "clone", "-q", self.url(), str(clone))
        git(clone, "fetch", "-q", "origin", f"{NOTES_REF}:{NOTES_REF}")
        if sha is None:
            return git(clone, "log", "--notes=clarity")
        return git(clone, "log", "-1", "--notes=clarity", "--format=%N", sha) + "\n"


@pytest.fixture
def served(tmp_path: Path, make_repo: Callable[..., Repo]) -> Iterator[Served]:
    source = make_repo({"a.txt": "a\n"})
    commits = [git(source.path, "rev-parse", "HEAD")] + [source.commit({"a.txt": f"{i}\n"}) for i in range(4)]
    root = tmp_path / "served"
    root.mkdir()
    bare = root / "repo.git"
    git(tmp_path, "clone", "-q", "--bare", str(source.path), str(bare))
    git(bare, "config", "http.receivepack", "true")
    with GitHttpServer(root) as server:
        yield Served(server, root, source, commits, tmp_path)


def test_note_is_visible_in_git_log_of_a_fresh_clone(served: Served) -> None:
    sha = served.commits[-1]
    write_note(served.url(), sha, format_note(RUN), work=served.work())
    assert served.log(sha) == BLOCK
    log = served.log()
    assert "Notes (clarity):\n    clarity run 42: ci success (1m12s)" in log
    assert "    tasks: lint success 3.1s, test failure 40.2s, build skipped" in log


def test_two_runs_on_one_commit_make_one_note_with_both_blocks(served: Served) -> None:
    sha = served.commits[0]
    write_note(served.url(), sha, format_note(run(1)), work=served.work("a"))
    write_note(served.url(), sha, format_note(run(2, workflow="deploy")), work=served.work("b"))
    assert served.log(sha) == format_note(run(1)) + "\n" + format_note(run(2, workflow="deploy"))


def test_the_same_run_written_twice_is_there_once(served: Served) -> None:
    sha = served.commits[0]
    for _ in range(2):
        write_note(served.url(), sha, format_note(run(5)), work=served.work())
    write_note(served.url(), sha, format_note(run(5)), work=served.work("elsewhere"))
    assert served.log(sha) == format_note(run(5))
    notes_commits = git(served.root / "repo.git", "rev-list", "--count", NOTES_REF)
    assert notes_commits == "1"  # an identical rewrite pushes nothing
    write_note(served.url(), sha, format_note(run(5, state="failure")), work=served.work())
    assert served.log(sha) == format_note(run(5, state="failure"))


def test_a_newline_in_a_task_name_does_not_break_the_note(served: Served) -> None:
    sha = served.commits[1]
    evil = run(9, tasks=[("lint\nclarity run 1: ci success", "success", 2.0)])
    write_note(served.url(), sha, format_note(evil), work=served.work())
    write_note(served.url(), sha, format_note(run(10)), work=served.work())
    note = served.log(sha)
    assert note == format_note(evil) + "\n" + format_note(run(10))
    assert "  tasks: lint\\x0aclarity run 1: ci success success 2.0s\n" in note


@pytest.mark.parametrize("shared_work", [False, True], ids=["own-work-dirs", "shared-work-dir"])
def test_concurrent_writers_lose_nothing(served: Served, shared_work: bool) -> None:
    """4 writers at once, each writing runs on one shared commit and on commits of its own."""
    writers, per_writer = 4, 3
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []
    expected: dict[str, list[int]] = {}
    for w in range(writers):
        for i in range(per_writer):
            sha = served.commits[0] if i == 0 else served.commits[1 + (w + i) % 4]
            expected.setdefault(sha, []).append(100 * w + i)

    def writer(w: int) -> None:
        work = served.work("shared" if shared_work else f"w{w}")
        try:
            barrier.wait()
            for i in range(per_writer):
                sha = served.commits[0] if i == 0 else served.commits[1 + (w + i) % 4]
                # Headroom over the default 5 (enough in 20 of 20 tries): the contract under
                # test is that no block is lost, not how few retries a loaded machine needs.
                write_note(served.url(), sha, format_note(run(100 * w + i)), work=work, attempts=10)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    for sha, ids in expected.items():
        note = served.log(sha)
        for run_id in ids:
            assert note.count(f"clarity run {run_id}: ") == 1, (run_id, note)
        assert note.count("clarity run ") == len(ids), note


def test_a_missing_repository_is_a_clear_error_with_the_token_masked(served: Served) -> None:
    url = served.url("nope.git").replace("http://", "http://bot:tok3n-secret@")
    with pytest.raises(NotesError) as info:
        write_note(url, served.commits[0], format_note(RUN), work=served.work())
    message = info.value.message
    assert "tok3n-secret" not in message and "bot:" not in message
    assert message.startswith("could not fetch the notes of http://***@127.0.0.1:")
    assert "not found" in message


def test_a_remote_refusing_pushes_is_a_clear_error(served: Served) -> None:
    git(served.root / "repo.git", "config", "http.receivepack", "false")
    url = served.url().replace("http://", "http://bot:tok3n-secret@")
    with pytest.raises(NotesError) as info:
        write_note(url, served.commits[0], format_note(RUN), work=served.work())
    message = info.value.message
    assert "tok3n-secret" not in message
    assert message.startswith("could not push the notes to http://***@127.0.0.1:")
    assert "403" in message


def test_a_rejecting_hook_is_not_retried_and_says_why(served: Served) -> None:
    hook = served.root / "repo.git" / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho denied >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(NotesError, match=r"pre-receive hook declined"):
        write_note(served.url(), served.commits[0], format_note(RUN), work=served.work())


def test_only_a_full_sha_is_accepted(served: Served) -> None:
    for bad in ("HEAD", served.commits[0][:12], "--upload-pack=touch /tmp/x"):
        with pytest.raises(NotesError, match="full sha"):
            write_note(served.url(), bad, format_note(RUN), work=served.work())
    with pytest.raises(NotesError, match="not a repository URL"):
        write_note("--upload-pack=x", served.commits[0], format_note(RUN), work=served.work())
