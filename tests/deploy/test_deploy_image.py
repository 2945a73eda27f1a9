"""The deployable image built from the top-level Dockerfile: `clarity --version`, the controller
answering /healthz, the non-root user, and what the build leaves out.

The image is `clarity:dev`. By default these tests use an existing one and skip when it is
missing (building takes a while the first time); with CLARITY_BUILD_IMAGE=1, or
CLARITY_REQUIRE_DOCKER set (.ci/test.sh), the session fixture builds it first (Docker's layer
cache makes a rebuild quick), from the local base image `clarity-python:bookworm`
(.ci/images.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from controller import __version__

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "clarity:dev"
BASE = "clarity-python:bookworm"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CA = ROOT / ".ci" / "cache" / "build-ca.crt"
TEST_LABEL = "io.clarity.test=deploy"


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def _unavailable(reason: str) -> None:
    if os.environ.get("CLARITY_REQUIRE_DOCKER"):
        pytest.fail(reason + " (CLARITY_REQUIRE_DOCKER is set)", pytrace=False)
    pytest.skip(reason)


def _have(image: str) -> bool:
    return _docker("image", "inspect", image, check=False).returncode == 0


def _build() -> None:
    if not _have(BASE):
        _unavailable(f"the base image {BASE} is missing: run .ci/images.sh")
    # pip in the build reads PyPI over HTTPS; where HTTPS is intercepted, the host's CA bundle
    # must be trusted: the Dockerfile takes it from .ci/cache/build-ca.crt (git-ignored).
    if HOST_CA.is_file() and (not BUILD_CA.exists() or BUILD_CA.read_bytes() != HOST_CA.read_bytes()):
        BUILD_CA.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_CA, BUILD_CA)
    done = subprocess.run(["docker", "build", "--network", "host", "-t", IMAGE, str(ROOT)],
                          capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        pytest.fail(f"docker build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}", pytrace=False)


@pytest.fixture(scope="session")
def image() -> str:
    if shutil.which("docker") is None or _docker("info", check=False, timeout=30).returncode != 0:
        _unavailable("no Docker engine answers (`docker info` fails)")
    if os.environ.get("CLARITY_BUILD_IMAGE") == "1" or os.environ.get("CLARITY_REQUIRE_DOCKER"):
        _build()
    elif not _have(IMAGE):
        pytest.skip(f"no {IMAGE} image: build it with `docker build --network host -t {IMAGE} .` "
                    "(or set CLARITY_BUILD_IMAGE=1)")
    return IMAGE


@pytest.fixture(scope="session")
def config(image: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_docker("image", "inspect", image).stdout)[0]["Config"]
    return data


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def container() -> Iterator[list[str]]:
    """Names of the containers a test starts; all removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        _docker("rm", "-f", name, check=False)


@pytest.mark.docker
def test_version_runs_without_network(image: str) -> None:
    done = _docker("run", "--rm", "--network", "none", image, "--version")
    assert done.stdout.strip() == f"clarity {__version__}"


@pytest.mark.docker
def test_runs_as_the_clarity_user(image: str, config: dict[str, Any]) -> None:
    assert config["User"] == "10001:10001"
    done = _docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                   'id -u; id -g; id -un; stat -c "%u %a" /var/lib/clarity; echo "$CLARITY_HOME"')
    assert done.stdout.split() == ["10001", "10001", "clarity", "10001", "750", "/var/lib/clarity"]


@pytest.mark.docker
def test_image_metadata(config: dict[str, Any]) -> None:
    assert config["Entrypoint"] == ["clarity"]
    assert config["Cmd"] == ["controller", "--host", "0.0.0.0"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert "/var/lib/clarity" in config["Volumes"]
    assert "CLARITY_HOME=/var/lib/clarity" in config["Env"]
    assert config["Healthcheck"]["Test"][0] == "CMD" and "/healthz" in config["Healthcheck"]["Test"][-1]


@pytest.mark.docker
def test_build_leftovers_stay_out(image: str) -> None:
    """No source tree, build CA, git metadata or local venv in the image; the project is installed."""
    done = _docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                   "for p in /src /tmp/build /opt/clarity/bin/clarity /opt/clarity/bin/python3; do "
                   "if [ -e $p ]; then echo $p; fi; done; "
                   "find / -xdev \\( -name .git -o -name .venv -o -name build-ca.crt \\) 2>/dev/null | head -5")
    assert done.stdout.split() == ["/opt/clarity/bin/clarity", "/opt/clarity/bin/python3"]


@pytest.mark.docker
def test_controller_starts_and_answers_healthz(image: str, container: list[str]) -> None:
    port = _free_port()
    name = f"clarity-deploy-test-{uuid.uuid4().hex[:8]}"
    container.append(name)
    _docker("run", "-d", "--name", name, "--label", TEST_LABEL, "--network", "host",
            "-e", f"CLARITY_PORT={port}", image, "controller", "--host", "127.0.0.1", "--port", str(port))
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + 30
    body = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = json.loads(resp.read())
                break
        except OSError:
            state = _docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
            if state != "running":
                pytest.fail(f"the controller exited ({state}):\n{_docker('logs', name, check=False).stderr}")
            time.sleep(0.2)
    assert body == {"status": "ok"}, _docker("logs", name, check=False).stderr
    # the image's own HEALTHCHECK command finds the port from the command line and passes
    test = json.loads(_docker("inspect", "-f", "{{json .Config.Healthcheck.Test}}", name).stdout)
    assert _docker("exec", name, *test[1:], check=False).returncode == 0
    # the state is in the volume, owned by the clarity user
    listing = _docker("exec", name, "ls", "-n", "/var/lib/clarity").stdout
    assert "clarity.db" in listing and " 10001 10001 " in listing


@pytest.mark.docker
def test_healthcheck_fails_when_nothing_listens(image: str, container: list[str]) -> None:
    name = f"clarity-deploy-test-{uuid.uuid4().hex[:8]}"
    container.append(name)
    # a controller command line whose process is not serving (sleep stands in as PID 1's argv)
    _docker("run", "-d", "--name", name, "--label", TEST_LABEL, "--network", "none", "--entrypoint", "python3",
            image, "-c", "import time; time.sleep(60)", "controller", "--port", "1")
    test = json.loads(_docker("inspect", "-f", "{{json .Config.Healthcheck.Test}}", name).stdout)
    assert _docker("exec", name, *test[1:], check=False).returncode != 0


def test_dockerignore_keeps_local_state_out() -> None:
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".ci/cache", "**/__pycache__"} <= lines
    assert "!.ci/cache/build-ca.crt" in lines  # the only exception: the optional build CA
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=clarity-python:bookworm" in dockerfile
    assert 'ENTRYPOINT ["clarity"]' in dockerfile and "USER 10001:10001" in dockerfile


def test_deploy_doc_has_complete_units() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for needed in ("clarity-controller.service", "clarity-runner@.service", "/var/run/docker.sock",
                   "root", "PostgreSQL", "CLARITY_HOME", "[Unit]", "[Service]", "[Install]", "ExecStart="):
        assert needed in doc, needed
