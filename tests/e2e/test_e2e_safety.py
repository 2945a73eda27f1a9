"""Safety through `clarity run` in Docker: injection, secrets, memory, cancel, leftovers."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.e2e.conftest import Env, git

pytestmark = pytest.mark.docker


def _wf(name: str, tasks: str) -> str:
    return f'workflow:\n  name: "{name}"\n  tasks:\n{tasks}'


def test_git_strings_never_become_shell(env: Env, docker_client: Any, unique: str,
                                        no_leftovers: Callable[[str], None]) -> None:
    wf = _wf(unique, """\
    - name: show
      image: clarity-busybox:latest
      env: {MSG: "${git.message}"}
      commands:
        - echo "branch=${git.branch}"
        - echo "message=$MSG"
        - echo "raw=${git.message}"
        - test ! -e pwned && test ! -e pwned2 && test ! -e pwned3
        - echo no-file-created
""")
    branch = "$(touch${IFS}pwned)"
    message = 'fix `touch pwned2` "; touch pwned3; "'
    repo = env.repo({".clarity/ci.yaml": wf}, branch=branch, message=message)
    r = env.clarity(repo, "run")
    assert r.code == 0, r.out + r.err
    run = env.store().list_runs()[0]
    lines = [line for _t, _ts, line in env.store().logs(run.id)]
    assert f"branch={branch}" in lines
    assert f"message={message}" in lines and f"raw={message}" in lines
    assert "no-file-created" in lines
    assert not (repo / "pwned").exists()
    no_leftovers(unique)


def test_multiline_secret_masked_everywhere(env: Env, docker_client: Any, unique: str, tmp_path: Path) -> None:
    key = "-----BEGIN KEY-----\nc2VjcmV0LWxpbmUtb25l\nc2VjcmV0LWxpbmUtdHdv\n-----END KEY-----"
    (tmp_path / "key.pem").write_text(key + "\n")
    wf = _wf(unique, """\
    - name: leak
      image: clarity-busybox:latest
      secrets: [DEPLOY_KEY, TOKEN]
      commands:
        - echo "$DEPLOY_KEY"
        - echo "token is $TOKEN here"
        - echo "out=$TOKEN" >> "$CLARITY_OUTPUTS"
        - 'printf "{\\"t\\": \\"%s\\"}" "$TOKEN" > "$CLARITY_OUTPUT"'
""")
    repo = env.repo({".clarity/ci.yaml": wf})
    r = env.clarity(repo, "run", "--secret-file", f"DEPLOY_KEY={tmp_path / 'key.pem'}", "--secret", "TOKEN",
                    extra_env={"TOKEN": "tok-12345-abcdef"})
    assert r.code == 0, r.out + r.err
    run = env.store().list_runs()[0]
    stored = "\n".join(line for _t, _ts, line in env.store().logs(run.id))
    shown = env.clarity(repo, "logs", str(run.id)).out
    for text in (r.out, stored, shown):
        assert "tok-12345-abcdef" not in text
        assert "c2VjcmV0LWxpbmUtb25l" not in text and "c2VjcmV0LWxpbmUtdHdv" not in text
        assert "token is ******** here" in text
    task = env.store().list_tasks(run.id)[0]
    assert task.outputs == {"out": "********"} and task.output == {"t": "********"}


def test_out_of_memory_is_reported(env: Env, docker_client: Any, unique: str,
                                   no_leftovers: Callable[[str], None]) -> None:
    wf = _wf(unique, """\
    - name: hog
      image: clarity-busybox:latest
      resources: {memory: 32m}
      commands:
        - echo allocating
        - head -c 300m /dev/zero | tail > /dev/null
