"""`clarity plugins list | info NAME | test NAME` on the built-in plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def clarity(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITY_")}
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_list_shows_the_built_in_plugins() -> None:
    r = clarity("plugins", "list")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    assert set(rows) >= {"validation", "transformation", "storage", "notification"}
    assert "1.0.0" in rows["validation"] and "host_paths" in rows["storage"]
    assert "not loaded" not in r.stderr
    listed = json.loads(clarity("plugins", "list", "--json").stdout)
    by_name = {p["name"]: p for p in listed["plugins"]}
    assert by_name["notification"]["permissions"] == ["network", "secrets"]
    assert "webhook" in by_name["notification"]["task_types"]["notification"]["config"]["properties"]


def test_info_shows_the_config_keys_and_unknown_names_are_a_clear_error() -> None:
    r = clarity("plugins", "info", "transformation")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("transformation 1.0.0: ")
    assert "task type transformation:" in r.stdout and "    rules:" in r.stdout and "(required)" in r.stdout
    bad = clarity("plugins", "info", "transformashun")
    assert bad.returncode == 2 and "no plugin named transformashun is installed (installed: " in bad.stderr
    assert "Traceback" not in bad.stderr


def test_test_runs_the_plugins_own_tests() -> None:
    r = clarity("plugins", "test", "validation", "-k", "manifest")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "testing plugin validation 1.0.0" in r.stderr and " passed" in r.stdout
