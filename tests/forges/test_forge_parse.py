"""Every recorded forge delivery parses to the expected neutral event (values read off the files)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from controller.forges import FORGES, Unauthorized
from controller.forges.github import is_fork
from controller.triggers.events import Delivery, Event, PingEvent, PullRequestEvent, PushEvent

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "webhooks"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"webhook fixtures not found at {FIXTURES} "
                                "(CI lays shared/ beside the checkout)")

Z = "0" * 40
GH = "https://github.com/Codertocat/Hello-World.git"
DRONE = "https://github.com/dev2/drone-test-go.git"

# file -> (event header, expected event or None)
CASES: dict[str, tuple[str, Event | None]] = {
    "github/push-branch.json": ("push", PushEvent(
        repo="Codertocat/Hello-World", ref="refs/heads/master",
        before="a10867b14bb761a232cd80139fbd4c0d33264240", after="199eddf46df50de8d02e99bf1c5fdb4101338224",
        created=False, deleted=False, message="Update README", author="Codertocat", sender="Codertocat",
        changed_files=("README.md",), clone_url=GH)),
    "github/push-tag-create.json": ("push", PushEvent(
        repo="dev2/drone-test-go", ref="refs/tags/v0.0.1", before=Z, after="d2b75aa7797ec26b088fa2dd527e9d2c052fcedd",
        created=True, deleted=False, message="Update .drone.yml", author="Dev Two", sender="dev2",
        changed_files=None, clone_url=DRONE)),
    "github/push-branch-delete.json": ("push", PushEvent(
        repo="dev2/drone-test-go", ref="refs/heads/feature-branch",
        before="d2b75aa7797ec26b088fa2dd527e9d2c052fcedd", after=Z, created=False, deleted=True,
        message="", author="", sender="dev2", changed_files=None, clone_url=DRONE)),
    "github/pull_request-opened.json": ("pull_request", PullRequestEvent(
        repo="Codertocat/Hello-World", action="opened", number=2, title="Update the README with new information.",
        head_sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821", head_ref="changes", base_ref="master", fork=False,
        sender="Codertocat", clone_url=GH, head_clone_url=GH)),
    "github/pull_request-synchronize.json": ("pull_request", PullRequestEvent(
        repo="Codertocat/Hello-World", action="synchronize", number=2, title="Update the README with new information.",
        head_sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821", head_ref="changes", base_ref="master", fork=False,
        sender="Codertocat", clone_url=GH, head_clone_url=GH)),
    "github/pull_request-labeled-fork.json": ("pull_request", None),  # labels bring no code
    "github/ping.json": ("ping", PingEvent(repo="Octocoders/Hello-World")),
    "github/create-tag.json": ("create", None),  # the push of the same tag is the event
    "gitlab/push-branch.json": ("Push Hook", PushEvent(
        repo="mike/diaspora", ref="refs/heads/master",
        before="95790bf891e76fee5e1747ab589903a6a1f80f22", after="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        created=False, deleted=False, message="fixed readme\n", author="GitLab dev user", sender="jsmith",
        changed_files=None,  # 2 commits listed of total_commits_count 4: the list is partial
        clone_url="http://example.com/mike/diaspora.git")),
    "gitlab/tag_push-create.json": ("Tag Push Hook", PushEvent(
        repo="jsmith/example", ref="refs/tags/v1.0.0", before=Z, after="82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
        created=True, deleted=False,
        message="Merge branch 'some-feature' into 'master'\n\nRelease v1.0.0\n\nSee merge request jsmith/example!1",
        author="John Smith", sender="jsmith", changed_files=None, clone_url="http://example.com/jsmith/example.git")),
    "gitlab/merge_request-open.json": ("Merge Request Hook", PullRequestEvent(
        repo="gitlabhq/gitlab-test", action="opened", number=1, title="MS-Viewport",
        head_sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7", head_ref="ms-viewport", base_ref="master", fork=False,
        sender="user1", clone_url="http://example.com/gitlabhq/gitlab-test.git",
        head_clone_url="http://example.com/awesome_space/awesome_project.git")),
    "gitea/push-branch.json": ("push", PushEvent(
        repo="Test-CI/multi-line-secrets", ref="refs/heads/main",
        before="6efcf5b7c98f3e7a491675164b7a2e7acac27941", after="29be01c073851cf0db0c6a466e396b725a670453",
        created=False, deleted=False, message="add some text\n", author="dev1", sender="test-user",
        changed_files=("aa", "aaa"), clone_url="http://127.0.0.1:3000/Test-CI/multi-line-secrets.git")),
    "gitea/pull_request-opened.json": ("pull_request", PullRequestEvent(
        repo="jcitizen/my-repo", action="opened", number=1, title="Add License File",
        head_sha="2eba238e33607c1fa49253182e9fff42baafa1eb", head_ref="feature", base_ref="master", fork=False,
        sender="jcitizen", clone_url="https://try.gitea.io/jcitizen/my-repo.git",
        head_clone_url="https://try.gitea.io/jcitizen/my-repo.git")),
    "gitea/pull_request-opened-fork.json": ("pull_request", PullRequestEvent(
        repo="example/example", action="opened", number=2, title="update",
        head_sha="48e773f892a831faa47c0a160d1b7f0cd369ae2a", head_ref="master", base_ref="master", fork=True,
        sender="example2", clone_url="http://localhost:3000/example/example.git",
        head_clone_url="http://localhost:3000/example2/example.git")),
}

EVENT_HEADER = {"github": "X-GitHub-Event", "gitlab": "X-Gitlab-Event", "gitea": "X-Gitea-Event"}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def deliver(forge: str, event: str, payload: dict[str, Any]) -> Delivery:
    body = json.dumps(payload).encode()
    return FORGES[forge].delivery({EVENT_HEADER[forge]: event}, body)


def test_every_fixture_file_has_a_case() -> None:
    on_disk = {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("*/*.json")}
    assert on_disk == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_parses_to_the_expected_event(name: str) -> None:
    forge = name.split("/")[0]
    event_name, expected = CASES[name]
    body = (FIXTURES / name).read_bytes()  # the exact bytes, as a forge would send them
    delivery = FORGES[forge].delivery({EVENT_HEADER[forge]: event_name}, body)
    assert delivery.forge == forge and delivery.event_name == event_name
    assert FORGES[forge].parse(delivery) == expected


@pytest.mark.parametrize("name, branch, tag", [
    ("github/push-branch.json", "master", ""),
    ("github/push-tag-create.json", "", "v0.0.1"),
    ("github/push-branch-delete.json", "feature-branch", ""),
    ("gitlab/push-branch.json", "master", ""),
    ("gitlab/tag_push-create.json", "", "v1.0.0"),
    ("gitea/push-branch.json", "main", ""),
])
def test_push_branch_and_tag(name: str, branch: str, tag: str) -> None:
    event = CASES[name][1]
    assert isinstance(event, PushEvent)
    assert (event.branch, event.tag, event.is_tag) == (branch, tag, bool(tag))


def test_github_fork_is_detected_by_full_name() -> None:
    payload = load("github/pull_request-labeled-fork.json")
    pr = payload["pull_request"]
    assert pr["head"]["repo"]["full_name"] == "suo-duo/actions-test"
    assert is_fork(pr["head"]["repo"], pr["base"]["repo"])
    payload["action"] = "opened"  # the same delivery, had it opened the PR
    event = FORGES["github"].parse(deliver("github", "pull_request", payload))
    assert event == PullRequestEvent(
        repo="suo/actions-test", action="opened", number=5, title="Suo patch 1",
        head_sha="600835c72e2462ea095cf19f1fabe39488dd0d53", head_ref="suo-patch-1", base_ref="main", fork=True,
        sender="suo", clone_url="https://github.com/suo/actions-test.git",
        head_clone_url="https://github.com/suo-duo/actions-test.git")


def test_github_pr_whose_head_repo_was_deleted_is_a_fork_fetched_from_base() -> None:
    payload = load("github/pull_request-opened.json")
    payload["pull_request"]["head"]["repo"] = None
    event = FORGES["github"].parse(deliver("github", "pull_request", payload))
    assert isinstance(event, PullRequestEvent) and event.fork and event.head_clone_url == GH


@pytest.mark.parametrize("action, expected", [
    ("closed", "closed"), ("reopened", "reopened"), ("edited", None), ("assigned", None), ("labeled", None),
])
def test_github_pull_request_actions(action: str, expected: str | None) -> None:
    payload = load("github/pull_request-opened.json")
    payload["action"] = action
    event = FORGES["github"].parse(deliver("github", "pull_request", payload))
    assert (event.action if isinstance(event, PullRequestEvent) else None) == expected


@pytest.mark.parametrize("action, expected", [
    ("synchronized", "synchronize"), ("reopened", "reopened"), ("closed", "closed"), ("label_updated", None),
])
def test_gitea_pull_request_actions(action: str, expected: str | None) -> None:
    payload = load("gitea/pull_request-opened.json")
    payload["action"] = action
    event = FORGES["gitea"].parse(deliver("gitea", "pull_request", payload))
    assert (event.action if isinstance(event, PullRequestEvent) else None) == expected


@pytest.mark.parametrize("action, oldrev, expected", [
    ("update", "95790bf891e76fee5e1747ab589903a6a1f80f22", "synchronize"),
    ("update", None, None),  # a title/label/assignee edit: no new commits
    ("reopen", None, "reopened"), ("close", None, "closed"), ("merge", None, "closed"), ("approved", None, None),
])
def test_gitlab_merge_request_actions(action: str, oldrev: str | None, expected: str | None) -> None:
    payload = load("gitlab/merge_request-open.json")
    payload["object_attributes"]["action"] = action
    if oldrev:
        payload["object_attributes"]["oldrev"] = oldrev
    event = FORGES["gitlab"].parse(deliver("gitlab", "Merge Request Hook", payload))
    assert (event.action if isinstance(event, PullRequestEvent) else None) == expected


def test_gitlab_fork_merge_request_by_project_ids() -> None:
    payload = load("gitlab/merge_request-open.json")
    payload["object_attributes"]["source_project_id"] = 15
    event = FORGES["gitlab"].parse(deliver("gitlab", "Merge Request Hook", payload))
    assert isinstance(event, PullRequestEvent) and event.fork


def test_gitlab_push_with_every_commit_listed_has_changed_files() -> None:
    payload = load("gitlab/push-branch.json")
    payload["total_commits_count"] = len(payload["commits"])
    event = FORGES["gitlab"].parse(deliver("gitlab", "Push Hook", payload))
    assert isinstance(event, PushEvent)
    assert event.changed_files == ("CHANGELOG", "app/controller/application.rb")


def test_gitlab_tag_deletion_is_a_deleted_push() -> None:
    payload = load("gitlab/tag_push-create.json")
    payload["before"], payload["after"], payload["checkout_sha"] = payload["after"], Z, None
    event = FORGES["gitlab"].parse(deliver("gitlab", "Tag Push Hook", payload))
    assert isinstance(event, PushEvent) and event.deleted and not event.created and event.tag == "v1.0.0"


def test_github_forced_push_does_not_claim_changed_files() -> None:
    payload = load("github/push-branch.json")
    payload["forced"] = True
    event = FORGES["github"].parse(deliver("github", "push", payload))
    assert isinstance(event, PushEvent) and event.changed_files is None


def test_gitea_push_with_commits_cut_has_no_changed_files() -> None:
    payload = load("gitea/push-branch.json")
    payload["total_commits"] = 30
    event = FORGES["gitea"].parse(deliver("gitea", "push", payload))
    assert isinstance(event, PushEvent) and event.changed_files is None


@pytest.mark.parametrize("forge, event_name", [
    ("github", "issue_comment"), ("github", "delete"), ("gitlab", "Note Hook"), ("gitlab", "System Hook"),
    ("gitea", "create"), ("gitea", "delete"), ("gitea", "issues"),
])
def test_other_events_are_ignored(forge: str, event_name: str) -> None:
    payload = copy.deepcopy(load("github/create-tag.json"))
    assert FORGES[forge].parse(deliver(forge, event_name, payload)) is None


def test_gitea_body_secret_field_is_not_authentication() -> None:
    name = "gitea/pull_request-opened.json"
    assert load(name)["secret"] == "12345"
    with pytest.raises(Unauthorized):
        FORGES["gitea"].verify({"X-Gitea-Event": "pull_request"}, (FIXTURES / name).read_bytes(), "12345")
