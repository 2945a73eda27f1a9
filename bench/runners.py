"""Remote runner agents against bare Docker: pick-up latency and throughput.

A controller process (`python -m controller.cli controller`, CLARITY_HOME in a temp dir) and 3
runner processes (`python -m runner.main --capacity 1`: total parallelism P = 3), all on
127.0.0.1, CLARITY_PULL=never, image clarity-busybox:latest. Both sides are warmed up first and
the warm-up is not counted: every runner has run a task (mirror cloned, image seen), and bare
`docker run` has run as often.

(a) Pick-up latency, idle runners: runs of a one-task workflow (`echo go`) are triggered one at a
    time, each after the previous one ended. From the controller's database: `queue.queued_at ->
    queue.leased_at` (the lease) and `leased_at -> ts of the log line "go"` (ts: when the runner
    read the line from the container; so checkout, container create + start, first output).
    Compared with a bare `docker run --rm --network none clarity-busybox:latest echo go`, one
    after each sample: its start -> "go" read on stdout. Target: pick-up p50 (queued -> "go")
    less bare p50 < 50 ms. Also shown, from the runners' phase timings: how long the first log
    batch took to reach the controller once the line was read (not in the target).
(b) Throughput: --tasks runs of a one-task workflow (`true`) triggered at once (4 threads: the
    triggers overlap with the work, as pushes would) across the 3 runners; the time from the first
    trigger to the last run's end (the controller's own finished_at) or, if later, until the
    runners' last task container is removed (a bare `docker run --rm` returns after removal too).
    Against the same number of bare `docker run --rm --network none clarity-busybox:latest true`
    from a thread pool of P. --rounds rounds, each bare then clarity, back to back so that both
    see the same load on a shared machine; the ratio is median clarity / median bare, all measured
    in this one run. Target: ratio <= 1.2.

Each round prints the CPU seconds used by the controller, the runners, this process and the
engine's daemons (or by the docker CLI processes, for bare), and how busy the whole machine was;
each part prints the runners' per-task phase timings (CLARITY_RUNNER_TIMINGS=1), p50/p99 in ms.

    .venv/bin/python bench/runners.py [--tasks 200] [--samples 30] [--rounds 3] [--check] [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "clarity-busybox:latest"
RUNNERS, CAPACITY = 3, 1
P = RUNNERS * CAPACITY
TARGET_PICKUP_MS = 50.0
TARGET_RATIO = 1.2

PICKUP = f"""\
workflow:
  name: pickup
  triggers:
    - type: manual
  tasks:
    - name: go
      image: {IMAGE}
      commands:
        - echo go
"""
NOOP = f"""\
workflow:
  name: noop
  triggers:
    - type: manual
  tasks:
    - name: noop
      image: {IMAGE}
      commands:
        - "true"
"""


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def engine_pids() -> list[int]:
    """dockerd and containerd (their shims and runc come and go with each container)."""
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in ("dockerd", "containerd"):
                pids.append(int(comm.parent.name))
        except OSError:
            pass
    return pids


class Cpu:
    """CPU seconds used between construction and `report()`: controller, runners, this process,
    the engine's daemons."""

    def __init__(self, b: Bench) -> None:
        self.groups = {"controller": [b.procs[0].pid], "runners": [p.pid for p in b.procs[1:]],
                       "bench": [os.getpid()], "dockerd+containerd": engine_pids()}
        self.start = {k: sum(map(cpu_s, v)) for k, v in self.groups.items()}
        self.machine = machine_busy()
        self.t0 = time.perf_counter()

    def report(self) -> str:
        wall = time.perf_counter() - self.t0
        used = {k: sum(map(cpu_s, v)) - self.start[k] for k, v in self.groups.items()}
        busy, total = (a - b for a, b in zip(machine_busy(), self.machine))
        return ("cpu s: " + ", ".join(f"{k} {v:.1f}" for k, v in used.items()) +
                f"; machine {100 * busy / max(total, 1e-9):.0f}% busy (all processes)")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_repo(path: Path, env: dict[str, str]) -> None:
    (path / ".clarity").mkdir(parents=True)
    (path / ".clarity" / "pickup.yaml").write_text(PICKUP)
    (path / ".clarity" / "noop.yaml").write_text(NOOP)
    env = {**env, "GIT_CONFIG_GLOBAL": str(path.parent / "gitconfig"), "GIT_AUTHOR_NAME": "b",
           "GIT_AUTHOR_EMAIL": "b@example.org", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.org"}
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "bench")):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)


