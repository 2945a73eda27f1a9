"""Run results as git notes under `refs/notes/clarity`, so `git log --notes=clarity` shows CI
history offline.

One note per commit; one block per run in it, in the order written:

    clarity run 42: ci success (1m12s)
      workflow: ci (.clarity/ci.yaml @ blob abc1234)
      event: push refs/heads/main
      url: http://controller/api/v1/runs/42
      tasks: lint success 3.1s, test failure 40.2s, build skipped

A block is keyed by its run id and url (two controllers may both have a run 42): writing a run
again replaces its block in place, so a caller may retry freely.

`write_note` keeps, per remote, a bare repository holding only the notes ref (no branches: `git
notes add` names the commit by its full sha and does not need the object). Each attempt fetches
the remote's notes ref over the local one, merges the block into that commit's note, commits with
`git notes`, and pushes without force. A push that loses a race (non-fast-forward, or the
server's ref lock) is retried from a fresh fetch with a jittered backoff, so concurrent writers
(threads, controllers) never drop each other's blocks. A flock serializes writers sharing one
local repository. Credentials in a URL never reach a message.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence
from urllib.parse import unquote

from controller.console import fmt_duration

NOTES_REF = "refs/notes/clarity"
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Clarity", "GIT_AUTHOR_EMAIL": "clarity@localhost",
    "GIT_COMMITTER_NAME": "Clarity", "GIT_COMMITTER_EMAIL": "clarity@localhost",
}
_MAX_BACKOFF_S = 10.0
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HEADER = re.compile(r"clarity run (\d+): ")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
# A push that lost a race against another writer: refetch and try again.
_LOST_RACE = ("fetch first", "non-fast-forward", "stale info", "cannot lock ref", "failed to lock",
              "failed to update ref", "incorrect old value", "reference already exists")


class NotesError(Exception):
    """A note could not be written; the message is a sentence with git's reason, credentials masked."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class NoteRun:
    """What a note says about one finished run. `tasks`: (name, state, seconds or None)."""

    run_id: int
    workflow: str
    workflow_file: str
    blob_sha: str | None
    state: str
    duration_s: float | None
    event: str
    ref: str | None
    url: str
    tasks: Sequence[tuple[str, str, float | None]] = ()


# -- the text ----------------------------------------------------------------------------------


