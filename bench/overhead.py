"""Clarity against bare `docker run`: per-task overhead and fan-out speed-up, in one run.

    .venv/bin/python bench/overhead.py [--reps N] [--check] [--profile]

1. overhead: `clarity run` of a 20-task sequential workflow (busybox, `true`) against 20 bare
   `docker run --rm --network none clarity-busybox:latest true` one after another.
   Target: ratio <= 1.15.
2. fan-out: root -> 10 x `sleep 1` -> final (12 tasks, `needs:`) against the same 12 tasks in
   list order (sequential), both through `clarity run`, at the default parallelism and with
   `--parallel 10`. Target: ratio <= 0.6 (on 2 cores).

The two overhead cases run once as a warm-up first (mirror cache, image lookups, page cache;
the fan-out cases reuse that warm state), then every case runs --reps times and the median wall
time is reported. Bare and clarity repetitions are interleaved, so a busy shared Docker daemon
slows both sides alike. Every `clarity run` is a subprocess with CLARITY_HOME in a
temporary directory, on a temporary committed git repository. Per-run breakdown comes from the
run's own SQLite database: `start` = process start to first task start (Python imports, git,
lint, sweep, store), `tasks` = sum of task durations as recorded (over 1 task-second per second
when tasks overlap), `idle` = time between the first task's start and the last one's end when no
task was running (the engine's scheduling gaps), `tail` = last task end to process exit.

--profile additionally runs the 20-task workflow once in-process (`controller.cli.main`) with
the main phases of a task wrapped in timers (all threads), and prints where the time goes, plus
cProfile's top functions of the main thread.
Exit status: non-zero only with --check, when a target is missed (or a run failed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLARITY = ROOT / ".venv" / "bin" / "clarity"
IMAGE = "clarity-busybox:latest"
N_SEQ = 20
N_FAN = 10
OVERHEAD_TARGET = 1.15
FANOUT_TARGET = 0.6


# -- workflows -----------------------------------------------------------------------------


def _task(name: str, command: str, needs: list[str] | None = None) -> str:
    lines = [f"    - name: {name}", f"      image: {IMAGE}"]
    if needs is not None:
        lines.append(f"      needs: [{', '.join(needs)}]")
    lines.append(f'      commands: ["{command}"]')
    return "\n".join(lines)


def _workflow(name: str, tasks: list[str]) -> str:
    head = f'workflow:\n  name: "{name}"\n  version: "1.0.0"\n  tasks:\n'
    return head + "\n".join(tasks) + "\n"


def workflows() -> dict[str, str]:
    seq = [_task(f"t{i:02d}", "true") for i in range(1, N_SEQ + 1)]
    shards = [f"s{i:02d}" for i in range(1, N_FAN + 1)]
    fan = (
        [_task("root", "true", [])]
        + [_task(s, "sleep 1", ["root"]) for s in shards]
        + [_task("final", "true", shards)]
    )
    fanseq = [_task("root", "true")] + [_task(s, "sleep 1") for s in shards] + [_task("final", "true")]
    return {
        "seq.yaml": _workflow("seq", seq),
        "fan.yaml": _workflow("fan", fan),
        "fanseq.yaml": _workflow("fanseq", fanseq),
    }


def make_repo(base: Path) -> Path:
    repo = base / "repo"
    (repo / ".clarity").mkdir(parents=True)
    for name, text in workflows().items():
        (repo / ".clarity" / name).write_text(text)
    (repo / "README").write_text("bench\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *cmd], cwd=repo, env=env, check=True, capture_output=True)
    return repo


# -- timing ----------------------------------------------------------------------------------


class Failed(Exception):
    pass


def clarity_run(repo: Path, home: Path, workflow: str, parallel: int | None) -> tuple[float, dict[str, float]]:
    """Wall time of one `clarity run`, and a breakdown read from the run's database."""
    cmd = [str(CLARITY), "run", f".clarity/{workflow}"]
    if parallel is not None:
        cmd += ["--parallel", str(parallel)]
    env = {**os.environ, "CLARITY_HOME": str(home)}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    t1 = time.time()
    if proc.returncode != 0:
        raise Failed(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return t1 - t0, breakdown(home, t0, t1)


def breakdown(home: Path, t0: float, t1: float) -> dict[str, float]:
    db = sqlite3.connect(home / "clarity.db")
    try:
        (run_id,) = db.execute("SELECT max(id) FROM runs").fetchone()
        rows = db.execute(
            "SELECT started_at, finished_at FROM tasks WHERE run_id = ? ORDER BY started_at", (run_id,)
        ).fetchall()
    finally:
        db.close()
    spans = sorted((s, e) for s, e in rows if s is not None and e is not None)
    idle, reach = 0.0, spans[0][0]
    for s, e in spans:  # time between first start and last end when no task was running
        idle += max(0.0, s - reach)
        reach = max(reach, e)
    return {
        "start": spans[0][0] - t0,
        "tasks": sum(e - s for s, e in spans),
        "idle": idle,
        "tail": t1 - reach,
    }


def bare_docker(n: int) -> float:
    t0 = time.time()
    for _ in range(n):
        subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "true"],
                       check=True, capture_output=True)
    return time.time() - t0