def bare_first_line() -> float:
    """ms from `docker run` start to "go" on its stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["docker", "run", "--rm", "--network", "none", IMAGE, "echo", "go"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    ms = (time.perf_counter() - t0) * 1000
    proc.wait()
    assert line.strip() == "go", line
    return ms


def bare_true() -> None:
    subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "true"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITY_")}
        self.env.update(CLARITY_HOME=str(self.home), CLARITY_PULL="never", PYTHONPATH=str(ROOT),
                        CLARITY_RATE_LIMIT="0")
        self.runner_env = {**self.env, "CLARITY_RUNNER_TIMINGS": "1"}  # one log line per task: its phases
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.repo = tmp / "repo"
        make_repo(self.repo, self.env)

    def start(self) -> None:
        log = open(self.tmp / "controller.log", "wb")
        self.procs.append(subprocess.Popen([sys.executable, "-m", "controller.cli", "controller", "--port",
                                            str(self.port)], env=self.env, cwd=ROOT, stdout=log, stderr=log))
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200 and (self.home / "api-key").exists():
                    break
            except httpx.HTTPError:
                pass
            if self.procs[0].poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the controller did not start:\n" + (self.tmp / "controller.log").read_text()[-3000:])
            time.sleep(0.1)
        key = (self.home / "api-key").read_text().strip()
        self.api = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert self.api.post("/api/v1/repos", json={"name": "bench/runners", "url": str(self.repo)}).status_code == 201
        for i in range(RUNNERS):
            token = self.api.post("/api/v1/runner-tokens", json={}).json()["token"]
            log = open(self.tmp / f"runner-{i}.log", "wb")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "runner.main", "--controller", self.url, "--token", token, "--name", f"bench-{i}",
                 "--capacity", str(CAPACITY), "--state-dir", str(self.tmp / f"runner-{i}")],
                env=self.runner_env, cwd=ROOT, stdout=log, stderr=log))
        deadline = time.monotonic() + 60
        while sum("working for" in (self.tmp / f"runner-{i}.log").read_text() for i in range(RUNNERS)) < RUNNERS:
            if time.monotonic() > deadline:
                raise SystemExit("the runners did not start")
            time.sleep(0.2)
        self.engine = sa.create_engine(f"sqlite:///{self.home / 'clarity.db'}")

    def trigger(self, workflow: str) -> int:
        resp = self.api.post("/api/v1/repos/bench/runners/trigger", json={"ref": "main", "workflow": workflow})
        if resp.status_code != 201:
            raise SystemExit(f"trigger answered {resp.status_code}: {resp.text[:300]}")
        [run] = resp.json()["runs"]
        return int(run["id"] if isinstance(run, dict) else run)

    def wait_done(self, run_ids: list[int], timeout: float, poll_s: float = 0.05) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        ids = ",".join(str(r) for r in run_ids)
        while True:
            with self.engine.connect() as conn:
                states: dict[str, int] = dict(conn.execute(sa.text(f"SELECT state, count(*) FROM runs WHERE id IN ({ids}) "
                                                   "GROUP BY state")).all())
            if sum(n for s, n in states.items() if s not in ("queued", "running")) == len(run_ids):
                return states
            if time.monotonic() > deadline:
                return states
            time.sleep(poll_s)

    def warm_up(self, workflow: str) -> None:
        """Runs until every runner has run at least one task (mirror cloned, image seen): not counted."""
        for _ in range(10):
            runs = [self.trigger(workflow) for _ in range(2 * P)]
            self.wait_done(runs, 120)
            with self.engine.connect() as conn:
                owners = {o for (o,) in conn.execute(sa.text("SELECT DISTINCT lease_owner FROM queue"))}
            if len(owners) >= RUNNERS:
                return
        raise SystemExit(f"warm-up: only {sorted(owners)} of {RUNNERS} runners took a task")

    def owners(self) -> set[str]:
        """The `io.clarity.owner` label values of the runner processes' containers."""
        from runner import owner

        return {f"{owner._machine()}:{p.pid}:{owner._start_time(p.pid)}" for p in self.procs[1:]}

    def wait_removed(self, t0: float, timeout: float = 60) -> float:
        """Seconds from perf_counter() `t0` until no task container of the runners is left."""
        ours = self.owners()
        deadline = time.monotonic() + timeout
        while True:
            listed = subprocess.run(["docker", "ps", "-a", "--filter", "label=io.clarity=1", "--format",
                                     '{{.Label "io.clarity.owner"}}'], capture_output=True, text=True).stdout.split()
            now = time.perf_counter() - t0
            if not ours.intersection(listed) or time.monotonic() > deadline:
                return now
            time.sleep(0.02)

    def timings(self, run_ids: list[int]) -> list[dict[str, float]]:
        """Phase -> ms, one dict per task of these runs, from the runners' `timings RUN/TASK k=ms ...` lines."""
        wanted = {str(r) for r in run_ids}
        tasks = []
        for i in range(RUNNERS):
            for line in (self.tmp / f"runner-{i}.log").read_text().splitlines():
                _, sep, rest = line.partition(" timings ")
                if not sep:
                    continue
                label, *pairs = rest.split()
                if label.split("/")[0] in wanted:
                    tasks.append({k: float(v) for k, _, v in (pair.partition("=") for pair in pairs)})
        return tasks

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def print_phases(tasks: list[dict[str, float]]) -> None:
    """The runners' per-task phase timings (CLARITY_RUNNER_TIMINGS): p50 and p99 of each, in ms."""
    phases: dict[str, list[float]] = {}
    for task in tasks:
        for k, v in task.items():
            phases.setdefault(k, []).append(v)
    if not phases:
        print("  (no runner timings found)")
        return
    print(f"  runner phases of {len(tasks)} tasks, ms (p50/p99): " + "  ".join(
        f"{k} {statistics.median(v):.1f}/{pct(v, 99):.1f}" for k, v in phases.items()))


