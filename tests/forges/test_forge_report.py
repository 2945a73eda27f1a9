"""Contract tests of the status reporters against the fake forge (tests/forges/fakeforge.py):
each request they make is checked against shared/fixtures/forge-api/, and each failure the
forges answer becomes `Retry` or `Rejected` as the outbox needs."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from typing import Any, Callable, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from controller.forges import report
from controller.forges.github_status import GitHubChecks, GitHubStatuses
from controller.forges.gitea_status import GiteaStatuses
from controller.forges.gitlab_status import GitLabStatuses
from controller.forges.report import (
    STATES, CheckDetails, Rejected, Reporter, Retry, State, Status, Target, describe, reporter,
)
from tests.forges.fakeforge import (  # noqa: F401 - fake_forge is a fixture
    CONTRACTS, GITEA_REPO, GITEA_TOKEN, GITHUB_REPO, GITHUB_TOKEN, GITLAB_PROJECT, GITLAB_PROJECT_ID, GITLAB_TOKEN, TOO_LONG,
    FakeForge, fake_forge,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98"
APP_ID = 4242
INSTALLATION = 7
BAD_TOKEN = "wrong-SECRET-token-0001"

KINDS = ["github", "github-app", "gitlab", "gitea"]
FORGE = {"github": "github", "github-app": "github", "gitlab": "gitlab", "gitea": "gitea"}
REPO = {"github": GITHUB_REPO, "github-app": GITHUB_REPO, "gitlab": GITLAB_PROJECT, "gitea": GITEA_REPO}
MISSING = {"github": "acme/nope", "github-app": "acme/nope", "gitlab": "acme/platform/nope", "gitea": "acme/nope"}

# SOURCES.md, "State names side by side", written out again here so the code is checked
# against the table rather than against itself.
EXPECTED: dict[str, dict[str, str]] = {
    "github": {"queued": "pending", "running": "pending", "success": "success", "failure": "failure",
               "error": "error", "canceled": "error", "skipped": "success"},
    "github-app": {"queued": "queued", "running": "in_progress", "success": "success", "failure": "failure",
                   "error": "failure", "canceled": "cancelled", "skipped": "skipped"},
    "gitlab": {"queued": "pending", "running": "running", "success": "success", "failure": "failed",
               "error": "failed", "canceled": "canceled", "skipped": "skipped"},
    "gitea": {"queued": "pending", "running": "pending", "success": "success", "failure": "failure",
              "error": "error", "canceled": "error", "skipped": "success"},
}


@pytest.fixture(scope="module")
def app_key() -> tuple[str, str]:
    """A GitHub App key pair: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@pytest.fixture
def forge(fake_forge: FakeForge, app_key: tuple[str, str]) -> FakeForge:
    fake_forge.add_github_app(APP_ID, app_key[1], INSTALLATION)
    return fake_forge


MakeReporter = Callable[..., Reporter]


@pytest.fixture
def make(forge: FakeForge, app_key: tuple[str, str]) -> Iterator[MakeReporter]:
    """make(kind, timeout=2, **Target fields) -> a reporter on the fake forge, closed at the end."""
    made: list[Reporter] = []

    def build(kind: str, timeout: float = 2.0, **fields: Any) -> Reporter:
        made.append(reporter(target(forge, kind, app_key[0], **fields), timeout=timeout, write_interval=None))
        return made[-1]

    yield build
    for r in made:
        r.close()


def target(forge: FakeForge, kind: str, app_key: str, **fields: Any) -> Target:
    bases: dict[str, dict[str, Any]] = {
        "github": dict(forge="github", api_url=forge.github_api, token=GITHUB_TOKEN),
        "github-app": dict(forge="github", api_url=forge.github_api, app_id=APP_ID, private_key=app_key),
        "gitlab": dict(forge="gitlab", api_url=forge.gitlab_url, token=GITLAB_TOKEN),
        "gitea": dict(forge="gitea", api_url=forge.gitea_api, token=GITEA_TOKEN),
    }
    return Target(**{**bases[kind], **fields})


