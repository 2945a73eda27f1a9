"""The git poller: for repositories without webhooks, notice new commits and tags by fetching.

Every few seconds it polls each enabled repository whose `poll_interval_s` has passed since
`polled_at`: fetch the controller's mirror, compare its branches and tags with the refs recorded
last time, and hand each change to the Starter as a push, exactly as a webhook would:

- the first poll of a repository only records its refs: its whole history is not news;
- a new or moved branch is a push (before = the old sha, or zeros for a new branch), a new or
  moved tag a tag push; the Starter diffs before..after for path filters and reads the workflow
  files at the commit;
- a deleted ref starts nothing.

A push seen by both a webhook and the poller makes one run: the Starter dedupes per (repo, event,
ref, commit, file). Several replicas polling one repository are harmless for the same reason.

One repository failing (an unreachable URL) is logged and retried with exponential backoff; it
never stops the others. A little jitter keeps replicas and repositories from polling in step.
"""

from __future__ import annotations

import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from controller.loop import Loop
from controller.services import Services
from controller.starter import StartError
from controller.store.repos import RepoRow
from controller.triggers.events import HEADS, TAGS, PushEvent

log = structlog.get_logger("clarity.poller")

TICK_S = 1.0  # how often due repositories are looked for (a cheap query); each has its own interval
JITTER = 0.1  # up to 10% of a repository's interval added to each wait
MAX_BACKOFF_S = 3600.0
ZERO_SHA = "0" * 40


@dataclass
class _Failing:
    count: int
    retry_at: float


@dataclass(frozen=True)
class PollResult:
    runs: list[int]
    pushes: int  # refs that became push events
    first: bool  # refs only recorded


class Poller:
    def __init__(self, services: Services, *, tick_s: float = TICK_S, jitter: float = JITTER) -> None:
        self.services = services
        self.tick_s, self.jitter = tick_s, jitter
        self._failing: dict[int, _Failing] = {}
        # Random waits: replicas started together do not fetch in step.
        self._loop = Loop("poller", lambda: self.tick_s * (1 + random.uniform(0, self.jitter)), self.tick,
                          failed="poll round failed")
        self.start, self.stop = self._loop.start, self._loop.stop

    def tick(self, now: float | None = None) -> dict[int, PollResult | None]:
        """Poll every repository that is due; per repository id, its result (None: it failed)."""
        now = time.time() if now is None else now
        results: dict[int, PollResult | None] = {}
        for repo in self.services.repos.list():
            if self._loop.stopping:
                break
            if not self.due(repo, now):
                continue
            results[repo.id] = self.poll_safely(repo, now)
        return results

    def due(self, repo: RepoRow, now: float) -> bool:
        if not repo.enabled or not repo.poll_interval_s:
            return False
        failing = self._failing.get(repo.id)
        if failing is not None:
            return now >= failing.retry_at
        if repo.polled_at is None:
            return True
        return now >= repo.polled_at + repo.poll_interval_s * (1 + random.uniform(0, self.jitter))

    def poll_safely(self, repo: RepoRow, now: float | None = None) -> PollResult | None:
        try:
            result = self.poll(repo)
        except Exception as exc:
            failing = self._failing.get(repo.id, _Failing(0, 0.0))
            failing.count += 1
            interval = repo.poll_interval_s or self.tick_s
            delay = min(interval * 2 ** min(failing.count - 1, 16), max(MAX_BACKOFF_S, interval))
            failing.retry_at = (time.time() if now is None else now) + delay * (1 + random.uniform(0, self.jitter))
            self._failing[repo.id] = failing
            log.warning("poll failed", repo=repo.name, error=str(exc), failures=failing.count, retry_in_s=round(delay))
            return None
        self._failing.pop(repo.id, None)
        return result

    def poll(self, repo: RepoRow) -> PollResult:
        """Fetch one repository and start what changed since the last poll."""
        mirror, refs = self.services.mirrors.refresh(repo.url)
        refs = {ref: sha for ref, sha in refs.items() if ref.startswith((HEADS, TAGS))}
        if repo.polled_at is None:
            self.services.repos.set_refs(repo.id, refs)
            log.info("first poll: refs recorded", repo=repo.name, refs=len(refs))
            return PollResult(runs=[], pushes=0, first=True)
        seen = self.services.repos.refs(repo.id)
        runs: list[int] = []
        pushes = 0
        # Branches first, then tags: a release tag on a new commit runs after its branch push.
        for ref in sorted(refs, key=lambda r: (r.startswith(TAGS), r)):
            sha, old = refs[ref], seen.get(ref)
            if old == sha:
                continue
            pushes += 1
            message, author = _head(mirror, sha)
            event = PushEvent(repo=repo.name, ref=ref, before=old or ZERO_SHA, after=sha, created=old is None,
                              deleted=False, message=message, author=author, sender="", changed_files=None,
                              clone_url=repo.url)
            try:
                outcome = self.services.starter.push(repo, event, source={"poll": True})
            except StartError as exc:
                # Recorded as seen anyway: the mirror was just fetched, so retrying would fail alike.
                log.warning("polled push could not start", repo=repo.name, ref=ref, sha=sha, error=str(exc))
                continue
            runs.extend(outcome.runs)
            log.info("polled push", repo=repo.name, ref=ref, sha=sha, runs=outcome.runs, skipped=outcome.skipped)
        self.services.repos.set_refs(repo.id, refs)
        return PollResult(runs=runs, pushes=pushes, first=False)


def _head(mirror: Path, sha: str) -> tuple[str, str]:
    """Message and author name of a commit in the mirror ("" when unreadable: the run goes on)."""
    proc = subprocess.run(["git", "--git-dir", str(mirror), "log", "-1", "--format=%an%x00%B", sha, "--"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"})
    if proc.returncode != 0 or "\x00" not in proc.stdout:
        return "", ""
    author, _, message = proc.stdout.partition("\x00")
    return message.strip(), author
