"""The notification plugin's email channel, run as the container runs it (`python3 -m
plugins.notification.src.run` in a subprocess) against a real SMTP server (aiosmtpd) on
127.0.0.1 that records envelopes, checks logins and refuses chosen recipients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

ROOT = Path(__file__).resolve().parents[4]  # the repository: plugins/notification/tests/unit/<this>
MODULE = "plugins.notification.src.run"
CONTEXT = {"run_id": 42, "workflow": "deploy", "task": "notify", "plugin": "notification", "version": "1.0.0",
           "trigger": {"event": "push"}}
USER, PASSWORD = "ci-bot", "correct-horse-battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """The SMTP server's handler: records each delivered envelope; refuses `refuse` recipients."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.logins: list[tuple[str, bool]] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                               "message": message_from_bytes(envelope.original_content, policy=policy.default),
                               "authenticated": session.authenticated})
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER \
            and auth_data.password.decode() == PASSWORD
        self.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 / 535


class Server:
    def __init__(self, *, auth: bool) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        kwargs: dict[str, Any] = {"authenticator": self.mailbox.authenticate, "auth_require_tls": False} if auth else {}
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()


@pytest.fixture
def smtp() -> Iterator[Server]:
    server = Server(auth=False)
    yield server
    server.controller.stop()


@pytest.fixture
def smtp_auth() -> Iterator[Server]:
    server = Server(auth=True)
    yield server
    server.controller.stop()


