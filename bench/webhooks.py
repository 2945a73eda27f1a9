"""Webhook intake and queue wait over HTTP, against a real controller process.

One run, two measurements, both through the controller's HTTP API on 127.0.0.1:

1. Webhook deliveries: N GitHub `push` deliveries (from the `push-branch.json` fixture, each with
   its own `X-GitHub-Delivery` id, signed with the repository's secret) are sent by a pool of
   concurrent clients. Measured: accepted (202) per second over the whole send, request latency
   p50/p99, and how fast the intake worker drains them. Then checked, in the database: every
   delivery id is stored exactly once and ended `processed`/`ignored` (none `failed`, none left
   behind); 100 redeliveries of sent ids make no new row. The repository's workflow triggers on
   pushes to `release` only, so the worker does its real work per delivery (parse, mirror lookup,
   read and lint `.clarity/ci.yaml`, match) but makes no run. Target: >= 300 accepted/s, none lost.
2. Queue wait over HTTP: an idle remote-style runner long-polls `/api/v1/runner/lease` through
   `runner.client.HttpPeer`; runs are made one at a time with `POST /api/v1/repos/{repo}/trigger`
   (the workflow's `manual` trigger, one task) and the runner finishes each leased task with a
   fake succeeded TaskResult (no Docker). Measured: `queue.leased_at - queue.queued_at`.
   Target: p50 < 50 ms.

    .venv/bin/python bench/webhooks.py [--n 3000] [--concurrency 16] [--runs 100]
                                       [--database-url URL] [--check] [--keep]

`--database-url` must name an empty database (the controller creates the tables).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.client import HttpPeer, register  # noqa: E402
from runner.spec import Outcome, TaskResult  # noqa: E402

FIXTURE = Path("/work/shared/fixtures/webhooks/github/push-branch.json")
REPO_NAME = "Codertocat/Hello-World"  # the fixture's repository.full_name
SECRET = "bench-" + uuid.uuid4().hex
TARGET_RATE = 300.0
TARGET_P50_MS = 50.0
DUPLICATES = 100

WORKFLOW = """\
workflow:
  name: "bench"
  version: "1.0.0"
  triggers:
    - type: push
      branches: ["release"]
    - type: manual
  tasks:
    - name: tiny
      image: clarity-busybox:latest
      commands:
        - "true"
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path) -> tuple[str, str]:
    """A local repository on `master` with two commits; (before, after) shas."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "master")
    (path / "README.md").write_text("bench\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    before = git(path, "rev-parse", "HEAD")
    (path / ".clarity").mkdir()
    (path / ".clarity" / "ci.yaml").write_text(WORKFLOW)
    (path / "README.md").write_text("bench, with a workflow\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "add the workflow")
    return before, git(path, "rev-parse", "HEAD")


def push_body(before: str, after: str) -> bytes:
    """The fixture, pointed at the local repository's commits (the worker looks them up in the mirror)."""
    payload: dict[str, Any] = json.loads(FIXTURE.read_text())
    payload = copy.deepcopy(payload)
    payload["before"], payload["after"] = before, after
    if isinstance(payload.get("head_commit"), dict):
        payload["head_commit"]["id"] = after
    for c in payload.get("commits") or []:
        c["id"] = after
    return json.dumps(payload).encode()


