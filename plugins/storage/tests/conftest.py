"""Fixtures of the storage plugin's tests: running the container module for real, a PostgreSQL
cluster (tests/conftest.py's, re-exported) and an S3 server (moto's, on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import database_url, postgres_server  # noqa: F401  (fixtures, re-exported)

REPO = Path(__file__).resolve().parents[3]
MODULE = "plugins.storage.src.run"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    output: Any  # the task's output (JSON), None when it wrote none


@dataclass
class Task:
    workspace: Path  # the working directory (the commit's files)
    root: Path  # the storage root
    tmp: Path

    def run(self, config: dict[str, Any], *, root: bool = True, env: dict[str, str] | None = None) -> Result:
        """`python3 -m plugins.storage.src.run` in a subprocess, as the container runs it."""
        cfg, ctx, out = self.tmp / "config.json", self.tmp / "context.json", self.tmp / "output.json"
        cfg.write_text(json.dumps(config))
        ctx.write_text(json.dumps({"run_id": "42", "workflow": "data-pipeline", "task": "store-result",
                                   "plugin": "storage", "version": "1.0.0", "trigger": {}}))
        out.unlink(missing_ok=True)
        environ = {"PYTHONPATH": str(REPO), "CLARITY_PLUGIN_CONFIG": str(cfg), "CLARITY_PLUGIN_CONTEXT": str(ctx),
                   "CLARITY_OUTPUT": str(out), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "HOME": str(self.tmp), "PYTHONDONTWRITEBYTECODE": "1"}
        if root:
            environ["CLARITY_STORAGE_ROOT"] = str(self.root)
        environ.update(env or {})
        done = subprocess.run([sys.executable, "-m", MODULE], cwd=self.workspace, env=environ,
                              capture_output=True, text=True, timeout=120)
        output = json.loads(out.read_text()) if out.exists() else None
        return Result(done.returncode, done.stdout, done.stderr, output)


@pytest.fixture
def task(tmp_path: Path) -> Task:
    workspace, root = tmp_path / "workspace", tmp_path / "storage"
    workspace.mkdir()
    root.mkdir()
    return Task(workspace, root, tmp_path)


def tree(path: Path) -> list[str]:
    """Every file and directory under `path` (symlinks not followed), relative, sorted."""
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port), for the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    """A fresh bucket on the S3 server, and a boto3 client to read it."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    name = "clarity-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40]
    client.create_bucket(Bucket=name)
    yield client, name
    for obj in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