def run(tmp_path: Path, config: dict[str, Any], files: dict[str, str] | None = None,
        ) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run the container module like the container does; (the process, its output or None)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    for name, text in (files or {}).items():
        (workspace / name).write_text(text, encoding="utf-8")
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (tmp_path / "context.json").write_text(json.dumps(CONTEXT), encoding="utf-8")
    out = tmp_path / "output.json"
    env = {"PYTHONPATH": str(ROOT), "CLARITY_PLUGIN_CONFIG": str(tmp_path / "config.json"),
           "CLARITY_PLUGIN_CONTEXT": str(tmp_path / "context.json"), "CLARITY_OUTPUT": str(out),
           "CLARITY_WORKSPACE": str(workspace), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run([sys.executable, "-m", MODULE], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=120)
    return proc, json.loads(out.read_text(encoding="utf-8")) if out.exists() else None


def mail(port: int, **more: Any) -> dict[str, Any]:
    return {"email": {"host": "127.0.0.1", "from": "Clarity CI <ci@example.com>", "to": "dev@example.com",
                      "subject": "Run 42 of deploy", "body": "Deployed.", "port": port, **more}}


def test_email_is_delivered_with_its_headers_body_and_recipients(tmp_path: Path, smtp: Server) -> None:
    proc, output = run(tmp_path, mail(smtp.port, to=["a@example.com", "Bob Builder <b@example.com>"],
                                      cc="c@example.com", subject="Run 42 of deploy: ✓ passed",
                                      body="Deployed v1.2.3.\nAll checks passed."))
    assert proc.returncode == 0, proc.stderr
    assert output == {"channel": "email", "status": "sent", "to": ["a@example.com", "b@example.com"],
                      "cc": ["c@example.com"]}
    [got] = smtp.mailbox.envelopes
    assert got["from"] == "ci@example.com"
    assert got["to"] == ["a@example.com", "b@example.com", "c@example.com"]
    msg: EmailMessage = got["message"]
    assert msg["From"] == "Clarity CI <ci@example.com>"
    assert msg["To"] == "a@example.com, Bob Builder <b@example.com>"
    assert msg["Cc"] == "c@example.com"
    assert msg["Subject"] == "Run 42 of deploy: ✓ passed"
    assert msg["Date"] and msg["Message-ID"].endswith("@example.com>")
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().replace("\r\n", "\n") == "Deployed v1.2.3.\nAll checks passed.\n"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "sent to a@example.com, b@example.com, c@example.com" in lines[0]


def test_email_body_from_a_workspace_file(tmp_path: Path, smtp: Server) -> None:
    proc, _ = run(tmp_path, mail(smtp.port, body="./notes.txt"), files={"notes.txt": "Release notes\n- fixed x\n"})
    assert proc.returncode == 0, proc.stderr
    assert smtp.mailbox.envelopes[0]["message"].get_content().replace("\r\n", "\n") == "Release notes\n- fixed x\n"


def test_email_logs_in_and_never_prints_the_password(tmp_path: Path, smtp_auth: Server) -> None:
    proc, output = run(tmp_path, mail(smtp_auth.port, username=USER, password=PASSWORD))
    assert proc.returncode == 0, proc.stderr
    assert output["status"] == "sent"
    assert smtp_auth.mailbox.logins == [(USER, True)]
    assert smtp_auth.mailbox.envelopes[0]["authenticated"] is True
    assert PASSWORD not in proc.stdout + proc.stderr


def test_email_login_refused(tmp_path: Path, smtp_auth: Server) -> None:
    proc, output = run(tmp_path, mail(smtp_auth.port, username=USER, password="wrong-password-123"))
    assert proc.returncode == 1 and output is None
    # smtplib tries each mechanism the server offers (PLAIN, LOGIN): each was refused
    assert smtp_auth.mailbox.logins and set(smtp_auth.mailbox.logins) == {(USER, False)}
    assert smtp_auth.mailbox.envelopes == []
    assert f"the SMTP server at 127.0.0.1:{smtp_auth.port} refused the login (535" in proc.stderr
    assert "check email.username and email.password" in proc.stderr
    assert "wrong-password-123" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_email_login_to_a_server_without_auth(tmp_path: Path, smtp: Server) -> None:
    proc, _ = run(tmp_path, mail(smtp.port, username=USER, password=PASSWORD))
    assert proc.returncode == 1
    assert "does not offer a login (AUTH)" in proc.stderr and "starttls: true" in proc.stderr
    assert smtp.mailbox.envelopes == []


def test_email_every_recipient_refused(tmp_path: Path, smtp: Server) -> None:
    smtp.mailbox.refuse = {"nobody@example.com"}
    proc, output = run(tmp_path, mail(smtp.port, to="nobody@example.com"))
    assert proc.returncode == 1 and output is None
    assert smtp.mailbox.envelopes == []
    assert "refused every recipient: nobody@example.com (550 5.1.1 <nobody@example.com>: mailbox unavailable)" \
        in proc.stderr


def test_email_some_recipients_refused(tmp_path: Path, smtp: Server) -> None:
    smtp.mailbox.refuse = {"gone@example.com"}
    proc, output = run(tmp_path, mail(smtp.port, to=["a@example.com", "gone@example.com"]))
    assert proc.returncode == 1 and output is None
    assert [e["to"] for e in smtp.mailbox.envelopes] == [["a@example.com"]]
    assert "refused gone@example.com (550" in proc.stderr and "the mail went to a@example.com only" in proc.stderr


def test_email_connection_refused(tmp_path: Path) -> None:
    port = free_port()
    proc, output = run(tmp_path, mail(port))
    assert proc.returncode == 1 and output is None
    assert f"error: could not reach the SMTP server at 127.0.0.1:{port}: " in proc.stderr
    assert "Connection refused" in proc.stderr


def test_email_starttls_on_a_server_without_it(tmp_path: Path, smtp: Server) -> None:
    proc, _ = run(tmp_path, mail(smtp.port, starttls=True))
    assert proc.returncode == 1
    assert f"the SMTP server at 127.0.0.1:{smtp.port} does not offer STARTTLS" in proc.stderr
    assert smtp.mailbox.envelopes == []


@pytest.mark.parametrize("more, message", [
    ({"username": USER}, "give username and password together, or neither"),
    ({"to": ["a@example.com", "not-an-address"]}, "email.to: 'not-an-address' is not an email address"),
    ({"subject": "line one\nX-Injected: yes"}, "a header would break the message"),
    ({"port": 0}, "email.port: expected a port number"),
    ({"to": []}, "email.to: expected an address or a list of addresses"),
])
def test_email_bad_config_is_a_clear_error(tmp_path: Path, smtp: Server, more: dict[str, Any], message: str) -> None:
    proc, output = run(tmp_path, mail(**{"port": smtp.port, **more}))
    assert proc.returncode == 1 and output is None
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert smtp.mailbox.envelopes == []
