"""Real processes for end-to-end tests: a `clarity controller` (or `clarity up`) on a free port of
127.0.0.1, with its own CLARITY_HOME, that can be stopped and started again on the same database."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], what: str | Callable[[], str], timeout: float = 60,
               step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(step)
    return value


def clarity_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without the caller's CLARITY_* settings (but CLARITY_REQUIRE_DOCKER), for
    a controller on `home` that never pulls images."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITY_") or k == "CLARITY_REQUIRE_DOCKER"}
    env.update(CLARITY_HOME=str(home), CLARITY_PULL="never", PYTHONPATH=str(ROOT), **extra)
    return env


class ControllerProcess:
    def __init__(self, home: Path, log: Path, *, env: dict[str, str] | None = None,
                 command: str = "controller") -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home, self.log, self.command = home, log, command
        self.env = env if env is not None else clarity_env(home)
        self.port = free_port()
        cert = self.env.get("CLARITY_TLS_CERT_FILE")  # served over HTTPS: trust its own certificate (or CA)
        self.verify: Any = ssl.create_default_context(cafile=self.env.get("CLARITY_CA_FILE") or cert) if cert else True
        self.url = f"{'https' if cert else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller.cli", self.command, "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1, verify=self.verify).status_code == 200 and (self.home / "api-key").exists():
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.1)
        raise AssertionError("controller did not come up:\n" + self.log.read_text())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def key(self) -> str:
        return (self.home / "api-key").read_text().strip()

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30,
                            verify=self.verify)

    def token(self, **body: Any) -> str:
        """A one-time runner registration token."""
        with self.api() as api:
            resp = api.post("/api/v1/runner-tokens", json=body)
            assert resp.status_code == 201, resp.text
            return str(resp.json()["token"])