def clean(text: str) -> str:
    """One line of text: control characters (newlines too) shown as \\xNN, outer spaces dropped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text).strip()


def format_note(run: NoteRun) -> str:
    """The block of one run, ending with a newline. Stable: the same run gives the same text."""
    took = f" ({fmt_duration(run.duration_s)})" if run.duration_s is not None else ""
    where = clean(run.workflow_file) + (f" @ blob {clean(run.blob_sha)[:7]}" if run.blob_sha else "")
    event = " ".join(filter(None, [clean(run.event), clean(run.ref or "")]))
    tasks = ", ".join(
        " ".join(filter(None, [clean(name) or "?", clean(state), fmt_duration(secs) if secs is not None else ""]))
        for name, state, secs in run.tasks
    )
    return "\n".join([
        f"clarity run {int(run.run_id)}: {clean(run.workflow) or '?'} {clean(run.state)}{took}",
        f"  workflow: {clean(run.workflow) or '?'} ({where or '?'})",
        f"  event: {event or '?'}",
        f"  url: {clean(run.url) or '-'}",
        f"  tasks: {tasks or '(none)'}",
    ]) + "\n"


def merge_note(existing: str, block: str) -> str:
    """`existing` with `block` replacing the block of the same run (id and url), else appended.
    Text before the first block (written by someone else) is kept."""
    prelude, blocks = _split(existing)
    new = block.strip("\n")
    key = _key(new)
    if key is None:
        raise ValueError("not a clarity note block: it must start with 'clarity run <id>: '")
    for i, old in enumerate(blocks):
        if _key(old) == key:
            blocks[i] = new
            break
    else:
        blocks.append(new)
    return "\n\n".join(filter(None, [prelude, *blocks])) + "\n"


def _split(note: str) -> tuple[str, list[str]]:
    prelude: list[str] = []
    blocks: list[list[str]] = []
    for line in note.splitlines():
        if _HEADER.match(line):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
        else:
            prelude.append(line)
    return "\n".join(prelude).strip("\n"), ["\n".join(b).strip("\n") for b in blocks]


def _key(block: str) -> tuple[str, str] | None:
    match = _HEADER.match(block)
    if match is None:
        return None
    url = next((line[len("  url: "):] for line in block.splitlines() if line.startswith("  url: ")), "")
    return match.group(1), url


# -- the git side ------------------------------------------------------------------------------


def mask_url(text: str, url: str = "") -> str:
    """`text` with the user and password of any URL shown as ***, and the secret parts of `url`
    removed wherever else they appear."""
    masked = _USERINFO.sub(r"\1***@", text)
    match = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://([^/@\s]+)@", url)
    if match:
        userinfo = match.group(1)
        secrets = {userinfo, unquote(userinfo), *userinfo.split(":", 1)[1:], *unquote(userinfo).split(":", 1)[1:]}
        for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
            masked = masked.replace(secret, "***")
    return masked


def write_note(remote_url: str, sha: str, text: str, *, work: Path,
               env: Mapping[str, str] | None = None, attempts: int = 5) -> None:
    """Merge the block `text` (from `format_note`) into the note of commit `sha` under
    refs/notes/clarity on `remote_url`, and push it. `work`: where the local notes repositories
    live (one per remote). `env`: extra variables for git (e.g. credentials for a helper).
    Raises NotesError when git fails or the push still loses after `attempts` tries, and
    ValueError when `text` is not a block."""
    merge_note("", text)  # a malformed block fails here, before any git
    sha = sha.strip().lower()
    if not _SHA.fullmatch(sha):
        raise NotesError(f"{sha!r} is not the full sha of a commit")
    if remote_url.startswith("-") or not remote_url:
        raise NotesError(f"{mask_url(remote_url)!r} is not a repository URL")
    git = _Git(_local_repo(Path(work), remote_url), remote_url, dict(env or {}))
    with _locked(git.repo.with_suffix(".lock")):
        if not git.repo.exists():
            _init(git.repo, object_format="sha256" if len(sha) == 64 else "sha1", env=git.env)
        for attempt in range(1, max(1, attempts) + 1):
            started = time.monotonic()
            if _attempt(git, sha, text):
                return
            if attempt < attempts:
                # Full jitter, in units of this remote's round trip: writers spread out.
                took = time.monotonic() - started
                time.sleep(random.uniform(0, min(_MAX_BACKOFF_S, took * 2 ** attempt)))
    raise NotesError(f"could not push the notes of {mask_url(remote_url)}: "
                     f"other writers kept updating {NOTES_REF} ({attempts} attempts)")


def _attempt(git: _Git, sha: str, block: str) -> bool:
    """One fetch-merge-commit-push round: True when the note is on the remote."""
    git.fetch_notes()
    existing = git.note(sha)
    merged = merge_note(existing or "", block)
    if existing is not None and merged == existing:
        return True  # already there: a retry of a write that succeeded
    git.run("notes", f"--ref={NOTES_REF}", "add", "-f", "-F", "-", sha, stdin=merged,
            what=f"could not write the note of {sha}")
    return git.push_notes()


@dataclass
class _Git:
    repo: Path
    url: str
    env: dict[str, str]

    def run(self, *args: str, what: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = _run(["--git-dir", str(self.repo), *args], self.env, stdin)
        if proc.returncode != 0:
            raise NotesError(f"{what}: {self.reason(proc)}")
        return proc

    def reason(self, proc: subprocess.CompletedProcess[str]) -> str:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        found = next((line.split(": ", 1)[1] for line in lines
                      if line.startswith(("fatal: ", "error: ")) and ": " in line), None)
        return mask_url(found or (lines[0] if lines else f"git exited with {proc.returncode}"), self.url)

    def fetch_notes(self) -> None:
        """Make the local notes ref what the remote has (or nothing, when the remote has none)."""
        proc = _run(["--git-dir", str(self.repo), "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                     "--", self.url, f"+{NOTES_REF}:{NOTES_REF}"], self.env)
        if proc.returncode == 0:
            return
        if "couldn't find remote ref" in proc.stderr:
            self.run("update-ref", "-d", NOTES_REF, what="could not reset the local notes")
            return
        raise NotesError(f"could not fetch the notes of {mask_url(self.url)}: {self.reason(proc)}")

    def note(self, sha: str) -> str | None:
        """The note of `sha` in the local notes ref, or None."""
        proc = _run(["--git-dir", str(self.repo), "notes", f"--ref={NOTES_REF}", "show", sha], self.env)
        if proc.returncode == 0:
            return proc.stdout
        if "no note found" in proc.stderr:
            return None
        raise NotesError(f"could not read the note of {sha}: {self.reason(proc)}")

    def push_notes(self) -> bool:
        """Push the local notes ref without force: True when pushed, False when another writer
        got there first."""
        proc = _run(["--git-dir", str(self.repo), "push", "--porcelain", "--quiet",
                     "--", self.url, f"{NOTES_REF}:{NOTES_REF}"], self.env)
        if proc.returncode == 0:
            return True
        refused = [line for line in proc.stdout.splitlines() if line.startswith("!")]
        if refused and all(any(why in line for why in _LOST_RACE) for line in refused):
            return False
        detail = refused[0].split("\t")[-1] if refused else self.reason(proc)
        raise NotesError(f"could not push the notes to {mask_url(self.url)}: {mask_url(detail, self.url)}")


def _local_repo(work: Path, url: str) -> Path:
    """One local repository per remote; credentials do not change which."""
    digest = hashlib.sha256(_USERINFO.sub(r"\1", url).encode()).hexdigest()[:16]
    return work / f"notes-{digest}.git"


def _init(repo: Path, *, object_format: str, env: dict[str, str]) -> None:
    repo.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=repo.name + ".", dir=repo.parent))
    try:
        proc = _run(["init", "--bare", "--quiet", f"--object-format={object_format}", str(tmp)], env)
        if proc.returncode != 0:
            raise NotesError(f"could not create {repo}: {proc.stderr.strip()}")
        tmp.rename(repo)  # atomic: the repository exists complete or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(args: list[str], env: Mapping[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    identity = {k: v for k, v in _IDENTITY.items() if k not in os.environ}
    return subprocess.run(
        ["git", *args],
        env={**os.environ, **identity, **_GIT_ENV, **env},
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
    )
