"""Fixtures of the transformation plugin's tests: its container module run for real, in a subprocess
with the host's Python, in a temporary workspace (as the container runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULE = "plugins.transformation.src.run"
STANDARDS = REPO / "examples" / "standards"  # the standards' example: schema, rules and data
_NO_PAYLOAD = object()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    output: Any  # the task's output (JSON); None when it wrote none

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


@dataclass
class Task:
    workspace: Path  # the working directory (the commit's files)
    tmp: Path

    def write(self, path: str, content: Any) -> Path:
        """A workspace file: text as it is, anything else as JSON."""
        target = self.workspace / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return target

    def run(self, config: dict[str, Any], *, payload: Any = _NO_PAYLOAD) -> Result:
        """`python3 -m plugins.transformation.src.run` in a subprocess, as the container runs it."""
        cfg, ctx, out = self.tmp / "config.json", self.tmp / "context.json", self.tmp / "output.json"
        cfg.write_text(json.dumps(config))
        trigger: dict[str, Any] = {"event": "webhook"} if payload is not _NO_PAYLOAD else {"event": "schedule"}
        if payload is not _NO_PAYLOAD:
            trigger["payload"] = payload
        ctx.write_text(json.dumps({"run_id": "42", "workflow": "example-workflow", "task": "the-task",
                                   "plugin": "transformation", "version": "1.0.0", "trigger": trigger}))
        out.unlink(missing_ok=True)
        environ = {"PYTHONPATH": str(REPO), "CLARITY_PLUGIN_CONFIG": str(cfg), "CLARITY_PLUGIN_CONTEXT": str(ctx),
                   "CLARITY_OUTPUT": str(out), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "HOME": str(self.tmp), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run([sys.executable, "-m", MODULE], cwd=self.workspace, env=environ,
                              capture_output=True, text=True, timeout=120)
        output = json.loads(out.read_text()) if out.exists() else None
        return Result(done.returncode, done.stdout, done.stderr, output)


@pytest.fixture
def task(tmp_path: Path) -> Task:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    return Task(workspace, tmp_path)
