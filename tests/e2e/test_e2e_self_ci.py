"""Clarity's main job: this project's own .clarity/ci.yaml, run by `clarity run` in Docker."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO_ROOT, Env

pytestmark = pytest.mark.docker


def test_the_projects_own_ci_passes(env: Env, docker_client: Any, tmp_path: Path) -> None:
    docker_client.images.get("clarity-ci:latest")  # built by .ci/images.sh
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    copy = tmp_path / "clarity"
    for name in filter(None, tracked.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    repo = env.repo(copy)
    result = env.clarity(repo, "run", timeout=900)
    assert result.code == 0, result.out[-4000:] + result.err
    run = env.store().list_runs()[0]
    assert (run.workflow, run.state) == ("clarity-ci", "succeeded")
    tasks = {t.name: t for t in env.store().list_tasks(run.id)}
    assert [t.state for t in tasks.values()] == ["succeeded"] * 4
    assert tasks["package"].outputs["wheel"].endswith(".whl")
    unit = "\n".join(line for _t, _ts, line in env.store().logs(run.id, "unit-tests"))
    assert " passed" in unit and " failed" not in unit
