"""Fixtures of the transformation plugin's tests: its container module run for real, in a subprocess
with the host's Python, in a temporary workspace (as the container runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugins.sdk.testing import ModuleTask

Task = ModuleTask  # the tests' name for it

REPO = Path(__file__).resolve().parents[3]
MODULE = "plugins.transformation.src.run"
STANDARDS = REPO / "examples" / "standards"  # the standards' example: schema, rules and data


@pytest.fixture
def task(tmp_path: Path) -> Task:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    return Task(MODULE, "transformation", workspace, tmp_path)
