"""A third-party plugin, packaged on its own (examples/plugins/clarity-hello), installed with pip
into a fresh virtual environment that sees Clarity: nothing in Clarity names it, yet `clarity lint`
checks its task's config and version range and `clarity run` runs its task in Docker. The main
environment, where it is not installed, does not know it.

No download: the fresh venv sees the main environment's packages through a .pth file, and pip
builds the plugin with the setuptools and wheel found there (`--no-build-isolation`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import httpx
import pytest

from controller.store.runs import Store
from tests.e2e.conftest import docker_client  # noqa: F401 - fixture
from tests.processes import ControllerProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "plugins" / "clarity-hello"

WORKFLOW = """\
workflow:
  name: hello-third-party
  triggers:
    - type: push
    - type: hello_counter
      limit: 3
  tasks:
    - name: greet
      type: hello@{range}
      config:
        greeting: "Hello from a third-party plugin"
        times: {times}
"""


@dataclass(frozen=True)
class Venv:
    python: Path
    tmp: Path
    source: Path  # the copy of the plugin's folder it was installed from (as pip left it)

    def clarity(self, cwd: Path, *args: str, python: Path | None = None, home: Path | None = None,
                timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(python or self.python), "-m", "controller.cli", *args], cwd=cwd,
                              env=_env(home or self.tmp / "home"), capture_output=True, text=True, timeout=timeout)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLARITY_", "PIP_", "PYTHON", "VIRTUAL_ENV")) or k == "CLARITY_REQUIRE_DOCKER"}
    env.update(CLARITY_HOME=str(home), CLARITY_PULL="never", PIP_CONFIG_FILE=os.devnull, PYTHONNOUSERSITE="1",
               PYTHONDONTWRITEBYTECODE="1", GIT_AUTHOR_NAME="Dev One", GIT_AUTHOR_EMAIL="dev1@example.org",
               GIT_COMMITTER_NAME="Dev One", GIT_COMMITTER_EMAIL="dev1@example.org", **extra)
    return env


def _can_build_wheels() -> bool:
    """setuptools builds a wheel with the `wheel` package, or by itself from 70.1 on."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        from setuptools.command import bdist_wheel  # noqa: F401 - setuptools >= 70.1
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """A fresh venv (the main environment's base interpreter) that sees Clarity and its dependencies
    through a .pth file, with clarity-hello pip-installed into it (not editable, from a copy)."""
    if not _can_build_wheels():
        pytest.fail("pip cannot build clarity-hello here: the environment has neither the `wheel` package nor "
                    "setuptools >= 70.1 (both come with `pip install -e '.[test]'`)", pytrace=False)
    tmp = tmp_path_factory.mktemp("third-party")
    base = Path(getattr(sys, "_base_executable", sys.executable))
    made = subprocess.run([str(base), "-m", "venv", "--without-pip", str(tmp / "venv")], capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    python = tmp / "venv" / "bin" / "python"
    site_dir = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    main_site = sysconfig.get_paths()["purelib"]  # where Clarity (editable) and its dependencies are
    # addsitedir, not a bare path: the main environment's own .pth files (Clarity's editable install) count too
    (Path(site_dir) / "clarity_main_env.pth").write_text(f"import site; site.addsitedir({main_site!r})\n")
    # a clean copy, installed the way its README says: pip leaves build/ and src/clarity_hello.egg-info in it
    source = tmp / "clarity-hello"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--no-cache-dir", "--disable-pip-version-check", str(source)],
                          env=_env(tmp / "home"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    yield Venv(python, tmp, source)


def _repo(tmp: Path, name: str, *, times: int = 2, range_: str = "^1") -> Path:
    repo = tmp / name
    (repo / ".clarity").mkdir(parents=True)
    (repo / ".clarity" / "hello.yaml").write_text(WORKFLOW.format(times=times, range=range_))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "hello"]):
        subprocess.run(["git", *args], cwd=repo, env=_env(tmp), check=True, capture_output=True)
    return repo


def _listed(venv: Venv, python: Path) -> Mapping[str, Any]:
    done = venv.clarity(venv.tmp, "plugins", "list", "--json", python=python)
    assert done.returncode == 0, done.stderr
    return {p["name"]: p for p in json.loads(done.stdout)["plugins"]}


def test_the_plugin_is_known_where_it_is_installed_and_nowhere_else(venv: Venv) -> None:
    there = _listed(venv, venv.python)
    assert "hello" in there
    hello = there["hello"]
    assert hello["version"] == "1.0.0" and hello["distribution"] == "clarity-hello 1.0.0"
    assert list(hello["task_types"]) == ["hello"] and list(hello["trigger_types"]) == ["hello_counter"]
    assert hello["image"] == "clarity-python:bookworm" and hello["permissions"] == []
    assert Path(hello["folder"]).is_relative_to(venv.tmp / "venv")  # the installed copy, not the sources
    assert "hello" not in _listed(venv, Path(sys.executable))  # the main environment: not installed there


def test_lint_checks_the_plugin_task_config_its_version_and_its_trigger(venv: Venv) -> None:
    good = venv.clarity(_repo(venv.tmp, "lint-good"), "lint")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "0 error(s)" in good.stdout + good.stderr

    bad = venv.clarity(_repo(venv.tmp, "lint-times", times=50), "lint")
    said = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert re.search(r"\.clarity/hello\.yaml:12:16: error: 'times' must be at most 10, got 50", said), said

    newer = venv.clarity(_repo(venv.tmp, "lint-range", range_="^2"), "lint")
    said = newer.stdout + newer.stderr
    assert newer.returncode != 0
    assert re.search(r"\.clarity/hello\.yaml:9:13: error: task 'greet' asks for hello@\^2, but plugin hello 1\.0\.0 "
                     r"is installed", said), said

    # the main environment knows neither the task type nor the trigger type
    main = venv.clarity(_repo(venv.tmp, "lint-main"), "lint", python=Path(sys.executable))
    said = main.stdout + main.stderr
    assert main.returncode != 0 and "unknown task type 'hello'" in said and "unknown trigger type 'hello_counter'" in said


