"""`clarity plugins list | info NAME | test NAME` on the built-in plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from controller.cli_plugins import no_tests
from controller.cli_plugins import tests_of as find_tests
from controller.plugins import discover

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


def test_list_aligns_every_column_to_its_widest_cell() -> None:
    r = clarity("plugins", "list")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    starts = [header.index(title) for title in ("VERSION", "TASK TYPES", "TRIGGER TYPES", "PERMISSIONS", "FROM")]
    for row in rows:
        for start in starts:
            assert row[start - 2:start] == "  " and row[start] != " ", (start, row)
    storage = next(row for row in rows if row.startswith("storage "))
    assert storage[starts[3]:].startswith("host_paths, network, secrets  ")  # the widest cell of its column
    assert storage[starts[4]:] == "clarity-ci 0.1.0"


def test_info_says_types_in_words_not_python() -> None:
    r = clarity("plugins", "info", "storage")
    assert r.returncode == 0, r.stderr
    assert "    destination: string or object (required)  Where to store" in r.stdout
    assert "    format: one of json, yaml, csv, text  How `data` is written" in r.stdout
    assert "    filename: string, default data.json  " in r.stdout
    validation = clarity("plugins", "info", "validation").stdout
    assert "    schema: string or object (required)  " in validation
    assert "    fail_on_error: boolean, default true  " in validation
    assert "    data: any, default the trigger's payload  The data to check" in validation
    notification = clarity("plugins", "info", "notification").stdout
    for text in (r.stdout, validation, notification):
        assert not any(repr_ in text for repr_ in ("['", "{'", "True", "False", "None")), text


def _installed_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, from_folder: Path | None) -> Any:
    """A plugin installed into a site-packages the way pip does it (a dist-info with its entry point,
    and direct_url.json when installed from a local folder), beside a stray lib/python3.11/tests."""
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    package = site / "tp_hello"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "work.py").write_text("")
    (package / "manifest.yaml").write_text(
        "name: tp_hello\nversion: 1.0.0\ndescription: x\ntask_types:\n  tp_hello:\n    description: x\n"
        "    module: tp_hello.work\n    config: {type: object}\n")
    info = site / "tp_hello-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tp-hello\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[clarity.plugins]\ntp_hello = tp_hello\n")
    if from_folder is not None:
        (info / "direct_url.json").write_text(json.dumps({"url": from_folder.as_uri(), "dir_info": {}}))
    stray = site.parent / "tests"  # the folder the lookup used to pick: site-packages/..
    stray.mkdir()
    (stray / "test_not_the_plugins.py").write_text("def test_x() -> None:\n    pass\n")
    monkeypatch.syspath_prepend(str(site))
    registry = discover(metadata.Distribution.at(info).entry_points)
    assert not registry.problems, registry.problems
    return registry.plugins["tp_hello"]


def test_an_installed_copy_is_tested_with_the_tests_of_the_folder_it_was_installed_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "tp-hello"
    (sources / "src" / "tp_hello").mkdir(parents=True)
    (sources / "tests" / "unit").mkdir(parents=True)
    (sources / "tests" / "unit" / "test_hello.py").write_text("def test_x() -> None:\n    pass\n")
    plugin = _installed_copy(tmp_path, monkeypatch, from_folder=sources)
    assert plugin.source == sources / "src" / "tp_hello"
    assert find_tests(plugin) == sources / "tests"


def test_an_installed_copy_without_its_sources_says_where_it_looked_and_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = _installed_copy(tmp_path, monkeypatch, from_folder=None)  # from a wheel: no direct_url.json
    assert plugin.source is None and find_tests(plugin) is None
    assert no_tests(plugin) == (
        f"plugin tp_hello ships no tests (looked in {plugin.root / 'tests'}); it is installed from a wheel or a "
        "package index, which holds no tests: install it from its source folder (pip install FOLDER, or pip install "
        "-e FOLDER) to run them")
    gone = _installed_copy(tmp_path / "gone", monkeypatch, from_folder=tmp_path / "deleted-since")
    assert gone.source is None and find_tests(gone) is None
