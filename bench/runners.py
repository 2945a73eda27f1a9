"""Remote runner agents against bare Docker: pick-up latency and throughput.

A controller process (`python -m controller.cli controller`, CLARITY_HOME in a temp dir) and 3
runner processes (`python -m runner.main --capacity 1`: total parallelism P = 3), all on
127.0.0.1, CLARITY_PULL=never, image clarity-busybox:latest.

(a) Pick-up latency, idle runners: runs of a one-task workflow (`echo go`) are triggered one at a
    time, each after the previous one ended. From the controller's database: `queue.queued_at ->
    queue.leased_at` (the lease) and `leased_at -> ts of the first log line "go"` (checkout,
    container create + start, first output, log batch to the controller). Compared with a bare
    `docker run --rm --network none clarity-busybox:latest echo go`: its start -> "go" read on
    stdout. Target: pick-up p50 (queued -> "go") less bare p50 < 50 ms.
(b) Throughput: --tasks runs of a one-task workflow (`true`) triggered at once across the 3
    runners, wall time from the first trigger to the last run's end, vs the same number of bare
    `docker run --rm --network none clarity-busybox:latest true` from a thread pool of P.
    Target: ratio <= 1.2.

    .venv/bin/python bench/runners.py [--tasks 200] [--samples 30] [--check] [--keep]
"""

from __future__ import annotations

import argparse
import os
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
        self.env.update(CLARITY_HOME=str(self.home), CLARITY_PULL="never", PYTHONPATH=str(ROOT))
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
                env=self.env, cwd=ROOT, stdout=log, stderr=log))
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

    def wait_done(self, run_ids: list[int], timeout: float) -> dict[str, int]:
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
            time.sleep(0.02)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def pickup(b: Bench, samples: int) -> bool:
    print(f"(a) pick-up latency, idle runners: {samples} one-task runs one at a time; bare docker run for comparison")
    bare_first_line()  # warm-up
    b.wait_done([b.trigger(".clarity/pickup.yaml")], 60)
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
    beyond = statistics.median(total) - statistics.median(bare)
    ok = bool(beyond < TARGET_PICKUP_MS)
    print(f"  pick-up beyond the container start (p50 total - p50 bare): {beyond:.1f} ms   "
          f"target < {TARGET_PICKUP_MS:g} ms: {'PASS' if ok else 'FAIL'}")
    return ok


def throughput(b: Bench, tasks: int) -> bool:
    print(f"(b) throughput: {tasks} no-op tasks, {RUNNERS} runners x capacity {CAPACITY} vs bare docker run, P = {P}")
    with ThreadPoolExecutor(P) as pool:
        list(pool.map(lambda _: bare_true(), range(P)))  # warm-up
        t0 = time.perf_counter()
        list(pool.map(lambda _: bare_true(), range(tasks)))
        bare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs: list[int] = []
    trigger_done = 0.0
    with ThreadPoolExecutor(4) as pool:  # the triggers overlap with the work, as pushes would
        runs = list(pool.map(lambda _: b.trigger(".clarity/noop.yaml"), range(tasks)))
    trigger_done = time.perf_counter() - t0
    states = b.wait_done(runs, 600)
    clarity_s = time.perf_counter() - t0
    with b.engine.connect() as conn:
        ids = ",".join(map(str, runs))
        rows = conn.execute(sa.text(f"SELECT q.queued_at, q.leased_at, t.started_at, t.finished_at, r.finished_at "
                                    f"FROM queue q JOIN tasks t ON t.run_id = q.run_id JOIN runs r ON r.id = q.run_id "
                                    f"WHERE q.run_id IN ({ids})")).all()
        owners: dict[str, int] = dict(conn.execute(sa.text(f"SELECT lease_owner, count(*) FROM queue WHERE run_id IN ({ids}) "
                                           "GROUP BY lease_owner")).all())
    busy = sum((r[3] or 0) - (r[2] or 0) for r in rows if r[2] and r[3])
    lease_gap = [(r[2] - r[1]) * 1000 for r in rows if r[1] and r[2]]
    ratio = clarity_s / bare_s
    print(f"  bare docker run x{tasks}, pool of {P}: {bare_s:6.1f} s   ({tasks / bare_s:5.1f} tasks/s)")
    print(f"  clarity, {RUNNERS} runners:          {clarity_s:6.1f} s   ({tasks / clarity_s:5.1f} tasks/s; "
          f"triggers took {trigger_done:.1f} s)")
    print(f"  runs by state {states}; tasks by runner {owners}")
    if lease_gap:
        print(f"  per task: leased -> task started p50 {statistics.median(lease_gap):.0f} ms; "
              f"task time (started -> finished) sum {busy:.1f} s = {busy / P:.1f} s per slot")
    ok = ratio <= TARGET_RATIO and states.get("succeeded", 0) == tasks
    print(f"  ratio clarity / bare: {ratio:.2f}   target <= {TARGET_RATIO:g}: {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--samples", type=int, default=30)
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
        ok_b = throughput(b, args.tasks)
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
