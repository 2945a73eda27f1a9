"""The notification plugin's webhook and Slack channels, run as the container runs them
(`python3 -m plugins.notification.src.run` in a subprocess) against a real HTTP server on
127.0.0.1 that records every request and answers from a script."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[4]  # the repository: plugins/notification/tests/unit/<this>
MODULE = "plugins.notification.src.run"
CONTEXT = {"run_id": 42, "workflow": "deploy", "task": "notify", "plugin": "notification", "version": "1.0.0",
           "trigger": {"event": "push"}}


class Recorder:
    """A scripted HTTP endpoint: answers `script` in order (then 200 "ok"), records requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                       "header_items": list(self.headers.items()),
                                       "body": body, "at": time.monotonic()})
                status, headers, answer = outer.script.pop(0) if outer.script else (200, {}, b"ok")
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.close()


def run(tmp_path: Path, config: dict[str, Any], context: dict[str, Any] | None = None,
        files: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run the container module like the container does; (the process, its output or None)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    for name, text in (files or {}).items():
        (workspace / name).write_text(text, encoding="utf-8")
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (tmp_path / "context.json").write_text(json.dumps(CONTEXT if context is None else context), encoding="utf-8")
    out = tmp_path / "output.json"
    out.unlink(missing_ok=True)
    env = {"PYTHONPATH": str(ROOT), "CLARITY_PLUGIN_CONFIG": str(tmp_path / "config.json"),
           "CLARITY_PLUGIN_CONTEXT": str(tmp_path / "context.json"), "CLARITY_OUTPUT": str(out),
           "CLARITY_WORKSPACE": str(workspace), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run([sys.executable, "-m", MODULE], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=120)
    return proc, json.loads(out.read_text(encoding="utf-8")) if out.exists() else None


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- webhook ------------------------------------------------------------------------------------

def test_webhook_posts_the_default_summary_as_json(tmp_path: Path, server: Recorder) -> None:
    proc, output = run(tmp_path, {"webhook": {"url": f"{server.url}/hooks/deploy"}})
    assert proc.returncode == 0, proc.stderr
    assert output == {"channel": "webhook", "status": 200}
    [req] = server.requests
    assert req["method"] == "POST" and req["path"] == "/hooks/deploy"
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == {"run_id": 42, "workflow": "deploy", "task": "notify"}
    assert "X-Clarity-Signature" not in req["headers"]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "webhook POST" in lines[0] and "answered 200" in lines[0]


def test_webhook_signs_the_exact_body_and_never_prints_the_secret(tmp_path: Path, server: Recorder) -> None:
    secret = "s3cr3t-signing-key"
    payload = {"status": "deployed", "version": "1.2.3", "notes": "ünïcode ✓", "items": [1, 2.5, None, True]}
    proc, output = run(tmp_path, {"webhook": {
        "url": f"{server.url}/in?token=query-token-123", "method": "PUT", "payload": payload, "secret": secret,
        "headers": {"X-Team": "platform", "content-type": "application/vnd.clarity+json"}}})
    assert proc.returncode == 0, proc.stderr
    assert output == {"channel": "webhook", "status": 200}
    [req] = server.requests
    assert req["method"] == "PUT" and req["path"] == "/in?token=query-token-123"
    assert json.loads(req["body"].decode("utf-8")) == payload
    expected = "sha256=" + hmac.new(secret.encode(), req["body"], hashlib.sha256).hexdigest()
    assert req["headers"]["X-Clarity-Signature"] == expected
    assert req["headers"]["X-Team"] == "platform"
    # a header given in config replaces the default one (whatever its case), it is not doubled
    assert [v for k, v in req["header_items"] if k.lower() == "content-type"] == ["application/vnd.clarity+json"]
    shown = proc.stdout + proc.stderr
    assert secret not in shown and "query-token-123" not in shown
    assert "?…" in proc.stdout and "signed" in proc.stdout


def test_webhook_payload_from_a_workspace_file(tmp_path: Path, server: Recorder) -> None:
    proc, _ = run(tmp_path, {"webhook": {"url": server.url, "payload": "./payload.yaml"}},
                  files={"payload.yaml": "release: v2\nservices: [api, web]\n"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(server.requests[0]["body"]) == {"release": "v2", "services": ["api", "web"]}


def test_webhook_retries_a_5xx_then_succeeds(tmp_path: Path, server: Recorder) -> None:
    server.script = [(500, {}, b"boom")]
    proc, output = run(tmp_path, {"webhook": {"url": server.url, "payload": {"n": 1}}})
    assert proc.returncode == 0, proc.stderr
    assert output == {"channel": "webhook", "status": 200}
    assert len(server.requests) == 2
    assert server.requests[0]["body"] == server.requests[1]["body"] == b'{"n":1}'
    assert "answered 500" in proc.stderr and "attempt 2 of 3" in proc.stderr
    gap = server.requests[1]["at"] - server.requests[0]["at"]
    assert 0.4 <= gap < 5


def test_webhook_honours_a_numeric_retry_after_on_429(tmp_path: Path, server: Recorder) -> None:
    server.script = [(429, {"Retry-After": "2"}, b"slow down")]
    proc, output = run(tmp_path, {"webhook": {"url": server.url}})
    assert proc.returncode == 0, proc.stderr
    assert output["status"] == 200
    assert len(server.requests) == 2
    assert server.requests[1]["at"] - server.requests[0]["at"] >= 1.9
    assert "trying again in 2 s" in proc.stderr


def test_webhook_gives_up_after_three_attempts(tmp_path: Path, server: Recorder) -> None:
    server.script = [(503, {}, b"unavailable")] * 3
    proc, output = run(tmp_path, {"webhook": {"url": server.url}})
    assert proc.returncode == 1 and output is None
    assert len(server.requests) == 3
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: webhook:") and "503" in last and "unavailable" in last
    assert "after 3 attempts" in last
    assert "Traceback" not in proc.stderr


def test_webhook_404_fails_at_once_with_the_status_and_the_answer(tmp_path: Path, server: Recorder) -> None:
    server.script = [(404, {}, b"no such hook " + b"x" * 2000)]
    proc, output = run(tmp_path, {"webhook": {"url": f"{server.url}/nope"}})
    assert proc.returncode == 1 and output is None
    assert len(server.requests) == 1  # a 4xx other than 429 is not tried again
    assert "404" in proc.stderr and "no such hook" in proc.stderr
    assert "x" * 487 in proc.stderr and "x" * 488 not in proc.stderr  # the answer's first 500 bytes


def test_webhook_does_not_follow_a_redirect(tmp_path: Path, server: Recorder) -> None:
    server.script = [(302, {"Location": f"{server.url}/elsewhere"}, b"")]
    proc, _ = run(tmp_path, {"webhook": {"url": server.url}})
    assert proc.returncode == 1
    assert [r["path"] for r in server.requests] == ["/"]
    assert "302" in proc.stderr


def test_webhook_connection_refused_is_tried_three_times(tmp_path: Path) -> None:
    port = closed_port()
    proc, output = run(tmp_path, {"webhook": {"url": f"http://127.0.0.1:{port}/hook"}})
    assert proc.returncode == 1 and output is None
    assert "attempt 3 of 3" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"could not reach http://127.0.0.1:{port}/hook" in last and "after 3 attempts" in last


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///etc/passwd", "example.com/hook"])
def test_only_http_urls_are_allowed(tmp_path: Path, url: str) -> None:
    proc, output = run(tmp_path, {"webhook": {"url": url}})
    assert proc.returncode == 1 and output is None
    assert "only http:// and https:// URLs are allowed" in proc.stderr


def test_user_info_in_the_url_becomes_basic_auth_and_is_not_shown(tmp_path: Path, server: Recorder) -> None:
    url = server.url.replace("http://", "http://bot:pa55word@") + "/h"
    proc, _ = run(tmp_path, {"webhook": {"url": url}})
    assert proc.returncode == 0, proc.stderr
    assert server.requests[0]["headers"]["Authorization"] == "Basic Ym90OnBhNTV3b3Jk"  # bot:pa55word
    assert "pa55word" not in proc.stdout + proc.stderr


# --- slack --------------------------------------------------------------------------------------

SLACK_PATH = "/services/T000/B000/XXXXSECRETTOKEN"


def test_slack_posts_a_slack_message(tmp_path: Path, server: Recorder) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Deployed* v1.2.3"}}]
    proc, output = run(tmp_path, {"slack": {"url": server.url + SLACK_PATH, "text": "Deployed v1.2.3",
                                            "channel": "#deploys", "username": "Clarity CI", "blocks": blocks}})
    assert proc.returncode == 0, proc.stderr
    assert output == {"channel": "slack", "status": 200}
    [req] = server.requests
    assert req["method"] == "POST" and req["path"] == SLACK_PATH
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == {"text": "Deployed v1.2.3", "channel": "#deploys", "username": "Clarity CI",
                                       "blocks": blocks}
    assert "XXXXSECRETTOKEN" not in proc.stdout + proc.stderr and "/services" not in proc.stdout
    assert proc.stdout.count("\n") == 1 and "/…" in proc.stdout


def test_slack_minimal_message_and_blocks_from_a_file(tmp_path: Path, server: Recorder) -> None:
    proc, _ = run(tmp_path, {"slack": {"url": server.url + SLACK_PATH, "text": "hi", "blocks": "./blocks.json"}},
                  files={"blocks.json": '[{"type": "divider"}]'})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(server.requests[0]["body"]) == {"text": "hi", "blocks": [{"type": "divider"}]}


def test_slack_error_shows_the_answer_but_not_the_webhook_path(tmp_path: Path, server: Recorder) -> None:
    server.script = [(404, {}, b"no_service")]
    proc, output = run(tmp_path, {"slack": {"url": server.url + SLACK_PATH, "text": "hi"}})
    assert proc.returncode == 1 and output is None
    assert len(server.requests) == 1
    assert "404" in proc.stderr and "no_service" in proc.stderr
    assert "XXXXSECRETTOKEN" not in proc.stdout + proc.stderr


def test_slack_retries_a_5xx(tmp_path: Path, server: Recorder) -> None:
    server.script = [(502, {}, b"bad gateway")]
    proc, output = run(tmp_path, {"slack": {"url": server.url + SLACK_PATH, "text": "hi"}})
    assert proc.returncode == 0, proc.stderr
    assert output["status"] == 200 and len(server.requests) == 2


# --- the config ---------------------------------------------------------------------------------

@pytest.mark.parametrize("config, message", [
    ({}, "exactly one of webhook, slack or email"),
    ({"webhook": {"url": "http://127.0.0.1:9/"}, "slack": {"url": "http://127.0.0.1:9/", "text": "x"}},
     "exactly one of webhook, slack or email (got webhook, slack)"),
    ({"webhook": {"url": "http://127.0.0.1:9/", "retries": 5}}, "webhook: unknown key 'retries'"),
    ({"webhook": {"url": "http://127.0.0.1:9/", "method": "GET"}}, "webhook.method: expected POST or PUT"),
    ({"webhook": {"url": "http://127.0.0.1:9/", "headers": {"X-A": "a\r\nX-Injected: 1"}}}, "one-line string"),
    ({"slack": {"url": "http://127.0.0.1:9/"}}, "slack.text is required"),
    ({"slack": {"url": "http://127.0.0.1:9/", "text": "x", "blocks": "not-a-file"}}, "slack.blocks"),
])
def test_bad_config_is_a_clear_error(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    proc, output = run(tmp_path, config)
    assert proc.returncode == 1 and output is None
    assert message in proc.stderr and "Traceback" not in proc.stderr