def status(kind: str, state: State = "running", **fields: Any) -> Status:
    base = Status(state=state, context="clarity/ci", description=f"Clarity: {state}",
                  target_url="https://ci.example/runs/12", sha=SHA, repo=REPO[kind])
    return replace(base, **fields)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- every state conforms -------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_state_is_accepted_by_the_contract(make: MakeReporter, forge: FakeForge, kind: str, state: State) -> None:
    context = f"clarity/{state}"
    make(kind).send(status(kind, state, context=context))
    assert forge.states(FORGE[kind], SHA, context) == [EXPECTED[kind][state]]


def test_state_tables_follow_sources() -> None:
    assert {s: report.github_status_state(s) for s in STATES} == EXPECTED["github"]
    assert {s: report.github_check_state(s)[1] or report.github_check_state(s)[0] for s in STATES} == EXPECTED["github-app"]
    assert {s: report.gitlab_state(s) for s in STATES} == EXPECTED["gitlab"]
    assert {s: report.gitea_state(s) for s in STATES} == EXPECTED["gitea"]
    # conclusion only with completed
    for s in STATES:
        check_status, conclusion = report.github_check_state(s)
        assert (conclusion is not None) == (check_status == "completed"), s


# --- descriptions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("short", 140, "short"),
    ("x" * 140, 140, "x" * 140),
    ("x" * 141, 140, "x" * 139 + "…"),
    ("🙂" * 140, 140, "🙂" * 140),  # 560 bytes in UTF-8, still 140 code points
    ("é🙂" * 100, 140, "é🙂" * 69 + "é…"),
    ("abcdef", 3, "ab…"),
])
def test_describe_counts_code_points(text: str, limit: int, expected: str) -> None:
    assert describe(text, limit) == expected
    assert len(describe(text, limit)) <= limit


@pytest.mark.parametrize("kind", KINDS)
def test_description_is_cut_to_140_code_points(make: MakeReporter, forge: FakeForge, kind: str) -> None:
    text = "Ünïcödé✓🙂—" * 30
    assert len(text) > 140 and len(text[:140].encode()) > 280  # a cut by bytes would differ
    make(kind).send(status(kind, description=text))
    [sent] = forge.statuses(FORGE[kind], SHA)
    assert sent.description == text[:139] + "…"
    assert len(sent.description) == 140


def test_description_limit_is_a_contract_the_fake_enforces(forge: FakeForge) -> None:
    answer = httpx.post(f"{forge.github_api}/repos/{GITHUB_REPO}/statuses/{SHA}",
                        headers={"Authorization": f"token {GITHUB_TOKEN}"},
                        json={"state": "success", "context": "ci", "description": "é" * 141})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["message"] == "description is too long (maximum is 140 characters)"
    assert any("141 characters" in v for v in forge.take_violations())


# --- GitHub ---------------------------------------------------------------------------------


def test_github_token_status_is_one_post_and_no_get(make: MakeReporter, forge: FakeForge) -> None:
    r = make("github")
    assert r.send(status("github", "running")) is None
    assert r.send(status("github", "success")) is None
    assert [(s.method, s.status) for s in forge.requests()] == [("POST", 201), ("POST", 201)]
    assert forge.states("github", SHA, "clarity/ci") == ["pending", "success"]
    assert forge.statuses("github")[0].target_url == "https://ci.example/runs/12"


def test_github_status_without_target_url(make: MakeReporter, forge: FakeForge) -> None:
    make("github").send(status("github", target_url=None))
    [sent] = forge.statuses("github")
    assert "target_url" not in sent.body


