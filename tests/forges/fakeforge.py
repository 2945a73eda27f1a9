"""A fake GitHub, GitLab and Gitea for the status reporters: real HTTP on 127.0.0.1 that checks
every request against the contracts in `shared/fixtures/forge-api/`.

Served (one server, one prefix per forge):
- `/github/...`: `POST /repos/{owner}/{repo}/statuses/{sha}`, `POST /repos/{owner}/{repo}/check-runs`,
  `PATCH /repos/{owner}/{repo}/check-runs/{id}` (the three operations of the fixture), and for
  GitHub Apps `POST /app/installations/{id}/access_tokens` and `GET /repos/{o}/{r}/installation`
  (not in the fixture: shaped after GitHub's documentation, authenticated by a JWT checked with
  the App's public key).
- `/gitlab/api/v4/projects/{id}/statuses/{sha}` (id numeric or the URL-encoded path).
- `/gitea/api/v1/repos/{owner}/{repo}/statuses/{sha}`.

Checked on every request (a failure is a *violation*: recorded, and answered 404 for a path no
contract has, 401 for auth, else 422 (GitHub, Gitea) or 400 (GitLab), in the forge's error shape;
`assert_no_violations`, run by the `fake_forge` fixture at teardown, fails the test):
- method and path match an operation of the contracts; the sha is a full hex SHA;
- the auth header form: `token X` / `Bearer X` (GitHub), `PRIVATE-TOKEN: X` (GitLab),
  `token X` (Gitea); check runs only with an App installation token;
- the JSON body against the operation's request schema (GitHub: OpenAPI `requestBody`, with
  `nullable` honoured and the dangling `$ref`s accepting anything; Gitea: `CreateStatusOption`;
  GitLab: the attribute table's machine-readable summary, unknown attributes refused);
- the states of `x-contract-notes` (GitHub statuses; Gitea: the swagger's five unless
  `gitea_states` says otherwise; GitLab's documented six); check runs: only the statuses a
  third-party App may set, `conclusion` if and only if `completed`, never `stale`, an `output`
  with a title; GitHub's 140-character description limit (answered with GitHub's real 422).
Answers are checked too, against the response schemas (a fake that drifted from the contract
would make the tests prove nothing).

Behaviour emulated (not violations): unknown token 401, unknown repository 404, GitLab's 400
"Cannot transition status via :run from :running" when a pending/running status gets the state
it is in (or `pending` after `running`), an older GitLab refusing `skipped`
(`gitlab_accepts_skipped = False`), 1000 statuses per sha and context on GitHub.

Scripted failures (`fail`, `rate_limit`, `too_many_requests`) answer the next matching requests
after the contract check; `down()` closes connections without answering (or hangs) until `up()`
or for some seconds.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Literal
from urllib.parse import parse_qsl, unquote

import jsonschema
import jwt
import pytest

CONTRACTS = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "forge-api"

GITHUB_TOKEN = "ghp_FAKEtoken0123456789"
GITLAB_TOKEN = "glpat-FAKEtoken0123456789"
GITEA_TOKEN = "FAKEgiteatoken0123456789"
GITHUB_REPO = "acme/app"
GITLAB_PROJECT = "acme/platform/app"
GITLAB_PROJECT_ID = 42
GITEA_REPO = "acme/app"

SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
GITHUB_DESCRIPTION_LIMIT = 140
GITHUB_DOCS = "https://docs.github.com/rest"
JSON = dict[str, Any]


# --- contracts ------------------------------------------------------------------------------

SCHEMA_ONLY = {"description", "example", "examples", "discriminator", "nullable", "externalDocs", "xml"}


def pointer(root: Any, ref: str) -> Any:
    """The node a local `#/a/b` reference points at, or None (dangling)."""
    if not ref.startswith("#/"):
        return None
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def json_schema(node: Any, root: Any) -> Any:
    """An OpenAPI 3.0 / Swagger 2.0 schema as JSON Schema: local `$ref`s inlined (a dangling one,
    left out of the fixture on purpose, accepts anything), `nullable` as a null type,
    documentation-only keywords dropped."""
    if isinstance(node, list):
        return [json_schema(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = pointer(root, node["$ref"])
        return {} if target is None else json_schema(target, root)
    out: JSON = {}
    for key, value in node.items():
        if key in SCHEMA_ONLY or key.startswith("x-"):
            continue
        if key == "properties":
            out[key] = {name: json_schema(sub, root) for name, sub in value.items()}
        else:
            out[key] = json_schema(value, root)
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def validator(schema: Any) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def route(template: str, params: dict[str, str] | None = None) -> re.Pattern[str]:
    """`/repos/{owner}/{repo}` as a regex with one named group per parameter (no `/` inside)."""
    params = params or {}
    out, last = "", 0
    for m in re.finditer(r"\{([a-z_]+)\}", template):
        out += re.escape(template[last:m.start()]) + f"(?P<{m.group(1)}>{params.get(m.group(1), '[^/]+')})"
        last = m.end()
    return re.compile(out + re.escape(template[last:]))


@dataclass(frozen=True)
class Operation:
    forge: str
    name: str
    method: str
    pattern: re.Pattern[str]
    body: jsonschema.protocols.Validator | None
    response: jsonschema.protocols.Validator | None


@dataclass(frozen=True)
class Contracts:
    operations: tuple[Operation, ...]
    github_notes: JSON
    gitea_notes: JSON
    gitlab: JSON  # the machine-readable summary
    gitlab_response_keys: frozenset[str]

    @classmethod
    def load(cls, folder: Path = CONTRACTS) -> Contracts:
        gh = json.loads((folder / "github-statuses-checks.json").read_text())
        gt = json.loads((folder / "gitea-create-status.json").read_text())
        gl = (folder / "gitlab-commit-status.md").read_text()
        ops: list[Operation] = []
        for template, item in gh["paths"].items():
            for method, op in item.items():
                body = op["requestBody"]["content"]["application/json"]["schema"]
                code, answer = next(iter(op["responses"].items()))
                assert code.startswith("2"), (template, code)
                ops.append(Operation("github", op["operationId"], method.upper(),
                                     route(template, {"check_run_id": r"\d+"}),
                                     validator(json_schema(body, gh)),
                                     validator(json_schema(answer["content"]["application/json"]["schema"], gh))))
        notes = gt["x-contract-notes"]
        for template, item in gt["paths"].items():
            op = item["post"]
            body = json_schema(next(p["schema"] for p in op["parameters"] if p["in"] == "body"), gt)
            body["required"] = ["state"]  # "needed in practice" (x-contract-notes.request_body)
            # The responses' `#/responses/CommitStatus` was not copied: the definition it wraps is.
            ops.append(Operation("gitea", op["operationId"], "POST", route(template), validator(body),
                                 validator(json_schema(gt["definitions"]["CommitStatus"], gt))))
        summary = json.loads(section_json(gl, "## Machine-readable summary"))
        example = json.loads(section_json(gl, "Example response"))
        ops.append(Operation("gitlab", "commit-statuses/create", summary["method"],
                             route(summary["path"].removeprefix("/api/v4").replace("{id}", "{project}")),
                             None, None))
        return cls(tuple(ops), gh["x-contract-notes"], notes, summary, frozenset(example))


def section_json(markdown: str, heading: str) -> str:
    """The first ```json block after `heading`."""
    start = markdown.index(heading)
    m = re.compile(r"```json\n(.*?)\n```", re.S).search(markdown, start)
    assert m, f"no json block after {heading!r}"
    return m.group(1)


# --- requests, answers, records -------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # raw, still percent-encoded
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Seen:
    """A request the fake received; `status` None when it was dropped (`down`)."""

    forge: str
    method: str
    path: str
    status: int | None
    body: Any


@dataclass(frozen=True)
class Accepted:
    """A status the forge took: `state` in the forge's own words."""

    forge: str
    repo: str
    sha: str
    context: str
    state: str
    description: str | None
    target_url: str | None
    body: JSON


@dataclass
class CheckRun:
    id: int
    repo: str
    head_sha: str
    name: str
    status: str
    conclusion: str | None
    calls: list[tuple[str, JSON]]  # (method, body), in order


@dataclass
class Scripted:
    forge: str | None
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class App:
    app_id: int
    public_key: str
    installation_id: int


class Violation(Exception):
    """A request that breaks a contract; `answer` overrides the generic error answer."""

    def __init__(self, problems: list[str], status: int, answer: Answer | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.status = status
        self.answer = answer


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the fake -------------------------------------------------------------------------------


class FakeForge:
    """The fake forge server; a context manager. See the module docstring."""

    def __init__(self, contracts: Contracts | None = None) -> None:
        self.contracts = contracts or Contracts.load()
        self.tokens = {"github": {GITHUB_TOKEN}, "gitlab": {GITLAB_TOKEN}, "gitea": {GITEA_TOKEN}}
        self.repos = {"github": {GITHUB_REPO}, "gitlab": {GITLAB_PROJECT}, "gitea": {GITEA_REPO}}
        self.gitlab_ids = {str(GITLAB_PROJECT_ID): GITLAB_PROJECT}
        self.gitlab_accepts_skipped = True
        self.gitea_states: list[str] = list(self.contracts.gitea_notes["state_values_in_this_swagger"])
        self.accepted: list[Accepted] = []
        self.check_runs: dict[int, CheckRun] = {}
        self.seen: list[Seen] = []
        self.violations: list[str] = []
        self.apps: list[App] = []
        self._installation_tokens: dict[str, int] = {}
        self._gitlab_current: dict[tuple[str, str, str], str] = {}
        self._script: list[Scripted] = []
        self._down: tuple[str, float] | None = None  # (mode, until monotonic)
        self._wake = threading.Event()
        self._lock = threading.RLock()
        self._ids = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def __enter__(self) -> FakeForge:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._wake.set()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def url(self) -> str:
        assert self._server is not None, "use FakeForge as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def github_api(self) -> str:
        return self.url + "/github"

    @property
    def gitlab_url(self) -> str:
        return self.url + "/gitlab"

    @property
    def gitea_api(self) -> str:
        return self.url + "/gitea/api/v1"

    # scripting

    def fail(self, status: int = 503, *, times: int = 1, forge: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> None:
        """Answer the next `times` requests (of `forge`, or any) with `status`."""
        with self._lock:
            self._script += [Scripted(forge, status, body, dict(headers or {})) for _ in range(times)]

    def rate_limit(self, reset_in: float = 60, *, times: int = 1) -> int:
        """GitHub's primary rate limit: 403, `X-RateLimit-Remaining: 0`; returns the reset epoch."""
        reset = int(time.time() + reset_in)
        self.fail(403, times=times, forge="github", headers={
            "X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Used": "5000",
            "X-RateLimit-Reset": str(reset), "X-RateLimit-Resource": "core"},
            body={"message": "API rate limit exceeded for installation ID 1.",
                  "documentation_url": f"{GITHUB_DOCS}/overview/rate-limits-for-the-rest-api", "status": "403"})
        return reset

    def too_many_requests(self, retry_after: int = 7, *, forge: str | None = None, times: int = 1) -> None:
        self.fail(429, times=times, forge=forge, headers={"Retry-After": str(retry_after)})

    def down(self, mode: Literal["close", "hang"] = "close", seconds: float | None = None) -> None:
        """Drop every request (close the connection unanswered, or hang then close) until `up()`
        or for `seconds`."""
        with self._lock:
            self._wake.clear()
            self._down = (mode, math.inf if seconds is None else time.monotonic() + seconds)

    def up(self) -> None:
        with self._lock:
            self._down = None
            self._wake.set()

    def add_github_app(self, app_id: int, public_key: str, installation_id: int = 7) -> None:
        with self._lock:
            self.apps.append(App(app_id, public_key, installation_id))

    # assertions

    def statuses(self, forge: str, sha: str | None = None, context: str | None = None) -> list[Accepted]:
        with self._lock:
            return [a for a in self.accepted if a.forge == forge and sha in (None, a.sha)
                    and context in (None, a.context)]

    def states(self, forge: str, sha: str | None = None, context: str | None = None) -> list[str]:
        return [a.state for a in self.statuses(forge, sha, context)]

    def requests(self, forge: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if forge in (None, s.forge)]

    def take_violations(self) -> list[str]:
        with self._lock:
            taken, self.violations = self.violations, []
            return taken

    def assert_no_violations(self) -> None:
        found = self.take_violations()
        assert not found, "requests broke the forge contracts:\n  " + "\n  ".join(found)

    # serving (called from the handler threads)

    def dropped(self) -> str | None:
        """The `down` mode in force, if any."""
        with self._lock:
            if self._down is None:
                return None
            mode, until = self._down
            if time.monotonic() >= until:
                self._down = None
                return None
            return mode

    def wait_up(self, limit: float) -> None:
        with self._lock:
            until = self._down[1] if self._down else 0.0
        self._wake.wait(max(0.0, min(limit, until - time.monotonic())))

    def serve(self, req: Request) -> Answer:
        forge = req.path.split("/")[1] if req.path.count("/") >= 2 else ""
        try:
            answer, body = self._dispatch(forge, req)
        except Violation as exc:
            self._violate(req, *exc.problems)
            answer, body = exc.answer or self._violation_answer(forge, exc), None
        except Exception as exc:  # a bug of the fake must fail the test, not hide in a thread
            self._violate(req, f"the fake forge crashed: {type(exc).__name__}: {exc}")
            answer, body = Answer(500, default_error(forge, 500)), None
        with self._lock:
            self.seen.append(Seen(forge, req.method, req.path, answer.status, body))
        return answer

    def record_drop(self, req: Request) -> None:
        with self._lock:
            self.seen.append(Seen(req.path.split("/")[1], req.method, req.path, None, None))

    def _violate(self, req: Request, *problems: str) -> None:
        with self._lock:
            self.violations += [f"{req.method} {req.path}: {p}" for p in problems]

    def _dispatch(self, forge: str, req: Request) -> tuple[Answer, Any]:
        if forge == "github":
            sub = req.path.removeprefix("/github")
            app = self._github_app_route(req, sub)
            if app is not None:
                return app, None
        elif forge == "gitlab":
            sub = req.path.removeprefix("/gitlab/api/v4")
        elif forge == "gitea":
            sub = req.path.removeprefix("/gitea/api/v1")
        else:
            raise Violation([f"no forge under {req.path!r} (expected /github, /gitlab/api/v4, /gitea/api/v1)"], 404)
        for op in self.contracts.operations:
            if op.forge != forge:
                continue
            m = op.pattern.fullmatch(sub)
            if m and op.method == req.method:
                serve = {"github": self._github, "gitlab": self._gitlab, "gitea": self._gitea}[forge]
                return serve(op, m.groupdict(), req)
        raise Violation([f"no {forge} operation in the contracts for {req.method} {sub}"], 404)

    def _scripted(self, forge: str) -> Answer | None:
        with self._lock:
            for i, s in enumerate(self._script):
                if s.forge in (None, forge):
                    del self._script[i]
                    body = s.body if s.body is not None else default_error(forge, s.status)
                    return Answer(s.status, body, s.headers)
        return None

    # GitHub

    def _github(self, op: Operation, params: dict[str, str], req: Request) -> tuple[Answer, Any]:
        problems: list[str] = []
        token = github_token(req, problems)
        body = json_body(req, problems)
        if op.body is not None and body is not None:
            problems += schema_problems(op.body, body)
        sha = params.get("sha") or (body or {}).get("head_sha")
        if sha is not None and not SHA.fullmatch(str(sha)):
            problems.append(f"{sha!r} is not a full commit SHA")
        notes = self.contracts.github_notes
        is_status = op.name == "repos/create-commit-status"
        too_long = False
        if body is not None and is_status:
            if body.get("state") not in notes["commit_status_state_enum"]:
                problems.append(f"state {body.get('state')!r} is not one of {notes['commit_status_state_enum']}")
            description = body.get("description")
            limit = notes["commit_status_description_max_length"]["value"]
            if isinstance(description, str) and len(description) > limit:
                problems.append(f"description of {len(description)} characters (maximum is {limit})")
                too_long = True
        if body is not None and not is_status:
            problems += check_run_problems(body, notes)
        if not is_status and token is not None and token not in self._installation_tokens:
            problems.append("check runs need a GitHub App installation token")
        if problems:
            raise Violation(problems, 401 if token is None else 422, TOO_LONG if too_long and len(problems) == 1 else None)
        assert body is not None and token is not None
        scripted = self._scripted("github")
        if scripted:
            return scripted, body
        if token not in self.tokens["github"] and token not in self._installation_tokens:
            return Answer(401, {"message": "Bad credentials", "documentation_url": GITHUB_DOCS, "status": "401"}), body
        repo = f"{unquote(params['owner'])}/{unquote(params['repo'])}"
        if repo not in self.repos["github"]:
            return Answer(404, github_not_found()), body
        base = f"{self.github_api}/repos/{repo}"
        if is_status:
            answer = self._github_status(repo, str(sha), body, base)
        elif op.name == "checks/create":
            answer = self._check_run(repo, None, body, base)
        else:
            answer = self._check_run(repo, int(params["check_run_id"]), body, base)
        if answer.status < 300:
            self._self_check(req, op.response, answer.body)
        return answer, body

    def _github_status(self, repo: str, sha: str, body: JSON, base: str) -> Answer:
        context = body.get("context") or "default"
        with self._lock:
            if len(self.statuses("github", sha, context)) >= 1000:
                return Answer(422, {"message": "Validation Failed", "errors": [{
                    "resource": "Status", "code": "custom",
                    "message": "This SHA and context has reached the maximum number of statuses."}],
                    "documentation_url": f"{GITHUB_DOCS}/commits/statuses#create-a-commit-status", "status": "422"})
            self._ids += 1
            n = self._ids
            self.accepted.append(Accepted("github", repo, sha, context, body["state"], body.get("description"),
                                          body.get("target_url"), body))
        stamp = now_iso()
        return Answer(201, {"url": f"{base}/statuses/{sha}", "avatar_url": None, "id": n, "node_id": f"SC_{n}",
                            "state": body["state"], "description": body.get("description"),
                            "target_url": body.get("target_url"), "context": context, "created_at": stamp,
                            "updated_at": stamp, "creator": None},
                      {"Location": f"{base}/statuses/{sha}"})

    def _check_run(self, repo: str, run_id: int | None, body: JSON, base: str) -> Answer:
        with self._lock:
            if run_id is None:
                self._ids += 1
                run = CheckRun(self._ids, repo, body["head_sha"], body["name"], "queued", None, [])
                self.check_runs[run.id] = run
            else:
                found = self.check_runs.get(run_id)
                if found is None or found.repo != repo:
                    return Answer(404, github_not_found())
                run = found
            run.calls.append(("POST" if run_id is None else "PATCH", body))
            run.name = body.get("name", run.name)
            run.status = body.get("status", "completed" if "conclusion" in body else run.status)
            run.conclusion = body.get("conclusion") if run.status == "completed" else None
            self.accepted.append(Accepted("github", repo, run.head_sha, run.name,
                                          run.conclusion or run.status, (body.get("output") or {}).get("title"),
                                          body.get("details_url"), body))
        output = body.get("output") or {}
        stamp = now_iso()
        return Answer(201 if run_id is None else 200, {
            "id": run.id, "head_sha": run.head_sha, "node_id": f"CR_{run.id}", "external_id": body.get("external_id"),
            "url": f"{base}/check-runs/{run.id}", "html_url": f"https://github.example/{repo}/runs/{run.id}",
            "details_url": body.get("details_url"), "status": run.status, "conclusion": run.conclusion,
            "started_at": stamp, "completed_at": stamp if run.status == "completed" else None,
            "output": {"title": output.get("title"), "summary": output.get("summary"), "text": output.get("text"),
                       "annotations_count": 0, "annotations_url": f"{base}/check-runs/{run.id}/annotations"},
            "name": run.name, "check_suite": {"id": 1}, "app": None, "pull_requests": []})

    def _github_app_route(self, req: Request, sub: str) -> Answer | None:
        """The App endpoints PyGithub uses (outside the fixture), or None for other paths."""
        token_path = re.fullmatch(r"/app/installations/(\d+)/access_tokens", sub)
        install_path = re.fullmatch(r"/repos/([^/]+)/([^/]+)/installation", sub)
        if not ((token_path and req.method == "POST") or (install_path and req.method == "GET")):
            return None
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.count(".") != 2:
            raise Violation([f"App endpoints need `Authorization: Bearer <JWT>`, got {auth.split(' ')[0]!r}"], 401)
        scripted = self._scripted("github")
        if scripted:
            return scripted
        app = self._app_of(auth.removeprefix("Bearer "))
        if app is None:
            return Answer(401, {"message": "A JSON web token could not be decoded", "documentation_url": GITHUB_DOCS,
                                "status": "401"})
        if install_path:
            repo = f"{unquote(install_path.group(1))}/{unquote(install_path.group(2))}"
            if repo not in self.repos["github"]:
                return Answer(404, github_not_found())
            return Answer(200, {"id": app.installation_id, "app_id": app.app_id, "target_type": "Organization",
                                "account": {"login": repo.split("/")[0], "id": 1}, "repository_selection": "all",
                                "permissions": {"checks": "write", "statuses": "write"}})
        assert token_path is not None
        if int(token_path.group(1)) != app.installation_id:
            return Answer(404, github_not_found())
        with self._lock:
            self._ids += 1
            token = f"ghs_FAKEinstallation{self._ids:06d}"
            self._installation_tokens[token] = app.installation_id
        expires = datetime.fromtimestamp(time.time() + 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Answer(201, {"token": token, "expires_at": expires, "repository_selection": "all",
                            "permissions": {"checks": "write", "statuses": "write"}})

    def _app_of(self, token: str) -> App | None:
        for app in self.apps:
            try:
                claims = jwt.decode(token, app.public_key, algorithms=["RS256"],
                                    options={"require": ["iat", "exp", "iss"], "verify_iss": False})
            except jwt.PyJWTError:
                continue
            if str(claims["iss"]) == str(app.app_id) and claims["exp"] - claims["iat"] <= 660:
                return app
        return None

    # GitLab

    def _gitlab(self, op: Operation, params: dict[str, str], req: Request) -> tuple[Answer, Any]:
        problems: list[str] = []
        token = req.headers.get("private-token")
        if not token:
            problems.append("no PRIVATE-TOKEN header")
        values = gitlab_values(req, problems)
        problems += gitlab_problems(self.contracts.gitlab, values)
        if not SHA.fullmatch(params["sha"]):
            problems.append(f"{params['sha']!r} is not a full commit SHA")
        if problems:
            raise Violation(problems, 401 if not token else 400)
        scripted = self._scripted("gitlab")
        if scripted:
            return scripted, values
        if token not in self.tokens["gitlab"]:
            return Answer(401, {"message": "401 Unauthorized"}), values
        project = unquote(params["project"])
        project = self.gitlab_ids.get(project, project)
        if project not in self.repos["gitlab"]:
            return Answer(404, {"message": "404 Project Not Found"}), values
        state, name = values["state"], values.get("name") or values.get("context") or "default"
        if state == "skipped" and not self.gitlab_accepts_skipped:
            return Answer(400, {"error": "state does not have a valid value"}), values
        key = (project, params["sha"], name)
        with self._lock:
            refused = gitlab_transition(self._gitlab_current.get(key), state)
            if refused:
                return Answer(400, {"message": refused}), values
            self._gitlab_current[key] = state
            self._ids += 1
            n = self._ids
            self.accepted.append(Accepted("gitlab", project, params["sha"], name, state, values.get("description"),
                                          values.get("target_url"), values))
        stamp = now_iso()
        answer = {"id": n, "sha": params["sha"], "ref": values.get("ref"), "status": state, "name": name,
                  "target_url": values.get("target_url"), "description": values.get("description"),
                  "created_at": stamp, "started_at": stamp if state != "pending" else None,
                  "finished_at": stamp if state not in ("pending", "running") else None, "allow_failure": False,
                  "coverage": values.get("coverage"),
                  "author": {"id": 1, "username": "clarity-bot", "name": "Clarity", "state": "active",
                             "avatar_url": None, "web_url": "https://gitlab.example/clarity-bot"}}
        missing = self.contracts.gitlab_response_keys - set(answer)
        if missing:
            self._violate(req, f"the fake's own answer lacks {sorted(missing)} (see the example response)")
        return Answer(201, answer), values

    # Gitea

    def _gitea(self, op: Operation, params: dict[str, str], req: Request) -> tuple[Answer, Any]:
        problems: list[str] = []
        auth = req.headers.get("authorization", "")
        if not re.fullmatch(r"token \S+", auth):
            problems.append(f"Authorization must be `token <token>`, got {auth.split(' ')[0] or 'none'!r}")
        body = json_body(req, problems)
        if op.body is not None and body is not None:
            problems += schema_problems(op.body, body)
            if body.get("state") not in self.gitea_states:
                problems.append(f"state {body.get('state')!r} is not one of {self.gitea_states}")
        if not SHA.fullmatch(params["sha"]):
            problems.append(f"{params['sha']!r} is not a full commit SHA")
        if problems:
            raise Violation(problems, 401 if not auth.startswith("token ") else 422)
        assert body is not None
        scripted = self._scripted("gitea")
        if scripted:
            return scripted, body
        if auth.removeprefix("token ") not in self.tokens["gitea"]:
            return Answer(401, {"message": "user does not exist [uid: 0, name: ]", "url": self.gitea_api + "/swagger"}), body
        repo = f"{unquote(params['owner'])}/{unquote(params['repo'])}"
        if repo not in self.repos["gitea"]:
            return Answer(404, {"errors": ["repository does not exist"], "message": "The target couldn't be found.",
                                "url": self.gitea_api + "/swagger"}), body
        context = body.get("context") or ""
        with self._lock:
            self._ids += 1
            n = self._ids
            self.accepted.append(Accepted("gitea", repo, params["sha"], context, body["state"],
                                          body.get("description"), body.get("target_url"), body))
        stamp = now_iso()
        answer = {"id": n, "status": body["state"], "target_url": body.get("target_url", ""),
                  "description": body.get("description", ""), "url": f"{self.gitea_api}/repos/{repo}/statuses/{params['sha']}",
                  "context": context, "creator": None, "created_at": stamp, "updated_at": stamp}
        self._self_check(req, op.response, answer)
        return Answer(201, answer), body

    # errors

    def _self_check(self, req: Request, response: jsonschema.protocols.Validator | None, body: Any) -> None:
        if response is not None:
            self._violate(req, *(f"the fake's own answer breaks the response schema: {p}"
                                 for p in schema_problems(response, body)))

    def _violation_answer(self, forge: str, exc: Violation) -> Answer:
        text = "; ".join(exc.problems)
        if forge == "gitlab":
            return Answer(exc.status, {"message": "401 Unauthorized"} if exc.status == 401 else {"error": text})
        if forge == "gitea":
            return Answer(exc.status, {"message": text, "url": self.url + "/gitea/api/swagger"})
        if exc.status == 404:
            return Answer(404, github_not_found())
        if exc.status == 401:
            return Answer(401, {"message": "Requires authentication", "documentation_url": GITHUB_DOCS, "status": "401"})
        return Answer(422, {"message": "Invalid request.\n\n" + text, "documentation_url": GITHUB_DOCS, "status": "422"})


# --- checks ---------------------------------------------------------------------------------


def github_token(req: Request, problems: list[str]) -> str | None:
    auth = req.headers.get("authorization", "")
    m = re.fullmatch(r"(token|Bearer) (\S+)", auth)
    if not m:
        problems.append(f"Authorization must be `token <token>` or `Bearer <token>`, got {auth.split(' ')[0] or 'none'!r}")
        return None
    if m.group(2).count(".") == 2:
        problems.append("a GitHub App JWT cannot write statuses or check runs (use an installation token)")
    return m.group(2)


def json_body(req: Request, problems: list[str]) -> JSON | None:
    if not req.headers.get("content-type", "").startswith("application/json"):
        problems.append(f"Content-Type {req.headers.get('content-type')!r} is not application/json")
    try:
        body = json.loads(req.body or b"null")
    except ValueError:
        problems.append("the body is not JSON")
        return None
    if not isinstance(body, dict):
        problems.append(f"the body is not a JSON object: {body!r:.60}")
        return None
    return body


def schema_problems(v: jsonschema.protocols.Validator, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or 'body'}: {e.message}"
            for e in sorted(v.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))]


def check_run_problems(body: JSON, notes: JSON) -> list[str]:
    """The check-run rules of the contract notes that the schema does not say."""
    problems = []
    status, conclusion = body.get("status"), body.get("conclusion")
    if status is not None and status not in notes["check_run_status_settable_by_third_party_apps"]:
        problems.append(f"status {status!r}: a third-party App may only set "
                        f"{notes['check_run_status_settable_by_third_party_apps']}")
    if conclusion is not None and status != "completed":
        problems.append(f"conclusion {conclusion!r} sent with status {status!r}: only with `completed`")
    if status == "completed" and conclusion is None:
        problems.append("status `completed` without a conclusion")
    if conclusion == "stale":
        problems.append("only GitHub sets the conclusion `stale`")
    output = body.get("output")
    if isinstance(output, dict) and not output.get("title"):
        problems.append("output without a title")
    return problems


def gitlab_values(req: Request, problems: list[str]) -> JSON:
    """The attributes from the query string, a form, or a JSON body (all three are allowed)."""
    values: JSON = dict(parse_qsl(req.query, keep_blank_values=True))
    kind = req.headers.get("content-type", "")
    if req.body and kind.startswith("application/json"):
        try:
            body = json.loads(req.body)
        except ValueError:
            problems.append("the body is not JSON")
            body = {}
        if isinstance(body, dict):
            values.update(body)
        else:
            problems.append("the JSON body is not an object")
    elif req.body and kind.startswith("application/x-www-form-urlencoded"):
        values.update(parse_qsl(req.body.decode(), keep_blank_values=True))
    elif req.body:
        problems.append(f"a body of type {kind!r}")
    return values


def gitlab_problems(summary: JSON, values: JSON) -> list[str]:
    problems = []
    fields = summary["body_or_query"]
    allowed = set(fields) | {f["alias"] for f in fields.values() if "alias" in f}
    for name, rule in fields.items():
        value = values.get(name)
        if value is None:
            if rule.get("required"):
                problems.append(f"{name} is missing")
            continue
        if "enum" in rule and value not in rule["enum"]:
            problems.append(f"{name} {value!r} is not one of {rule['enum']}")
        if "max_length" in rule and len(str(value)) > rule["max_length"]:
            problems.append(f"{name} is longer than {rule['max_length']} characters")
        if rule.get("type") == "float" and not is_number(value, float):
            problems.append(f"{name} {value!r} is not a number")
        if rule.get("type") == "integer" and not is_number(value, int):
            problems.append(f"{name} {value!r} is not an integer")
    problems += [f"unknown attribute {name!r}" for name in sorted(set(values) - allowed)]
    return problems


def is_number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return kind is float or isinstance(value, int)
    try:
        kind(value)
        return True
    except ValueError:
        return False


# GitLab's commit status state machine, as the statuses API drives it: a status that is pending
# or running is updated in place; any other (or none) starts a new one, which can take any state.
GITLAB_EVENTS = {"pending": "enqueue", "running": "run", "success": "success", "failed": "drop",
                 "canceled": "cancel", "skipped": "skip"}
GITLAB_FROM = {"enqueue": set(), "run": {"pending"}, "success": {"pending", "running"},
               "drop": {"pending", "running"}, "cancel": {"pending", "running"}, "skip": {"pending"}}


def gitlab_transition(current: str | None, state: str) -> str | None:
    """GitLab's 400 message when `state` cannot follow `current`, else None."""
    if current not in ("pending", "running"):
        return None
    event = "run" if state == "running" and current == "running" else GITLAB_EVENTS[state]
    if state == "running" and current == "pending":
        return None  # enqueue (silently refused) then run
    if current in GITLAB_FROM[event]:
        return None
    return (f"Cannot transition status via :{event} from :{current} "
            f"(Reason(s): Status cannot transition via \"{event}\")")


# GitHub's answer to a description over 140 characters (SOURCES.md).
TOO_LONG = Answer(422, {"message": "Validation Failed", "errors": [{
    "resource": "Status", "field": "description", "code": "custom",
    "message": f"description is too long (maximum is {GITHUB_DESCRIPTION_LIMIT} characters)"}],
    "documentation_url": f"{GITHUB_DOCS}/commits/statuses#create-a-commit-status", "status": "422"})


def github_not_found() -> JSON:
    return {"message": "Not Found", "documentation_url": GITHUB_DOCS, "status": "404"}


def default_error(forge: str, status: int) -> JSON:
    reason = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
              503: "Service Unavailable", 422: "Validation Failed"}.get(status, "Error")
    if forge == "gitlab":
        return {"message": f"{status} {reason}"}
    if forge == "gitea":
        return {"message": reason, "url": "https://gitea.example/api/swagger"}
    return {"message": reason, "documentation_url": GITHUB_DOCS, "status": str(status)}


# --- HTTP -----------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeForge/1"

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake: FakeForge = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        req = Request(self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, body)
        mode = fake.dropped()
        if mode is not None:
            if mode == "hang":
                fake.wait_up(30)
            fake.record_drop(req)
            self.close_connection = True
            return
        answer = fake.serve(req)
        data = b"" if answer.body is None else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_forge() -> Iterator[FakeForge]:
    """A running FakeForge; fails the test at teardown when a request broke a contract."""
    if not CONTRACTS.is_dir():
        pytest.skip(f"forge contracts not found at {CONTRACTS} (CI lays shared/ beside the checkout)")
    with FakeForge() as forge:
        yield forge
        forge.assert_no_violations()
