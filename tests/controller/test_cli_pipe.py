"""`clarity run | head`: when the reader of the output goes away, the run is canceled, its tasks
stopped and the process ends (141, as a process killed by SIGPIPE) instead of hanging or saying
nothing; the run is recorded as canceled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.processes import ROOT

WORKFLOW = """\
workflow:
  name: chatty
  tasks:
    - name: talk
      image: clarity-busybox:latest
      commands:
        - for i in $(seq 1 600); do echo "line $i"; sleep 0.05; done
"""


def test_a_closed_output_cancels_the_run_and_ends_the_process(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".clarity").mkdir(parents=True)
    (repo / ".clarity" / "ci.yaml").write_text(WORKFLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITY_")}
    env.update(CLARITY_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), GIT_AUTHOR_NAME="D", GIT_AUTHOR_EMAIL="d@e.f",
               GIT_COMMITTER_NAME="D", GIT_COMMITTER_EMAIL="d@e.f")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "ci"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "run", "--backend", "fake"], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    seen = [proc.stdout.readline() for _ in range(4)]  # the banner and a few lines: then the reader goes
    assert any(b"line 1" in line for line in seen), seen
    proc.stdout.close()
    try:
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    err = proc.stderr.read().decode()
    assert code == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    runs = subprocess.run([sys.executable, "-m", "controller.cli", "runs"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=60)
    assert "canceled" in runs.stdout, runs.stdout + runs.stderr