def test_check_run_is_created_once_then_updated(make: MakeReporter, forge: FakeForge) -> None:
    r = make("github-app")
    summary = "| task | took |\n| --- | --- |\n" + "| build | 3 s |\n" * 5000  # > 65535 characters
    first = r.send(status("github-app", "queued"))
    assert first is not None and first.isdigit()
    assert r.send(status("github-app", "running"), first) == first
    details = CheckDetails(title="1 of 3 tasks failed", summary=summary, text="last lines of test")
    assert r.send(status("github-app", "failure", check=details), first) == first

    run = forge.check_runs[int(first)]
    assert [method for method, _ in run.calls] == ["POST", "PATCH", "PATCH"]
    (_, created), (_, running), (_, done) = run.calls
    assert created["status"] == "queued" and "conclusion" not in created
    assert created["name"] == "clarity/ci" and created["head_sha"] == SHA
    assert created["details_url"] == "https://ci.example/runs/12"
    assert running["status"] == "in_progress" and "conclusion" not in running
    assert done["status"] == "completed" and done["conclusion"] == "failure"
    assert done["output"]["title"] == "1 of 3 tasks failed"
    assert len(done["output"]["summary"]) == 65535 and done["output"]["summary"].endswith("…")
    assert done["output"]["text"] == "last lines of test"
    assert (run.status, run.conclusion) == ("completed", "failure")

    # The App's installation was looked up and its token bought once, before the first write.
    assert [(s.method, s.path.removeprefix("/github")) for s in forge.requests()] == [
        ("GET", f"/repos/{GITHUB_REPO}/installation"),
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        ("POST", f"/repos/{GITHUB_REPO}/check-runs"),
        ("PATCH", f"/repos/{GITHUB_REPO}/check-runs/{first}"),
        ("PATCH", f"/repos/{GITHUB_REPO}/check-runs/{first}"),
    ]
    # Another commit: a new check run, with the cached installation and token.
    other = r.send(status("github-app", "queued", sha=OTHER_SHA))
    assert other not in (None, first)
    assert [s.method for s in forge.requests()][5:] == ["POST"]


def test_check_run_with_installation_id_skips_the_lookup(make: MakeReporter, forge: FakeForge) -> None:
    make("github-app", installation_id=INSTALLATION).send(status("github-app", "success"))
    assert [s.path.rsplit("/", 1)[-1] for s in forge.requests()] == ["access_tokens", "check-runs"]
    assert forge.states("github") == ["success"]


def test_check_run_gone_is_created_anew(make: MakeReporter, forge: FakeForge) -> None:
    handle = make("github-app").send(status("github-app", "success"), "999999")
    assert handle is not None and handle != "999999"
    assert [(s.method, s.status) for s in forge.requests()][-2:] == [("PATCH", 404), ("POST", 201)]


def test_check_run_handle_that_is_not_an_id_is_rejected(make: MakeReporter) -> None:
    with pytest.raises(Rejected, match="not a GitHub check run id"):
        make("github-app").send(status("github-app"), "abc")


def test_app_not_installed_on_the_repository(make: MakeReporter) -> None:
    with pytest.raises(Rejected, match="not installed on acme/nope") as caught:
        make("github-app").send(status("github-app", repo="acme/nope"))
    assert caught.value.status == 404


def test_app_with_a_wrong_key_is_rejected(make: MakeReporter) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(Rejected) as caught:
        make("github-app", private_key=other).send(status("github-app"))
    assert caught.value.status == 401
    assert "JSON web token could not be decoded" in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value)


def test_app_key_that_is_not_a_key() -> None:
    with pytest.raises(ValueError, match="cannot sign a JWT"):
        GitHubChecks(Target("github", "https://api.github.com", app_id=1, private_key="not a key"))


# --- GitLab ---------------------------------------------------------------------------------


def test_gitlab_repeated_transition_is_sent_not_failed(make: MakeReporter, forge: FakeForge) -> None:
    r = make("gitlab")
    states: list[State] = ["queued", "queued", "running", "running", "queued", "success"]
    for state in states:
        r.send(status("gitlab", state))
    assert forge.states("gitlab", SHA, "clarity/ci") == ["pending", "running", "success"]
    answers = [(s.body["state"], s.status) for s in forge.requests("gitlab")]
    assert answers == [("pending", 201), ("pending", 400), ("running", 201), ("running", 400),
                       ("pending", 400), ("success", 201)]
    # After a final state, the same name starts a new status (as GitLab does).
    r.send(status("gitlab", "running"))
    assert forge.states("gitlab", SHA, "clarity/ci")[-1] == "running"


def test_gitlab_skipped_after_running_is_not_left_running(make: MakeReporter, forge: FakeForge) -> None:
    r = make("gitlab")
    r.send(status("gitlab", "running"))
    r.send(status("gitlab", "skipped"))  # GitLab: "Cannot transition status via :skip from :running"
    assert forge.states("gitlab") == ["running", "success"]
    assert [(s.body["state"], s.status) for s in forge.requests("gitlab")] == [
        ("running", 201), ("skipped", 400), ("success", 201)]


