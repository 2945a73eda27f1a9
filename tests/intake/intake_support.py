"""Helpers of the intake tests (fixtures are in conftest.py): git repositories, forge fixtures, signing."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from controller.services import Services
from controller.store.repos import RepoRow
from controller.store.runs import RunRow

# CI lays shared/ beside the checkout, as for tests/forges.
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "webhooks"
SECRET = "s3cret-for-tests"
MAX_BODY = 256 * 1024

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dev One", "GIT_AUTHOR_EMAIL": "dev1@example.org",
    "GIT_COMMITTER_NAME": "Dev One", "GIT_COMMITTER_EMAIL": "dev1@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
}

CI = """\
workflow:
  name: ci
  tasks:
    - name: test
      image: clarity-test-never-pulled
      commands: ["true"]
"""
RELEASE = """\
workflow:
  name: release
  triggers:
    - type: tag
      tags: ["v*"]
  tasks:
    - name: publish
      image: clarity-test-never-pulled
      commands: ["true"]
"""
WORKFLOWS = {".clarity/ci.yaml": CI, ".clarity/release.yaml": RELEASE}




def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class GitRepo:
    path: Path

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def commit(self, files: dict[str, str] | None = None, message: str = "change") -> str:
        for name, text in (files or {}).items():
            p = self.path / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(textwrap.dedent(text))
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self, rev: str = "HEAD") -> str:
        return git(self.path, "rev-parse", rev)

    def tag(self, name: str, annotated: bool = True) -> None:
        git(self.path, "tag", *(["-a", "-m", name] if annotated else []), name)


def register(services: Services, name: str, repo: GitRepo | str, *, forge: str = "github",
             secret: str | None = SECRET, poll_interval_s: float | None = None) -> RepoRow:
    url = repo.url if isinstance(repo, GitRepo) else repo
    return services.repos.add(name=name, url=url, forge=forge, webhook_secret=secret,
                              poll_interval_s=poll_interval_s)


def fixture(path: str, replace: dict[str, str] | None = None) -> bytes:
    """A forge fixture's bytes, with every occurrence of each key replaced by its value."""
    text = (FIXTURES / path).read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{old} is not in {path}"
        text = text.replace(old, new)
    return text.encode()


def edit(body: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    data = json.loads(body)
    change(data)
    return json.dumps(data).encode()


def signed(forge: str, body: bytes, event: str, delivery: str, secret: str = SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if forge == "github":
        return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": "sha256=" + mac,
                "Content-Type": "application/json"}
    if forge == "gitea":
        return {"X-Gitea-Event": event, "X-Gitea-Delivery": delivery, "X-Gitea-Signature": mac,
                "Content-Type": "application/json"}
    return {"X-Gitlab-Event": event, "Idempotency-Key": delivery, "X-Gitlab-Token": secret,
            "Content-Type": "application/json"}


def runs(services: Services, repo: str | None = None) -> list[RunRow]:
    return list(reversed(services.store.list_runs(limit=1000, repo=repo)))


needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"webhook fixtures not found at {FIXTURES} "
                                    "(CI lays shared/ beside the checkout)")