@pytest.mark.docker
def test_clarity_run_runs_the_plugin_task_in_docker(venv: Venv, docker_client: Any) -> None:  # noqa: F811
    home = venv.tmp / "run-home"
    done = venv.clarity(_repo(venv.tmp, "run", times=3), "run", home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    store = Store.open(f"sqlite:///{home / 'clarity.db'}")
    try:
        [run] = store.list_runs()
        assert (run.workflow, run.state, run.event) == ("hello-third-party", "succeeded", "push")
        [task] = store.list_tasks(run.id)
        assert task.state == "succeeded" and task.image == "hello 1.0.0"  # the plugin version that ran
        assert task.output == {"greeted": 3}
        lines = [line for _task, _ts, line in store.logs(run.id, "greet")]
    finally:
        store.engine.dispose()
    assert lines.count("Hello from a third-party plugin") == 3, lines


@pytest.mark.docker
def test_the_plugins_own_tests_pass_where_it_is_installed(venv: Venv, docker_client: Any) -> None:  # noqa: F811
    """Run in the folder it was installed from, beside the src/clarity_hello.egg-info the install left:
    pytest's `pythonpath = src` shows that leftover first, and it must not hide the installed plugin
    from the end-to-end tests (they used to skip: "clarity-hello is not installed here")."""
    assert (venv.source / "src" / "clarity_hello.egg-info").is_dir()  # what `pip install .` leaves behind
    done = subprocess.run([str(venv.python), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "--basetemp", str(venv.tmp / "own-tests")], cwd=venv.source, env=_env(venv.tmp / "home"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b10 passed\b", done.stdout) and "skipped" not in done.stdout, done.stdout


@pytest.mark.docker
def test_clarity_plugins_test_finds_the_tests_in_the_folder_it_was_installed_from(
        venv: Venv, docker_client: Any) -> None:  # noqa: F811
    """site-packages holds no tests: `clarity plugins test` runs those of the sources pip recorded."""
    info = venv.clarity(venv.tmp, "plugins", "info", "hello")
    assert info.returncode == 0, info.stderr
    assert f"  sources:     {venv.source / 'src' / 'clarity_hello'} (installed from there)" in info.stdout, info.stdout
    done = venv.clarity(venv.tmp, "plugins", "test", "hello", "--basetemp", str(venv.tmp / "plugins-test"),
                        timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"testing plugin hello 1.0.0: {venv.source / 'tests'}" in done.stderr
    assert re.search(r"\b10 passed\b", done.stdout) and "skipped" not in done.stdout, done.stdout


COUNTING = """\
workflow:
  name: hello-counting
  triggers:
    - type: hello_counter
      limit: 1
  tasks:
    - name: greet
      type: hello@^1
      config:
        greeting: "Hello number ${trigger.payload.n}"
        times: 2
"""


class VenvController(ControllerProcess):
    """`clarity up` (a controller with its built-in runner) run by the venv's python."""

    def __init__(self, python: Path, home: Path, log: Path, env: dict[str, str]) -> None:
        super().__init__(home, log, env=env, command="up")
        self.python = python

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([str(self.python), "-m", "controller.cli", "up", "--port", str(self.port)],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.home)
        proc = self.proc

        def up() -> bool:
            assert proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(lambda: (self.home / "api-key").exists() and up(), lambda: self.log.read_text(), timeout=30)


@pytest.mark.docker
def test_a_controller_polls_the_plugin_trigger_and_runs_the_plugin_task(venv: Venv,
                                                                         docker_client: Any) -> None:  # noqa: F811
    src = venv.tmp / "counting"
    (src / ".clarity").mkdir(parents=True)
    (src / ".clarity" / "hello.yaml").write_text(COUNTING)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "count"]):
        subprocess.run(["git", *args], cwd=src, env=_env(venv.tmp), check=True, capture_output=True)
    home = venv.tmp / "controller-home"
    controller = VenvController(venv.python, home, venv.tmp / "controller.log", _env(home))
    controller.start()
    try:
        added = subprocess.run([str(venv.python), "-m", "controller.cli", "repo", "add", "acme/counting", "--url",
                                str(src), "--controller", controller.url], env=controller.env, capture_output=True,
                               text=True, timeout=60)
        assert added.returncode == 0, added.stdout + added.stderr
        with controller.api() as api:
            def finished() -> list[dict[str, Any]]:
                found = [r for r in api.get("/api/v1/runs").json()["runs"] if r["workflow"] == "hello-counting"]
                return found if found and all(r["state"] not in ("queued", "running") for r in found) else []

            [run] = wait_until(finished, lambda: controller.log.read_text()[-3000:], timeout=60)
    finally:
        controller.stop(signal.SIGTERM)
    assert run["event"] == "hello_counter" and run["state"] == "succeeded", run
    assert run["trigger"]["by"] == "plugin:hello 1.0.0" and run["trigger"]["payload"] == {"n": 1}
    store = Store.open(f"sqlite:///{home / 'clarity.db'}")
    try:
        lines = [line for _task, _ts, line in store.logs(run["id"], "greet")]
    finally:
        store.engine.dispose()
    assert "(started by hello_counter: {'n': 1})" in lines and lines.count("Hello number 1") == 2, lines
