"""End to end: the installed plugin in a real workflow, through `clarity lint` and `clarity run`.

Needs clarity-hello installed where Clarity is (`pip install .`), and for the run a Docker engine
with the image the manifest names (clarity-python:bookworm) and clarity-busybox:latest. Without
them the tests are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

IMAGES = ("clarity-python:bookworm", "clarity-busybox:latest")

WORKFLOW = """\
workflow:
  name: hello-e2e
  triggers:
    - type: push
    - type: hello_counter
      limit: 3
  tasks:
    - name: greet
      type: hello@^1
      config:
        greeting: "Hello from clarity-hello"
        times: {times}
    - name: check
      image: clarity-busybox:latest
      needs: [greet]
      env: {{GREETED: "${{tasks.greet.output}}"}}
      commands:
        - echo "greet said $GREETED"
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITY_")}
    env.update(CLARITY_HOME=str(home), CLARITY_PULL="never")
    return env


# What `clarity` sees, asked of a fresh interpreter: this pytest process is no judge, since its
# `pythonpath = ["src"]` shows the src/clarity_hello.egg-info that `pip install .` leaves behind, and
# importlib.metadata keeps only the first distribution of a name on sys.path: that leftover hides
# the installed one (or passes for it after a `pip uninstall`).
PROBE = """\
from importlib import metadata
print(any(ep.name == "hello" for ep in metadata.entry_points(group="clarity.plugins")))
"""


def _installed() -> bool:
    """Installed: the `clarity` these tests start (the same interpreter and environment, outside this
    folder) finds the entry point `hello`."""
    with tempfile.TemporaryDirectory() as elsewhere:
        seen = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env=_env(Path(elsewhere)),
                              capture_output=True, text=True, timeout=120)
    return seen.stdout.strip() == "True"


def _docker_ready() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command"
    for image in IMAGES:
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=60)
        if found.returncode != 0:
            return f"no local image {image}"
    return None


pytestmark = pytest.mark.skipif(not _installed(), reason="clarity-hello is not installed here (pip install .)")


def _repo(tmp_path: Path, times: int) -> Path:
    repo = tmp_path / "repo"
    (repo / ".clarity").mkdir(parents=True)
    (repo / ".clarity" / "hello.yaml").write_text(WORKFLOW.format(times=times))
    ident = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.org", "GIT_COMMITTER_NAME": "Dev",
             "GIT_COMMITTER_EMAIL": "dev@example.org"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "hello"]):
        subprocess.run(["git", *args], cwd=repo, env={**os.environ, **ident}, check=True, capture_output=True)
    return repo


def _clarity(repo: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=repo, env=_env(home),
                          capture_output=True, text=True, timeout=300)


def test_lint_checks_the_hello_config(tmp_path: Path) -> None:
    good = _clarity(_repo(tmp_path / "good", 3), tmp_path / "home", "lint")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = _clarity(_repo(tmp_path / "bad", 50), tmp_path / "home", "lint")
    assert bad.returncode != 0
    assert "hello.yaml:12:16: error: 'times' must be at most 10, got 50" in bad.stdout + bad.stderr


@pytest.mark.docker
def test_hello_runs_in_docker_and_its_output_flows_downstream(tmp_path: Path) -> None:
    why = _docker_ready()
    if why is not None:
        pytest.skip(f"Docker is not ready: {why}")
    done = _clarity(_repo(tmp_path, 3), tmp_path / "home", "run")
    assert done.returncode == 0, done.stdout + done.stderr
    greetings = [line for line in done.stdout.splitlines() if line.endswith("Hello from clarity-hello")]
    assert len(greetings) == 3, done.stdout
    assert 'greet said {"greeted": 3}' in done.stdout