""")
    repo = env.repo({".clarity/ci.yaml": wf})
    r = env.clarity(repo, "run")
    assert r.code == 1
    task = env.store().list_tasks(env.store().list_runs()[0].id)[0]
    assert task.state == "failed" and task.exit_code == 137
    assert "out of memory" in (task.error or "") and "32 MiB" in (task.error or "")
    assert "out of memory" in r.out
    no_leftovers(unique)


def test_ctrl_c_cancels_and_cleans_up(env: Env, docker_client: Any, unique: str,
                                      no_leftovers: Callable[[str], None]) -> None:
    wf = _wf(unique, """\
    - name: long
      image: clarity-busybox:latest
      commands:
        - echo sleeping
        - sleep 120
    - name: after
      image: clarity-busybox:latest
      commands: ["echo never"]
""")
    repo = env.repo({".clarity/ci.yaml": wf})
    proc = env.popen(repo, "run")
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        seen.append(line)
        if "sleeping" in line or time.monotonic() > deadline:
            break
    assert any("sleeping" in s for s in seen), "".join(seen)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, "".join(seen) + rest
    assert time.monotonic() - started < 15
    run = env.store().list_runs()[0]
    assert run.state == "canceled"
    states = {t.name: t.state for t in env.store().list_tasks(run.id)}
    assert states == {"long": "canceled", "after": "canceled"}
    no_leftovers(unique)


def test_lint_errors_stop_everything(env: Env, docker_client: Any, unique: str) -> None:
    wf = _wf(unique, """\
    - name: a
      image: clarity-busybox:latest
      imgae: typo
      commands: ["echo should not run"]
""")
    repo = env.repo({".clarity/ci.yaml": wf})
    r = env.clarity(repo, "run")
    assert r.code == 2
    assert ".clarity/ci.yaml:6:7: error: unknown key 'imgae'" in r.err
    assert "did you mean 'image'" in r.err
    assert "nothing was run" in r.err and "Traceback" not in r.err
    assert not (env.home / "clarity.db").exists() or env.store().list_runs() == []


def test_run_reads_the_commit_not_the_working_tree(env: Env, docker_client: Any, unique: str) -> None:
    wf = _wf(unique, """\
    - name: show
      image: clarity-busybox:latest
      commands: ["cat version.txt"]
""")
    repo = env.repo({".clarity/ci.yaml": wf, "version.txt": "committed\n"})
    (repo / "version.txt").write_text("edited\n")
    (repo / ".clarity/ci.yaml").write_text(wf.replace("cat version.txt", "echo changed-workflow"))
    r = env.clarity(repo, "run")
    assert r.code == 0, r.err
    assert "show │ committed" in r.out and "changed-workflow" not in r.out
    assert "uncommitted changes" in r.err
    run = env.store().list_runs()[0]
    assert run.blob_sha == git(repo, "rev-parse", "HEAD:.clarity/ci.yaml").strip()
    dirty = env.clarity(repo, "run", "--dirty")
    assert dirty.code == 0, dirty.err
    assert "changed-workflow" in dirty.out
    assert env.store().list_runs()[0].dirty is True


def test_killed_clarity_leaves_nothing_behind_after_the_next_start(
    env: Env, docker_client: Any, unique: str, no_leftovers: Callable[[str], None]
) -> None:
    # kill -9: no cleanup can run. The next `clarity run` removes the orphaned container and
    # marks the run that was left "running" as canceled.
    wf = _wf(unique, """\
    - name: long
      image: clarity-busybox:latest
      commands: ["echo sleeping", "sleep 120"]
""")
    repo = env.repo({".clarity/ci.yaml": wf})
    proc = env.popen(repo, "run")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "sleeping" in line:
            break
    proc.kill()
    proc.wait(timeout=10)
    assert docker_client.api.containers(all=True, filters={"label": f"io.clarity.workflow={unique}"})
    assert env.store().list_runs()[0].state == "running"

    other = env.repo({".clarity/ci.yaml": _wf(f"{unique}-next", """\
    - name: quick
      image: clarity-busybox:latest
      commands: ["true"]
""")})
    assert env.clarity(other, "run").code == 0
    no_leftovers(unique)
    first = env.store().get_run(1)
    assert first.state == "canceled"
    task = env.store().list_tasks(1)[0]
    assert task.state == "canceled" and "process running it is gone" in (task.error or "")