def pickup(b: Bench, samples: int) -> bool:
    print(f"(a) pick-up latency, idle runners: {samples} one-task runs one at a time; bare docker run for comparison")
    bare_first_line()  # warm-up, not counted: both sides
    b.warm_up(".clarity/pickup.yaml")
    lease, start, total, bare, runs = [], [], [], [], []
    for _ in range(samples):
        time.sleep(0.2)  # every slot idle in its long poll again
        run_id = b.trigger(".clarity/pickup.yaml")
        runs.append(run_id)
        b.wait_done([run_id], 60)
        bare.append(bare_first_line())
    with b.engine.connect() as conn:
        for run_id in runs:
            q = conn.execute(sa.text("SELECT queued_at, leased_at FROM queue WHERE run_id = :r"), {"r": run_id}).one()
            ts = conn.execute(sa.text("SELECT min(ts) FROM logs WHERE run_id = :r AND line = 'go'"),
                              {"r": run_id}).scalar()
            if ts is None or q.leased_at is None:
                print(f"  run {run_id}: no lease or no 'go' line", file=sys.stderr)
                return False
            lease.append((q.leased_at - q.queued_at) * 1000)
            start.append((ts - q.leased_at) * 1000)
            total.append((ts - q.queued_at) * 1000)
    row = "  {:<38} p50 {:8.1f} ms   p99 {:8.1f} ms"
    print(row.format("queued -> leased", statistics.median(lease), pct(lease, 99)))
    print(row.format("leased -> first log line (runner)", statistics.median(start), pct(start, 99)))
    print(row.format("queued -> first log line (total)", statistics.median(total), pct(total, 99)))
    print(row.format("bare docker run -> first line", statistics.median(bare), pct(bare, 99)))
    phases = b.timings(runs)
    sent = [t["first_line_acked"] - t["first_line"] for t in phases if "first_line_acked" in t and "first_line" in t]
    if sent:
        print(row.format("first line read -> at the controller", statistics.median(sent), pct(sent, 99)))
    beyond = statistics.median(total) - statistics.median(bare)
    ok = bool(beyond < TARGET_PICKUP_MS)
    print(f"  pick-up beyond the container start (p50 total - p50 bare): {beyond:.1f} ms   "
          f"target < {TARGET_PICKUP_MS:g} ms: {'PASS' if ok else 'FAIL'}")
    print_phases(phases)
    return ok


def bare_batch(tasks: int) -> tuple[float, str]:
    """Seconds for `tasks` bare `docker run --rm ... true` from a pool of P (each returns once its
    container is removed), and the CPU it took."""
    with ThreadPoolExecutor(P) as pool:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        engine = engine_pids()
        engine0, machine0, t0 = sum(map(cpu_s, engine)), machine_busy(), time.perf_counter()
        list(pool.map(lambda _: bare_true(), range(tasks)))
        bare_s = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    busy, total = (a - b for a, b in zip(machine_busy(), machine0))
    return bare_s, (f"cpu s: docker CLI {cli:.1f}, dockerd+containerd {sum(map(cpu_s, engine)) - engine0:.1f}; "
                    f"machine {100 * busy / max(total, 1e-9):.0f}% busy (all processes)")