class Controller:
    """`python -m controller.cli controller` in a temporary CLARITY_HOME (no built-in runner)."""

    def __init__(self, home: Path, database_url: str | None) -> None:
        self.home, self.port = home, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "CLARITY_HOME": str(home), "CLARITY_LOG_FORMAT": "json",
                    "CLARITY_RATE_LIMIT": "0"}  # measured: the controller's own speed, not its limit
        self.env.pop("CLARITY_CONFIG", None)
        if database_url:
            self.env["CLARITY_DATABASE_URL"] = database_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "controller.log"

    def api_key(self) -> str:
        """`clarity apikey create` works on the database directly: the key exists before the start."""
        done = subprocess.run([sys.executable, "-m", "controller.cli", "apikey", "create", "bench"], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise SystemExit(f"clarity apikey create failed:\n{done.stderr}")
        return done.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "controller", "--port", str(self.port)],
                                     cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=self.log.open("wb"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the controller exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit("the controller did not answer /healthz within 30 s")

    def cpu_s(self) -> float:
        """The controller process's own CPU time (user + system; git children not included)."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def send_all(url: str, body: bytes, ids: list[str], concurrency: int) -> tuple[dict[str, int], list[float], float]:
    """POST one delivery per id from `concurrency` threads (one keep-alive client each): status counts
    ({"accepted": n, "duplicate": n, "<code>": n}), latencies in seconds, wall time."""
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    base_headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": signature,
                    "User-Agent": "GitHub-Hookshot/bench"}
    lock = threading.Lock()
    it = iter(ids)
    counts: dict[str, int] = {}
    latencies: list[float] = []
    barrier = threading.Barrier(concurrency + 1)

    def worker() -> None:
        mine: list[float] = []
        tally: dict[str, int] = {}
        with httpx.Client(timeout=30) as client:
            barrier.wait()
            while True:
                with lock:
                    delivery = next(it, None)
                if delivery is None:
                    break
                t0 = time.perf_counter()
                try:
                    resp = client.post(url, content=body, headers={**base_headers, "X-GitHub-Delivery": delivery})
                    key = resp.json().get("status", str(resp.status_code)) if resp.status_code == 202 \
                        else str(resp.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                mine.append(time.perf_counter() - t0)
                tally[key] = tally.get(key, 0) + 1
        with lock:
            latencies.extend(mine)
            for k, v in tally.items():
                counts[k] = counts.get(k, 0) + v

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return counts, latencies, time.perf_counter() - t0


def wait_drained(engine: sa.Engine, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            left = conn.execute(sa.text("SELECT count(*) FROM deliveries WHERE state IN ('received', 'processing')")
                                ).scalar_one()
        if left == 0:
            return True
        time.sleep(0.2)
    return False


def bench_webhooks(ctl: Controller, engine: sa.Engine, body: bytes, n: int, concurrency: int) -> bool:
    url = ctl.base + "/api/v1/hooks/github"
    # Warm-up: the first delivery clones the mirror; not measured.
    warm, _, _ = send_all(url, body, [f"warmup-{uuid.uuid4()}" for _ in range(concurrency)], concurrency)
    if not wait_drained(engine, 60):
        print("  the warm-up deliveries were not processed within 60 s", file=sys.stderr)
        return False
    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    ids = [f"{prefix}{i}" for i in range(n)]
    server_cpu, client_cpu = ctl.cpu_s(), time.process_time()
    counts, lat, wall = send_all(url, body, ids, concurrency)
    server_cpu, client_cpu = ctl.cpu_s() - server_cpu, time.process_time() - client_cpu
    sent_done = time.time()
    drained = wait_drained(engine, 120)
    drain_wait = time.time() - sent_done
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT delivery_id, state, error, received_at, processed_at FROM deliveries "
                                    "WHERE forge = 'github' AND delivery_id LIKE :p"), {"p": prefix + "%"}).all()
        total_before = conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar_one()
        runs_made = conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
    # Redeliveries of ids already stored: answered "duplicate", no new row.
    dup_counts, _, _ = send_all(url, body, ids[:: max(1, n // DUPLICATES)][:DUPLICATES], min(concurrency, 8))
    with engine.connect() as conn:
        total_after = conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar_one()

    accepted = counts.get("accepted", 0)
    rate = accepted / wall
    ms = [x * 1000 for x in lat]
    per_id: dict[str, int] = {}
    states: dict[str, int] = {}
    for r in rows:
        per_id[r.delivery_id] = per_id.get(r.delivery_id, 0) + 1
        states[r.state] = states.get(r.state, 0) + 1
    missing = [i for i in ids if i not in per_id]
    twice = [i for i, c in per_id.items() if c != 1]
    final_ok = sum(states.get(s, 0) for s in ("processed", "ignored"))
    first_in = min((r.received_at for r in rows), default=0.0)
    last_done = max((r.processed_at or 0 for r in rows), default=0.0)
    worker_rate = len(rows) / (last_done - first_in) if last_done > first_in else 0.0
    sample = next((r.error for r in rows if r.state == "processed"), None)

    print(f"webhooks: {n} GitHub push deliveries, {concurrency} concurrent clients, to {url}")
    print(f"  accepted {accepted}/{n} in {wall:.2f}s = {rate:.0f}/s   other answers: "
          f"{ {k: v for k, v in counts.items() if k != 'accepted'} or 'none'}")
    print(f"  latency p50 {statistics.median(ms):.1f} ms   p90 {percentile(ms, 90):.1f} ms   "
          f"p99 {percentile(ms, 99):.1f} ms   max {max(ms):.1f} ms")
    print(f"  CPU during the send: controller {server_cpu:.1f}s ({server_cpu / max(accepted, 1) * 1000:.2f} ms a "
          f"delivery, intake worker included), bench clients {client_cpu:.1f}s, wall {wall:.1f}s x {os.cpu_count()} cores")
    print(f"  intake worker: {len(rows)} rows, {states}, drained {drain_wait:.2f}s after the last send; "
          f"{worker_rate:.0f} processed/s (first received -> last processed)")
    print(f"  processed note: {sample!r}")
    print(f"  lost: {len(missing)}   stored more than once: {len(twice)}   failed: {states.get('failed', 0)}   "
          f"runs made by pushes: {runs_made}")
    print(f"  {DUPLICATES} redeliveries: {dup_counts}; rows {total_before} -> {total_after}")
    ok_lossless = (drained and not missing and not twice and final_ok == n and accepted == n
                   and total_after == total_before and dup_counts.get("duplicate", 0) == DUPLICATES and runs_made == 0
                   and warm.get("accepted", 0) == concurrency)
    verdict = "PASS" if rate >= TARGET_RATE and ok_lossless else "FAIL"
    print(f"  target >= {TARGET_RATE:g} accepted/s, none lost: {verdict}"
          + ("" if ok_lossless else "  (deliveries lost, duplicated, failed or not drained)"))
    return verdict == "PASS"


def bench_queue_wait(ctl: Controller, engine: sa.Engine, key: str, runs: int) -> bool:
    made = httpx.post(f"{ctl.base}/api/v1/runner-tokens", json={}, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    made.raise_for_status()  # a runner authenticates with its own credential, not an API key
    credential = register(ctl.base, made.json()["token"], name="bench-http-runner", labels=[], capacity=1,
                          version=None)["credential"]
    peer = HttpPeer(ctl.base, str(credential), timeout=10)
    leased = threading.Semaphore(0)
    stop = threading.Event()
    leased_runs: list[str] = []
    errors: list[str] = []

    def runner() -> None:
        while not stop.is_set():
            try:
                lease = peer.lease("bench-http-runner", [], wait_s=2.0)
                if lease is None:
                    continue
                now = time.time()
                peer.finish(lease.lease_id, TaskResult(outcome=Outcome.SUCCEEDED, exit_code=0, started_at=now,
                                                       finished_at=now))
                leased_runs.append(lease.spec.run_id)
                leased.release()
            except Exception as exc:  # reported below; the bench then fails
                errors.append(repr(exc))
                time.sleep(0.1)

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    time.sleep(0.3)  # the runner is idle in its long poll
    trigger_ms: list[float] = []
    run_ids: list[int] = []
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    with httpx.Client(base_url=ctl.base, headers=headers, timeout=30) as api:
        for i in range(runs):
            t0 = time.perf_counter()
            resp = api.post(f"/api/v1/repos/{REPO_NAME}/trigger", json={"ref": "master", "workflow": ".clarity/ci.yaml"})
            trigger_ms.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 201:
                print(f"  trigger {i} answered {resp.status_code}: {resp.text[:300]}", file=sys.stderr)
                stop.set()
                return False
            run_ids.extend(resp.json()["runs"])
            if not leased.acquire(timeout=10):
                print(f"  run {run_ids[-1]}'s task was not leased within 10 s; errors: {errors[-3:]}", file=sys.stderr)
                stop.set()
                return False
            time.sleep(0.005)  # idle again before the next one
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join(timeout=15)
    peer.close()
    deadline = time.monotonic() + 10
    while True:  # the finish is answered after the run's end is stored; this is only a safety net
        with engine.connect() as conn:
            q = conn.execute(sa.text("SELECT run_id, queued_at, leased_at FROM queue")).all()
            states = dict(conn.execute(sa.text("SELECT state, count(*) FROM runs GROUP BY state")).all())
        if states.get("succeeded", 0) >= runs or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    mine = {str(r) for r in run_ids}
    waits = [(r.leased_at - r.queued_at) * 1000 for r in q if str(r.run_id) in mine and r.leased_at is not None]
    if not waits:
        print("  no leased queue rows found", file=sys.stderr)
        return False
    p50 = statistics.median(waits)
    print(f"queue wait over HTTP: {runs} runs triggered one at a time, idle HttpPeer runner long-polling ({elapsed:.1f}s)")
    print(f"  enqueue -> lease  p50 {p50:6.2f} ms   p90 {percentile(waits, 90):6.2f} ms   "
          f"p99 {percentile(waits, 99):6.2f} ms   max {max(waits):6.2f} ms   ({len(waits)} tasks)")
    print(f"  trigger request   p50 {statistics.median(trigger_ms):6.2f} ms   p99 {percentile(trigger_ms, 99):6.2f} ms"
          f"   (fetches the mirror, compiles, enqueues)")
    print(f"  runs by state: {states}   runner errors: {len(errors)}")
    ok = p50 < TARGET_P50_MS and len(waits) == runs and states.get("succeeded", 0) == runs and not errors
    verdict = "PASS" if ok else "FAIL"
    print(f"  target p50 < {TARGET_P50_MS:g} ms, every run succeeded: {verdict}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="webhook deliveries to send (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP clients (default 16)")
    parser.add_argument("--runs", type=int, default=100, help="runs for the queue-wait part (default 100)")
    parser.add_argument("--database-url", help="an empty database (default: SQLite in the temp dir)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (controller.log is there)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="clarity-hookbench-"))
    ctl = Controller(tmp / "home", args.database_url)
    ok = False
    try:
        before, after = make_repo(tmp / "repo")
        body = push_body(before, after)
        ctl.home.mkdir()
        key = ctl.api_key()
        ctl.start()
        url = args.database_url or f"sqlite:///{ctl.home / 'clarity.db'}"
        resp = httpx.post(ctl.base + "/api/v1/repos", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                          json={"name": REPO_NAME, "url": str(tmp / "repo"), "forge": "github", "webhook_secret": SECRET})
        if resp.status_code != 201:
            raise SystemExit(f"registering the repository answered {resp.status_code}: {resp.text}")
        engine = sa.create_engine(url)
        print(f"controller {ctl.base}, database {url.split(':', 1)[0]}, {os.cpu_count()} cores, "
              f"body {len(body)} bytes")
        ok_hooks = bench_webhooks(ctl, engine, body, args.n, args.concurrency)
        ok_queue = bench_queue_wait(ctl, engine, key, args.runs)
        ok = ok_hooks and ok_queue
        engine.dispose()
    finally:
        ctl.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