def test_gitlab_project_path_is_url_encoded(make: MakeReporter, forge: FakeForge) -> None:
    make("gitlab").send(status("gitlab"))
    make("gitlab", api_url=forge.gitlab_url + "/api/v4/").send(status("gitlab", "success"))
    make("gitlab").send(status("gitlab", "success", repo=str(GITLAB_PROJECT_ID), context="by-id"))
    paths = [s.path for s in forge.requests("gitlab")]
    assert paths[:2] == [f"/gitlab/api/v4/projects/acme%2Fplatform%2Fapp/statuses/{SHA}"] * 2
    assert paths[2] == f"/gitlab/api/v4/projects/{GITLAB_PROJECT_ID}/statuses/{SHA}"
    assert [a.body["name"] for a in forge.statuses("gitlab")] == ["clarity/ci", "clarity/ci", "by-id"]


def test_gitlab_sends_ref_and_drops_an_overlong_target_url(make: MakeReporter, forge: FakeForge) -> None:
    make("gitlab").send(status("gitlab", ref="main", target_url="https://ci.example/" + "x" * 300))
    [sent] = forge.statuses("gitlab")
    assert sent.body["ref"] == "main" and "target_url" not in sent.body


def test_gitlab_without_skipped_gets_success(make: MakeReporter, forge: FakeForge) -> None:
    forge.gitlab_accepts_skipped = False
    make("gitlab").send(status("gitlab", "skipped"))
    assert forge.states("gitlab") == ["success"]
    assert [s.status for s in forge.requests("gitlab")] == [400, 201]


# --- failures: Retry ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_server_error_is_retry_then_recovers(make: MakeReporter, forge: FakeForge, kind: str) -> None:
    r = make(kind)
    r.send(status(kind, "queued"))  # the App's installation and token are cached now
    forge.fail(503, forge=FORGE[kind])
    with pytest.raises(Retry) as caught:
        r.send(status(kind, "running"))
    assert caught.value.status == 503 and caught.value.retry_after is None
    assert "503" in str(caught.value)
    forge.fail(502, forge=FORGE[kind], headers={"Retry-After": "30"})
    with pytest.raises(Retry) as caught:
        r.send(status(kind, "running"))
    assert caught.value.retry_after == 30
    r.send(status(kind, "running"))
    assert forge.states(FORGE[kind], SHA) == [EXPECTED[kind]["queued"], EXPECTED[kind]["running"]]


@pytest.mark.parametrize("kind", KINDS)
def test_too_many_requests_is_retry_after(make: MakeReporter, forge: FakeForge, kind: str) -> None:
    forge.too_many_requests(7, forge=FORGE[kind])
    with pytest.raises(Retry) as caught:
        make(kind).send(status(kind))
    assert caught.value.status == 429 and caught.value.retry_after == 7


@pytest.mark.parametrize("kind", ["github", "github-app"])
def test_github_rate_limit_is_retry_until_reset(make: MakeReporter, forge: FakeForge, kind: str) -> None:
    r = make(kind)
    r.send(status(kind, "queued"))
    forge.rate_limit(reset_in=42)
    with pytest.raises(Retry) as caught:
        r.send(status(kind, "running"))
    assert caught.value.status == 403
    assert caught.value.retry_after is not None and 40 < caught.value.retry_after <= 42
    assert "rate limit" in str(caught.value)


