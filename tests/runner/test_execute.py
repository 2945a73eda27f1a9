"""The conformance suite: the same behaviour over FakeBackend and DockerBackend."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from runner.masking import MASK
from runner.spec import ArtifactIn, File, Outcome, TaskSpec, Workspace

if TYPE_CHECKING:
    from tests.runner.conftest import Repo, Run

Spec = Callable[..., TaskSpec]
Runner = Callable[..., "Run"]


def test_success(run_task: Runner, make_spec: Spec, work_root: Path) -> None:
    r = run_task(make_spec("echo hello; echo oops >&2; printf 'no newline'"))
    assert r.result.outcome is Outcome.SUCCEEDED and r.result.exit_code == 0
    # stdout and stderr are separate pipes: their interleaving is not guaranteed (Docker too).
    assert sorted(r.lines) == ["hello", "no newline", "oops"]
    assert r.result.started_at and r.result.finished_at and r.result.finished_at >= r.result.started_at
    assert r.result.output is None and r.result.outputs == {} and r.result.artifacts_dir is None
    assert list(work_root.iterdir()) == []  # host_dir removed


def test_failure_keeps_exit_code(run_task: Runner, make_spec: Spec) -> None:
    r = run_task(make_spec("echo before; exit 3"))
    assert r.result.outcome is Outcome.FAILED and r.result.exit_code == 3
    assert r.result.error is None and not r.result.oom_killed
    assert r.lines == ["before"]


def test_env_workdir_and_output_variables(run_task: Runner, make_spec: Spec) -> None:
    spec = make_spec('echo "$GREETING"; pwd; echo "$CLARITY_OUTPUT $CLARITY_OUTPUTS"', env={"GREETING": "hi there"})
    r = run_task(spec)
    assert r.lines[0] == "hi there"
    assert r.lines[1].endswith("workspace")  # /workspace, or its host twin under the fake
    output, outputs = r.lines[2].split()
    assert output.endswith("/clarity/output") and outputs == output + "s"


def test_output_json(run_task: Runner, make_spec: Spec) -> None:
    r = run_task(make_spec('echo \'{"n": 1, "items": ["a"]}\' > "$CLARITY_OUTPUT"'))
    assert r.result.output == {"n": 1, "items": ["a"]}


def test_output_text_and_outputs_lines(run_task: Runner, make_spec: Spec) -> None:
    script = (
        'printf "  just text\\n\\n" > "$CLARITY_OUTPUT"\n'
        'printf "a=1\\n\\nb = two=2\\nnot a pair\\nnotes<<EOF\\nline 1\\nline 2\\nEOF\\n" > "$CLARITY_OUTPUTS"'
    )
    r = run_task(make_spec(script))
    assert r.result.outcome is Outcome.SUCCEEDED
    assert r.result.output == "just text"
    assert r.result.outputs == {"a": "1", "b": " two=2", "notes": "line 1\nline 2"}
    assert "[clarity] $CLARITY_OUTPUTS line 4 is not key=value; ignored" in r.lines


def test_outputs_read_on_failure(run_task: Runner, make_spec: Spec) -> None:
    r = run_task(make_spec('echo k=v > "$CLARITY_OUTPUTS"; exit 1'))
    assert r.result.outcome is Outcome.FAILED and r.result.outputs == {"k": "v"}


def test_output_symlink_is_not_followed(run_task: Runner, make_spec: Spec, tmp_path: Path) -> None:
    host_secret = tmp_path / "host-only"
    host_secret.write_text("host file")
    r = run_task(make_spec(f'rm "$CLARITY_OUTPUT"; ln -s {host_secret} "$CLARITY_OUTPUT"'))
    assert r.result.output is None
    assert "[clarity] $CLARITY_OUTPUT is not a regular file; ignored" in r.lines


def test_workspace_checkout_and_files(
    run_task: Runner, make_spec: Spec, make_repo: Callable[..., Repo]
) -> None:
    repo = make_repo()
    sha = repo.commit({"README": "from git\n", "sub/data.txt": "deep\n"})
    spec = make_spec(
        "cat README sub/data.txt; /clarity/bin/tool.sh; ls -l /clarity/bin/tool.sh | cut -c1-10",
        workspace=Workspace(repo=str(repo.path), commit=sha),
        files=(File("/clarity/bin/tool.sh", b"#!/bin/sh\necho tool ran\n", 0o755),),
    )
    r = run_task(spec)
    assert r.result.outcome is Outcome.SUCCEEDED, r.lines
    assert r.lines == ["from git", "deep", "tool ran", "-rwxr-xr-x"]


def test_workdir_inside_workspace(run_task: Runner, make_spec: Spec, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo()
    sha = repo.commit({"sub/f": "in sub\n"})
    r = run_task(make_spec("cat f", workspace=Workspace(repo=str(repo.path), commit=sha), workdir="/workspace/sub"))
    assert r.lines == ["in sub"]


def test_missing_commit_errors(run_task: Runner, make_spec: Spec, make_repo: Callable[..., Repo]) -> None:
    repo = make_repo()
    repo.commit({"a": "1"})
    r = run_task(make_spec("true", workspace=Workspace(repo=str(repo.path), commit="f" * 40)))
    assert r.result.outcome is Outcome.ERRORED
    assert r.result.error == f"commit {'f' * 40} does not exist in repository {repo.path}"
    assert r.lines == ["[clarity] " + r.result.error]


def test_file_outside_clarity_errors(run_task: Runner, make_spec: Spec) -> None:
    for path in ("/etc/passwd", "/clarity/../etc/x", "/clarity"):
        r = run_task(make_spec("true", files=(File(path, b"x"),)))
        assert r.result.outcome is Outcome.ERRORED and r.result.error == f"file {path} must be inside /clarity"


def test_artifacts_collected(run_task: Runner, make_spec: Spec, work_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "host.txt").write_text("host")
    script = (
        "mkdir -p dist/sub reports; echo bin > dist/sub/app; echo r1 > reports/a.xml; echo r2 > reports/b.xml;"
        f" echo no > reports/c.txt; ln -s {outside} escape; exit 2"
    )
    spec = make_spec(
        script,
        run_id="run/9",  # not a safe path component: sanitised
        artifacts=("dist", "reports/*.xml", "missing.txt", "../etc", "escape/host.txt", "/workspace/reports/c.txt"),
    )
    r = run_task(spec)
    assert r.result.outcome is Outcome.FAILED  # artifacts still collected
    d = Path(r.result.artifacts_dir or "")
    assert d == work_root / "artifacts" / "run_9" / "build"
    files = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    assert files == ["dist/sub/app", "reports/a.xml", "reports/b.xml", "reports/c.txt"]
    assert (d / "dist/sub/app").read_text() == "bin\n"
    assert "[clarity] artifact 'missing.txt' matched nothing; not collected" in r.lines
    assert "[clarity] artifact '../etc' is outside the workspace; not collected" in r.lines
    assert "[clarity] artifact 'escape/host.txt' is outside the workspace; not collected" in r.lines
    assert [p.name for p in work_root.iterdir()] == ["artifacts"]


def test_artifacts_in_are_copied(run_task: Runner, make_spec: Spec, tmp_path: Path) -> None:
    up = tmp_path / "upstream"
    (up / "dist").mkdir(parents=True)
    (up / "dist" / "pkg.whl").write_text("wheel")
    r = run_task(make_spec("cat dist/pkg.whl", artifacts_in=(ArtifactIn(source=str(up), task="build"),)))
    assert r.lines == ["wheel"]
    r = run_task(make_spec("true", artifacts_in=(ArtifactIn(source=str(tmp_path / "gone"), task="build"),)))
    assert r.result.outcome is Outcome.ERRORED and "artifacts of task 'build' are missing" in (r.result.error or "")


def test_timeout_kills(run_task: Runner, make_spec: Spec) -> None:
    t0 = time.monotonic()
    r = run_task(make_spec("echo started; sleep 30", timeout_s=1))
    assert time.monotonic() - t0 < 8
    assert r.result.outcome is Outcome.TIMED_OUT and r.result.error == "timed out after 1s"
    assert r.lines == ["started", "[clarity] timed out after 1s"]


def test_cancel_from_another_thread(run_task: Runner, make_spec: Spec) -> None:
    cancel = threading.Event()
    threading.Timer(0.7, cancel.set).start()
    t0 = time.monotonic()
    r = run_task(make_spec("echo started; sleep 30 & wait", timeout_s=60), cancel=cancel)
    assert time.monotonic() - t0 < 8
    assert r.result.outcome is Outcome.CANCELED and r.result.error == "canceled"
    assert r.lines[0] == "started"


def test_cancel_before_start(run_task: Runner, make_spec: Spec) -> None:
    cancel = threading.Event()
    cancel.set()
    r = run_task(make_spec("echo never"), cancel=cancel)
    assert r.result.outcome is Outcome.CANCELED and "never" not in r.lines


def test_secrets_masked_in_logs_and_outputs(run_task: Runner, make_spec: Spec) -> None:
    key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQAB\nQ2xhcml0eVNlY3JldA==\n-----END KEY-----"
    spec = make_spec(
        'echo "token=$TOKEN"; printf "%s\\n" "$KEY"; echo "  $KEY" | tail -n 2;'
        ' echo "t=$TOKEN" > "$CLARITY_OUTPUTS"; printf "{\\"k\\": \\"$TOKEN\\"}" > "$CLARITY_OUTPUT"',
        env={"TOKEN": "tok-12345", "KEY": key},
        mask=("tok-12345", key),
    )
    r = run_task(spec)
    text = "\n".join(r.lines)
    assert "tok-12345" not in text and "AAAAB3" not in text and "Q2xhcml0" not in text and "BEGIN KEY" not in text
    assert r.lines[:5] == [f"token={MASK}", MASK, MASK, MASK, MASK]
    assert r.result.outputs == {"t": MASK} and r.result.output == {"k": MASK}


def test_exit_by_signal_is_128_plus(run_task: Runner, make_spec: Spec) -> None:
    # Not `kill $$`: as PID 1 in a container the shell would ignore SIGTERM.
    r = run_task(make_spec("sh -c 'kill -TERM $$'; exit $?"))
    assert r.result.outcome is Outcome.FAILED and r.result.exit_code == 143


def test_on_log_errors_do_not_break_the_task(backend: Any, make_spec: Spec, work_root: Path, workspaces: Any) -> None:
    from runner.execute import execute

    def bad(line: str) -> None:
        raise RuntimeError("sink broken")

    r = execute(make_spec("echo x; exit 4"), backend, work_root=work_root, workspaces=workspaces, on_log=bad)
    assert r.outcome is Outcome.FAILED and r.exit_code == 4


def test_root_owned_host_dir_removed(run_task: Runner, make_spec: Spec, work_root: Path) -> None:
    r = run_task(make_spec("mkdir -p deep/er; echo x > deep/er/f; chmod 000 deep/er deep"))
    assert r.result.outcome is Outcome.SUCCEEDED
    assert list(work_root.iterdir()) == []