def measure(fn, reps: int, warm: bool = True) -> tuple[float, list[float], list]:
    if warm:
        fn()
    results = [fn() for _ in range(reps)]
    times = [r[0] if isinstance(r, tuple) else r for r in results]
    extra = [r[1] for r in results if isinstance(r, tuple)]
    return statistics.median(times), times, extra


def med_breakdown(extra: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(d[k] for d in extra) for k in extra[0]} if extra else {}


def default_parallel() -> int:
    from controller.settings import Settings

    return Settings.from_env().parallel


# -- profile ---------------------------------------------------------------------------------


PHASES = [  # (module, attribute path, label); wrapped in-process, timed across all threads
    ("controller.engine", "execute", "execute() (one task, whole)"),
    ("controller.engine", "render_task", "  render_task"),
    ("runner.execute", "_stage", "  _stage (mkdir, checkout, files)"),
    ("runner.workspace", "WorkspaceCache.checkout", "    workspace checkout (git)"),
    ("runner.workspace", "WorkspaceCache.ensure", "      mirror ensure (git rev-parse)"),
    ("runner.backends.docker", "DockerBackend.prepare", "  backend.prepare"),
    ("runner.backends.docker", "DockerBackend._ensure_image", "    _ensure_image (GET image)"),
    ("docker.models.containers", "ContainerCollection.create", "    containers.create (POST+GET)"),
    ("runner.backends.docker", "DockerBackend.start", "  backend.start (POST start)"),
    ("runner.execute", "_supervise", "  _supervise (start -> exit seen)"),
    ("docker.models.containers", "Container.wait", "    [thread] Container.wait"),
    ("docker.models.containers", "Container.reload", "    [thread] Container.reload"),
    ("runner.execute", "_collect_artifacts", "  _collect_artifacts"),
    ("runner.backends.docker", "DockerBackend.destroy", "  backend.destroy (DELETE)"),
    ("shutil", "rmtree", "  shutil.rmtree"),
    ("controller.store.runs", "Store.update_task", "store.update_task"),
    ("controller.store.runs", "Store.append_logs", "store.append_logs"),
    ("runner.backends.docker", "DockerBackend.sweep", "backend.sweep (start-up)"),
    ("controller.local", "LocalRepo.find", "LocalRepo.find (start-up)"),
    ("controller.local", "_load", "_load: read+lint workflows (start-up)"),
    ("controller.store.runs", "Store.open", "Store.open + migrate (start-up)"),
]


def _wrap(stats: dict[str, list[float]], label: str, fn):  # type: ignore[no-untyped-def]
    import functools

    @functools.wraps(fn)
    def timed(*a, **kw):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            st = stats.setdefault(label, [0, 0.0])
            st[0] += 1
            st[1] += time.perf_counter() - t

    return timed


