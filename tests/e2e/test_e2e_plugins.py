"""The built-in plugins end to end: `clarity run` in Docker (clarity-plugins:latest), and the
standards' example workflow exactly as written: validate -> transform -> store."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.e2e.conftest import EXAMPLES, REPO_ROOT, Env

pytestmark = pytest.mark.docker

STANDARDS = REPO_ROOT.parent / "shared" / "standards" / "orchestration-standards.md"


def test_the_standards_example_is_copied_verbatim() -> None:
    if not STANDARDS.exists():
        pytest.skip("the shared standards are not beside this checkout")
    text = STANDARDS.read_text()
    block = text.split("## Workflow Definition", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert (EXAMPLES / "standards" / ".clarity" / "example.yaml").read_text() == block


def _tasks(env: Env, run_id: int) -> dict[str, Any]:
    return {t.name: t for t in env.store().list_tasks(run_id)}


def test_the_standards_example_runs_validate_transform_store(env: Env, docker_client: Any,
                                                               no_leftovers: Callable[[str], None]) -> None:
    repo = env.repo(EXAMPLES / "standards")
    r = env.clarity(repo, "run", ".clarity/example.yaml", "--payload", "data/input.json")
    assert r.code == 0, r.out + r.err
    run = env.store().list_runs()[0]
    assert (run.workflow, run.state) == ("example-workflow", "succeeded")
    tasks = _tasks(env, run.id)
    assert list(tasks) == ["validate-input", "process-data", "store-result"]
    assert {t.image for t in tasks.values()} == {"validation 1.0.0", "transformation 1.0.0", "storage 1.0.0"}
    assert run.context["plugins"] == {"validate-input": "validation 1.0.0", "process-data": "transformation 1.0.0",
                                      "store-result": "storage 1.0.0"}
    given = json.loads((repo / "data" / "input.json").read_text())
    assert tasks["validate-input"].output == given  # validated data flows on as it is
    processed = tasks["process-data"].output
    stored = env.home / "storage" / "backups" / str(run.id) / "data.json"
    assert stored.is_file(), sorted(str(p) for p in (env.home / "storage").rglob("*"))
    assert json.loads(stored.read_text()) == processed
    assert tasks["store-result"].output["written"] and tasks["store-result"].output["kind"] == "filesystem"
    # the rules did their work: only paid orders, with the computed and renamed fields
    paid = [o for o in given["orders"] if o["status"] == "paid"]
    assert isinstance(processed, list) and len(processed) == len(paid) > 0
    show = env.clarity(repo, "runs", "show", str(run.id))
    assert "validate-input: validation 1.0.0" in show.out, show.out
    no_leftovers("example-workflow")


def test_invalid_input_fails_the_validation_with_every_path_and_nothing_is_stored(env: Env, docker_client: Any) -> None:
    repo = env.repo(EXAMPLES / "standards")
    bad = {"orders": [{"id": "o-1", "customer": "ann", "amount": -5, "status": "paid"},
                      {"id": "o-2", "customer": "bob", "amount": 3, "status": "lost"}]}
    (env.tmp / "bad.json").write_text(json.dumps(bad))
    r = env.clarity(repo, "run", ".clarity/example.yaml", "--payload", str(env.tmp / "bad.json"))
    assert r.code == 1, r.out + r.err
    run = env.store().list_runs()[0]
    tasks = _tasks(env, run.id)
    assert tasks["validate-input"].state == "failed"
    assert tasks["process-data"].state != "succeeded" and tasks["store-result"].state != "succeeded"
    log = "\n".join(line for _t, _ts, line in env.store().logs(run.id, "validate-input"))
    assert "$.orders[0].amount" in log and "$.orders[1].status" in log
    assert not (env.home / "storage" / "backups" / str(run.id)).exists()


BAD_FILES: dict[str, tuple[str, str]] = {
    "config against the plugin's schema": ("""\
workflow:
  name: bad
  tasks:
    - name: v
      type: validation
      config: {schema: 42}
""", ".clarity/bad.yaml:6:"),
    "unknown plugin": ("""\
workflow:
  name: bad
  tasks:
    - {name: v, type: validashun, config: {}}
""", ".clarity/bad.yaml:4:"),
    "version not installed": ("""\
workflow:
  name: bad
  tasks:
    - {name: v, type: validation@^7, config: {schema: ./s.json}}
""", "asks for validation@^7, but plugin validation 1.0.0 is installed"),
    "missing permission": ("""\
workflow:
  name: bad
  tasks:
    - name: n
      type: notification
      network: host
      config: {webhook: {url: "http://127.0.0.1:9/x"}}
""", "plugin notification needs the network permission here, which is not granted"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_plugin_use_is_a_lint_error_and_nothing_runs(env: Env, case: str) -> None:
    text, expected = BAD_FILES[case]
    repo = env.repo({".clarity/bad.yaml": text})
    lint = env.clarity(repo, "lint")
    run = env.clarity(repo, "run", ".clarity/bad.yaml")
    assert run.code == 2, run.out + run.err
    assert expected in run.err and expected in lint.out, (run.err, lint.out)
    assert "Traceback" not in run.err
    assert env.store().list_runs() == [] if (env.home / "clarity.db").exists() else True


def test_storage_outside_its_root_is_refused_and_nothing_is_written(env: Env, docker_client: Any) -> None:
    repo = env.repo({".clarity/w.yaml": """\
workflow:
  name: escape
  tasks:
    - name: s
      type: storage
      config: {data: {"a": 1}, destination: "../../etc"}
"""})
    r = env.clarity(repo, "run")
    assert r.code == 1, r.out + r.err
    run = env.store().list_runs()[0]
    log = "\n".join(line for _t, _ts, line in env.store().logs(run.id, "s"))
    assert "outside the storage root" in log
    assert not (env.home / "etc").exists() and not (env.home.parent / "etc").exists()
    assert list((env.home / "storage").rglob("*")) == []


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    received: list[tuple[str, dict[str, str], bytes]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_a_notification_reaches_a_webhook_with_an_upstream_output_and_a_signed_body(
        env: Env, docker_client: Any, hook_server: tuple[str, list[Any]]) -> None:
    import hashlib
    import hmac

    url, received = hook_server
    repo = env.repo({".clarity/w.yaml": f"""\
workflow:
  name: notify
  tasks:
    - name: build
      image: clarity-busybox:latest
      commands:
        - |
          echo '{{"version": "1.2.3"}}' > "$CLARITY_OUTPUT"
    - name: tell
      type: notification@^1
      network: host
      config:
        webhook:
          url: "{url}/hooks/ci"
          payload: {{built: "${{tasks.build.output}}", run: "${{workflow.id}}"}}
          secret: "${{secrets.HOOK_KEY}}"
"""})
    r = env.clarity(repo, "run", "--secret", "HOOK_KEY=k3y-value",
                    extra_env={"CLARITY_PLUGIN_PERMISSIONS": "notification=network,secrets"})
    assert r.code == 0, r.out + r.err
    run = env.store().list_runs()[0]
    assert len(received) == 1
    path, headers, body = received[0]
    assert path == "/hooks/ci"
    assert json.loads(body) == {"built": {"version": "1.2.3"}, "run": str(run.id)}
    expected = "sha256=" + hmac.new(b"k3y-value", body, hashlib.sha256).hexdigest()
    assert {k.lower(): v for k, v in headers.items()}["x-clarity-signature"] == expected
    logs = "\n".join(line for _t, _ts, line in env.store().logs(run.id, "tell"))
    assert "k3y-value" not in logs