def clarity_batch(b: Bench, tasks: int) -> tuple[float, list[int], dict[str, int], float, str]:
    """Seconds from the first trigger until every run has ended and every task container of the
    runners is removed (as the bare `docker run --rm` waits for its removal); the runs, their
    states, how long the triggers took, and the CPU it took."""
    cpu = Cpu(b)
    t0_wall, t0 = time.time(), time.perf_counter()
    with ThreadPoolExecutor(4) as pool:  # the triggers overlap with the work, as pushes would
        runs = list(pool.map(lambda _: b.trigger(".clarity/noop.yaml"), range(tasks)))
    trigger_s = time.perf_counter() - t0
    states = b.wait_done(runs, 600, poll_s=0.25)  # the end time is read from the database below
    with b.engine.connect() as conn:  # the controller's own end time, not when a poll saw it
        last = conn.execute(sa.text(f"SELECT max(finished_at) FROM runs WHERE id IN ({','.join(map(str, runs))})")).scalar()
    done_s = (float(last) - t0_wall) if last else time.perf_counter() - t0
    removed_s = b.wait_removed(t0)
    return max(done_s, removed_s), runs, states, trigger_s, cpu.report()


def throughput(b: Bench, tasks: int, rounds: int) -> bool:
    print(f"(b) throughput: {tasks} no-op tasks, {RUNNERS} runners x capacity {CAPACITY} vs bare docker run, P = {P}; "
          f"{rounds} round(s), bare and clarity alternating; medians")
    bare_batch(2 * P)  # warm-up, not counted: both sides
    b.warm_up(".clarity/noop.yaml")
    bares, claritys, ratios = [], [], []
    all_runs: list[int] = []
    ok_states = True
    for i in range(rounds):
        bare_s, bare_cpu = bare_batch(tasks)
        clarity_s, runs, states, trigger_s, clarity_cpu = clarity_batch(b, tasks)
        all_runs += runs
        ok_states = ok_states and states.get("succeeded", 0) == tasks
        bares.append(bare_s)
        claritys.append(clarity_s)
        ratios.append(clarity_s / bare_s)
        print(f"  round {i + 1}: bare {bare_s:6.1f} s ({tasks / bare_s:5.1f} tasks/s)   clarity {clarity_s:6.1f} s "
              f"({tasks / clarity_s:5.1f} tasks/s; triggers took {trigger_s:.1f} s)   ratio {clarity_s / bare_s:.2f}")
        print(f"           bare {bare_cpu}")
        print(f"           clarity {clarity_cpu}")
        if states.get("succeeded", 0) != tasks:
            print(f"           runs by state {states}")
    with b.engine.connect() as conn:
        ids = ",".join(map(str, all_runs))
        rows = conn.execute(sa.text(f"SELECT q.queued_at, q.leased_at, t.started_at, t.finished_at, r.finished_at "
                                    f"FROM queue q JOIN tasks t ON t.run_id = q.run_id JOIN runs r ON r.id = q.run_id "
                                    f"WHERE q.run_id IN ({ids})")).all()
        owners: dict[str, int] = dict(conn.execute(sa.text(f"SELECT lease_owner, count(*) FROM queue WHERE run_id IN ({ids}) "
                                           "GROUP BY lease_owner")).all())
    busy = sum((r[3] or 0) - (r[2] or 0) for r in rows if r[2] and r[3]) / rounds
    lease_gap = [(r[2] - r[1]) * 1000 for r in rows if r[1] and r[2]]
    bare_s, clarity_s = statistics.median(bares), statistics.median(claritys)
    ratio = clarity_s / bare_s
    print(f"  bare docker run x{tasks}, pool of {P}: {bare_s:6.1f} s   ({tasks / bare_s:5.1f} tasks/s)  (median)")
    print(f"  clarity, {RUNNERS} runners:          {clarity_s:6.1f} s   ({tasks / clarity_s:5.1f} tasks/s)  (median)")
    print(f"  tasks by runner {owners}")
    if lease_gap:
        print(f"  per task: leased -> task started p50 {statistics.median(lease_gap):.0f} ms; "
              f"task time (started -> finished) sum {busy:.1f} s = {busy / P:.1f} s per slot (per round)")
    print_phases(b.timings(all_runs))
    ok = ratio <= TARGET_RATIO and ok_states
    print(f"  ratio clarity / bare (median / median): {ratio:.2f}   per round: "
          f"{' '.join(f'{r:.2f}' for r in ratios)}   target <= {TARGET_RATIO:g}: {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds (bare, then clarity, each round)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        raise SystemExit(f"no {IMAGE}: run .ci/images.sh")
    tmp = Path(tempfile.mkdtemp(prefix="clarity-bench-runners-"))
    b = Bench(tmp)
    print(f"controller + {RUNNERS} runner processes (capacity {CAPACITY} each): parallelism P = {P}; {os.cpu_count()} cores")
    started = time.monotonic()
    try:
        b.start()
        ok_a = pickup(b, args.samples)
        ok_b = throughput(b, args.tasks, args.rounds)
    finally:
        b.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ok = ok_a and ok_b
    print(f"{'PASS' if ok else 'FAIL'} ({time.monotonic() - started:.0f} s)")
    return 1 if (args.check and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