def test_github_secondary_rate_limit(make: MakeReporter, forge: FakeForge) -> None:
    r = make("github")
    secondary = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}
    forge.fail(403, forge="github", body=secondary, headers={"Retry-After": "90"})
    with pytest.raises(Retry) as caught:
        r.send(status("github"))
    assert caught.value.retry_after == 90
    forge.fail(403, forge="github", body=secondary)
    with pytest.raises(Retry) as caught:
        r.send(status("github"))
    assert caught.value.retry_after == 60  # GitHub: wait at least a minute when it does not say


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused_is_retry(app_key: tuple[str, str], kind: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    api = {"github": url, "github-app": url, "gitlab": url, "gitea": url + "/api/v1"}[kind]
    fields: dict[str, Any] = ({"app_id": APP_ID, "private_key": app_key[0]} if kind == "github-app"
                              else {"token": "tok-SECRET"})
    r = reporter(Target(forge=FORGE[kind], api_url=api, **fields), timeout=2, write_interval=None)  # type: ignore[arg-type]
    try:
        with pytest.raises(Retry) as caught:
            r.send(status(kind))
        assert caught.value.retry_after is None and caught.value.status is None
        assert "could not reach" in str(caught.value) and "tok-SECRET" not in str(caught.value)
    finally:
        r.close()


@pytest.mark.parametrize("kind", KINDS)
def test_dropped_connection_is_retry(make: MakeReporter, forge: FakeForge, kind: str) -> None:
    r = make(kind)
    forge.down("close")
    with pytest.raises(Retry):
        r.send(status(kind))
    forge.up()
    r.send(status(kind))
    assert forge.states(FORGE[kind], SHA) == [EXPECTED[kind]["running"]]


@pytest.mark.parametrize("kind", KINDS)
def test_forge_that_stops_answering_times_out_as_retry(make: MakeReporter, forge: FakeForge, kind: str) -> None:
    r = make(kind, timeout=1)
    forge.down("hang", seconds=10)
    started = time.monotonic()
    with pytest.raises(Retry):
        r.send(status(kind))
    assert time.monotonic() - started < 5
    forge.up()


# --- failures: Rejected ---------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "said"), [
    ("github", "Bad credentials"), ("gitlab", "401 Unauthorized"), ("gitea", "user does not exist"),
])
def test_bad_token_is_rejected_without_the_token(make: MakeReporter, kind: str, said: str) -> None:
    with pytest.raises(Rejected) as caught:
        make(kind, token=BAD_TOKEN).send(status(kind))
    assert caught.value.status == 401
    assert said in str(caught.value) and "token" in str(caught.value)
    assert BAD_TOKEN not in str(caught.value) and BAD_TOKEN not in repr(caught.value)


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
def test_unknown_repository_is_rejected(make: MakeReporter, kind: str) -> None:
    with pytest.raises(Rejected, match="unknown repository or commit") as caught:
        make(kind).send(status(kind, repo=MISSING[kind]))
    assert caught.value.status == 404 and MISSING[kind] in str(caught.value)


def test_unknown_repository_with_installation_id_is_rejected(make: MakeReporter) -> None:
    with pytest.raises(Rejected) as caught:
        make("github-app", installation_id=INSTALLATION).send(status("github-app", repo="acme/nope"))
    assert caught.value.status == 404


@pytest.mark.parametrize(("kind", "code", "body", "said"), [
    ("github", 422, TOO_LONG.body, "Validation Failed; description is too long (maximum is 140 characters)"),
    ("github-app", 422, {"message": "Invalid request.\n\nFor 'properties/status', \"x\" is not a member of enum."},
     "is not a member of enum"),
    ("gitlab", 400, {"message": {"description": ["is too long (maximum is 255 characters)"]}},
     "description is too long"),
    ("gitea", 422, {"message": "[State]: invalid state", "url": "https://gitea.example/api/swagger"}, "invalid state"),
])
def test_validation_error_is_rejected_with_the_forge_message(make: MakeReporter, forge: FakeForge, kind: str,
                                                            code: int, body: Any, said: str) -> None:
    r = make(kind)
    r.send(status(kind, "queued"))
    forge.fail(code, forge=FORGE[kind], body=body)
    with pytest.raises(Rejected) as caught:
        r.send(status(kind, "success"))
    assert caught.value.status == code and said in str(caught.value)


# --- targets and the factory ----------------------------------------------------------------


def test_factory_picks_the_reporter(app_key: tuple[str, str]) -> None:
    cases = [
        (Target("github", "https://api.github.com", token="t"), GitHubStatuses),
        (Target("github", "https://api.github.com", app_id=1, private_key=app_key[0]), GitHubChecks),
        (Target("gitlab", "https://gitlab.example", token="t"), GitLabStatuses),
        (Target("gitea", "https://gitea.example/api/v1", token="t"), GiteaStatuses),
    ]
    for t, cls in cases:
        r = reporter(t)
        assert isinstance(r, cls)
        r.close()