def profile(repo: Path, home: Path) -> None:
    """One in-process `clarity run .clarity/seq.yaml`: wall time per phase (all threads), then
    cProfile's view of the main thread."""
    import cProfile
    import importlib
    import inspect
    import io
    import pstats
    from contextlib import redirect_stdout

    sys.path.insert(0, str(ROOT))
    os.environ["CLARITY_HOME"] = str(home)
    t_import = time.perf_counter()
    from controller.cli import main as cli_main
    import controller.local  # noqa: F401  (the heavy imports: docker, git, sqlalchemy)
    import runner.backends.docker  # noqa: F401
    t_import = time.perf_counter() - t_import

    stats: dict[str, list[float]] = {}
    undo = []
    for mod_name, path, label in PHASES:
        obj = importlib.import_module(mod_name)
        *owners, attr = path.split(".")
        for o in owners:
            obj = getattr(obj, o)
        own = not isinstance(obj, type) or attr in obj.__dict__
        original = inspect.getattr_static(obj, attr) if isinstance(obj, type) else getattr(obj, attr)
        if isinstance(original, (classmethod, staticmethod)):
            setattr(obj, attr, type(original)(_wrap(stats, label, original.__func__)))
        else:
            setattr(obj, attr, _wrap(stats, label, original))
        undo.append((obj, attr, original if own else None))
    cwd = os.getcwd()
    os.chdir(repo)
    prof = cProfile.Profile()
    sink = io.StringIO()
    try:
        t0 = time.perf_counter()
        prof.enable()
        with redirect_stdout(sink):
            code = cli_main(["run", ".clarity/seq.yaml"])
        prof.disable()
        wall = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
        for obj, attr, original in reversed(undo):
            if original is None:
                delattr(obj, attr)  # it was inherited
            else:
                setattr(obj, attr, original)
    print(f"\n== phases: in-process `clarity run .clarity/seq.yaml` ({N_SEQ} tasks, exit {code}) ==")
    print(f"{'imports (controller.cli/local, docker, git, sqlalchemy)':<44} {'':>5} {t_import * 1000:8.0f} ms")
    print(f"{'run wall (cli.main)':<44} {'':>5} {wall * 1000:8.0f} ms")
    print(f"{'phase':<44} {'calls':>5} {'total':>8}    {'per task':>8}")
    for _m, _p, label in PHASES:
        n, total = stats.get(label, [0, 0.0])
        if n:
            print(f"{label:<44} {n:5d} {total * 1000:8.0f} ms {total * 1000 / N_SEQ:8.1f} ms")
    print(f"\n== cProfile (main thread only: the worker threads' time shows as lock waits) ==")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative").print_stats(12)
    text = buf.getvalue()
    print(text[text.find("   ncalls"):].rstrip())


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="measured repetitions per case (default 3)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--profile", action="store_true", help="also cProfile one in-process 20-task run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    if not CLARITY.exists():
        print(f"bench: {CLARITY} is missing; run `bash .ci/setup.sh` first", file=sys.stderr)
        return 2

    base = Path(tempfile.mkdtemp(prefix="clarity-bench-"))
    started = time.time()
    ok = True
    try:
        repo = make_repo(base)
        home = base / "home"
        par = default_parallel()
        print(f"clarity bench: {os.cpu_count()} cores, default parallelism {par}, "
              f"{args.reps} reps (median, after 1 warm-up), tmp {base}")

        # Interleaved (bare, clarity, clarity, bare, ...) so drift of a shared Docker daemon
        # hits both sides alike.
        bare_docker(N_SEQ)
        clarity_run(repo, home, "seq.yaml", None)
        bare_all, seq_all, seq_x = [], [], []
        for i in range(args.reps):
            for which in (("bare", "seq") if i % 2 == 0 else ("seq", "bare")):
                if which == "bare":
                    bare_all.append(bare_docker(N_SEQ))
                else:
                    t, x = clarity_run(repo, home, "seq.yaml", None)
                    seq_all.append(t)
                    seq_x.append(x)
        bare, seq = statistics.median(bare_all), statistics.median(seq_all)
        fan_runs = {}
        for p in (None, 10):
            fan_runs[p] = measure(lambda p=p: clarity_run(repo, home, "fan.yaml", p), args.reps, warm=False)
        fseq, fseq_all, fseq_x = measure(lambda: clarity_run(repo, home, "fanseq.yaml", None), args.reps, warm=False)

        def row(name: str, med: float, all_: list[float], extra: list | None = None) -> None:
            b = med_breakdown(extra or [])
            parts = "  ".join(f"{k} {v:6.2f}" for k, v in b.items())
            print(f"{name:<38} {med:7.2f}s  [{' '.join(f'{t:.2f}' for t in all_)}]  {parts}")

        print(f"\n{'case':<38} {'median':>8}  [runs]  breakdown (s)")
        row(f"bare docker run x{N_SEQ}", bare, bare_all)
        row(f"clarity run seq x{N_SEQ}", seq, seq_all, seq_x)
        row(f"clarity run fan-out (par {par}, default)", fan_runs[None][0], fan_runs[None][1], fan_runs[None][2])
        row("clarity run fan-out (--parallel 10)", fan_runs[10][0], fan_runs[10][1], fan_runs[10][2])
        row(f"clarity run fan tasks sequential", fseq, fseq_all, fseq_x)

        per_task = (seq - bare) / N_SEQ
        ratio = seq / bare
        print(f"\n{'metric':<44} {'value':>7}  {'target':>7}  verdict")
        verdict = "PASS" if ratio <= OVERHEAD_TARGET else "FAIL"
        ok &= verdict == "PASS"
        print(f"{'overhead: clarity seq / bare docker':<44} {ratio:7.3f}  {'<= ' + str(OVERHEAD_TARGET):>7}  {verdict}"
              f"   ({per_task * 1000:+.0f} ms/task)")
        for p, label in ((None, f"default par {par}"), (10, "--parallel 10")):
            r = fan_runs[p][0] / fseq
            v = "PASS" if r <= FANOUT_TARGET else "FAIL"
            ok &= v == "PASS" if p is None else True  # the target is on the default parallelism
            print(f"{'fan-out / sequential (' + label + ')':<44} {r:7.3f}  {'<= ' + str(FANOUT_TARGET):>7}  {v}")
        if args.profile:
            profile(repo, home)
    except Failed as e:
        print(f"bench: a run failed: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\ntotal bench time {time.time() - started:.0f}s")
    return 1 if (args.check and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
