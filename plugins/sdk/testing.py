"""For a plugin's own tests: run its container module for real, as the container runs it (a
subprocess with the host's Python, the workspace as working directory, the config, context and
output files in place), without Docker.

    task = ModuleTask("plugins.validation.src.run", "validation", workspace, tmp)
    result = task.run({"schema": "./schema.json"}, payload={"a": 1})
    assert result.returncode == 0 and result.output == {"a": 1}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NO_PAYLOAD: Any = object()  # run without a trigger payload (as a schedule would)
CHECKOUT = Path(__file__).resolve().parents[2]  # the directory holding the `plugins` package


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
class ModuleTask:
    module: str  # e.g. plugins.validation.src.run
    plugin: str
    workspace: Path  # the working directory (the commit's files)
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)  # more variables (e.g. CLARITY_STORAGE_ROOT)

    def write(self, path: str, content: Any) -> Path:
        """A workspace file: text as it is, anything else as JSON."""
        target = self.workspace / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return target

    def run(self, config: dict[str, Any], *, payload: Any = NO_PAYLOAD, workflow: str = "example-workflow",
            task: str = "the-task") -> Result:
        """`python3 -m MODULE` in a subprocess, as the container runs it."""
        cfg, ctx, out = self.tmp / "config.json", self.tmp / "context.json", self.tmp / "output.json"
        cfg.write_text(json.dumps(config))
        trigger: dict[str, Any] = {"event": "webhook"} if payload is not NO_PAYLOAD else {"event": "schedule"}
        if payload is not NO_PAYLOAD:
            trigger["payload"] = payload
        ctx.write_text(json.dumps({"run_id": "42", "workflow": workflow, "task": task,
                                   "plugin": self.plugin, "version": "1.0.0", "trigger": trigger}))
        out.unlink(missing_ok=True)
        environ = {"PYTHONPATH": str(CHECKOUT), "CLARITY_PLUGIN_CONFIG": str(cfg), "CLARITY_PLUGIN_CONTEXT": str(ctx),
                   "CLARITY_OUTPUT": str(out), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "HOME": str(self.tmp), "PYTHONDONTWRITEBYTECODE": "1", **self.env}
        done = subprocess.run([sys.executable, "-m", self.module], cwd=self.workspace, env=environ,
                              capture_output=True, text=True, timeout=120)
        output = json.loads(out.read_text()) if out.exists() else None
        return Result(done.returncode, done.stdout, done.stderr, output)