@pytest.mark.parametrize("fields", [
    dict(forge="github", api_url="https://api.github.com"),  # neither token nor App
    dict(forge="gitlab", api_url="https://gitlab.example", app_id=1, private_key="k"),
    dict(forge="github", api_url="https://api.github.com", app_id=1),  # App without key
    dict(forge="gitea", api_url="gitea.example", token="t"),
    dict(forge="bitbucket", api_url="https://x", token="t"),
])
def test_target_refuses_what_cannot_work(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Target(**fields)


def test_target_and_status_do_not_show_secrets() -> None:
    t = Target("github", "https://api.github.com", token="tok-SECRET", app_id=None)
    assert "tok-SECRET" not in repr(t)
    with pytest.raises(ValueError, match="unknown state"):
        status("github", "passed")  # type: ignore[arg-type]


# --- the fake forge catches bad requests ----------------------------------------------------


def test_fake_flags_a_github_state_that_does_not_exist(forge: FakeForge) -> None:
    answer = httpx.post(f"{forge.github_api}/repos/{GITHUB_REPO}/statuses/{SHA}",
                        headers={"Authorization": f"token {GITHUB_TOKEN}"},
                        json={"state": "running", "context": "clarity/ci"})
    assert answer.status_code == 422
    assert forge.statuses("github") == []
    found = forge.take_violations()
    assert any("'running'" in v for v in found), found


def test_fake_flags_check_run_rules(forge: FakeForge) -> None:
    url = f"{forge.github_api}/repos/{GITHUB_REPO}/check-runs"
    auth = {"Authorization": f"token {GITHUB_TOKEN}"}
    httpx.post(url, headers=auth, json={"name": "ci", "head_sha": SHA, "status": "in_progress", "conclusion": "success",
                                        "output": {"title": "t", "summary": "s"}})
    httpx.patch(url + "/1", headers=auth, json={"status": "completed"})
    found = forge.take_violations()
    assert any("only with `completed`" in v for v in found), found
    assert any("without a conclusion" in v for v in found), found
    assert any("installation token" in v for v in found), found


def test_fake_flags_gitlab_and_gitea_mistakes(forge: FakeForge) -> None:
    gitlab_auth = {"PRIVATE-TOKEN": GITLAB_TOKEN}
    unencoded = httpx.post(f"{forge.gitlab_url}/api/v4/projects/{GITLAB_PROJECT}/statuses/{SHA}",
                           headers=gitlab_auth, json={"state": "running"})
    github_word = httpx.post(f"{forge.gitlab_url}/api/v4/projects/{GITLAB_PROJECT_ID}/statuses/{SHA}",
                             headers=gitlab_auth, json={"state": "failure", "colour": "red"})
    bearer = httpx.post(f"{forge.gitea_api}/repos/{GITEA_REPO}/statuses/{SHA}",
                        headers={"Authorization": f"Bearer {GITEA_TOKEN}"}, json={"state": "pending"})
    skipped = httpx.post(f"{forge.gitea_api}/repos/{GITEA_REPO}/statuses/{SHA}",
                         headers={"Authorization": f"token {GITEA_TOKEN}"}, json={"state": "skipped"})
    branch = httpx.post(f"{forge.gitea_api}/repos/{GITEA_REPO}/statuses/main",
                        headers={"Authorization": f"token {GITEA_TOKEN}"}, json={"state": "pending"})
    assert [a.status_code for a in (unencoded, github_word, bearer, skipped, branch)] == [404, 400, 401, 422, 422]
    found = "\n".join(forge.take_violations())
    for expected in ("no gitlab operation", "'failure' is not one of", "unknown attribute 'colour'",
                     "Authorization must be `token <token>`", "'skipped' is not one of", "'main' is not a full commit SHA"):
        assert expected in found, found
    assert forge.accepted == []


def test_fake_fails_the_test_on_a_violation() -> None:
    if not CONTRACTS.is_dir():
        pytest.skip(f"forge contracts not found at {CONTRACTS}")
    with FakeForge() as fake:
        httpx.post(f"{fake.github_api}/repos/{GITHUB_REPO}/statuses/{SHA}", json={"state": "success"})
        with pytest.raises(AssertionError, match="Authorization must be"):
            fake.assert_no_violations()
