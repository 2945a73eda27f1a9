"""Queue wait: how long a task waits between enqueue and lease when a runner is idle.

An idle runner long-polls the queue; tasks are enqueued one at a time (each after the previous
one was leased, with a little idle time between) and the wait `leased_at - queued_at` is
recorded for each. Printed: p50, p90, p99 and max, against the target p50 < 50 ms. Runs on
SQLite by default, or on the database `--database-url` names.

    .venv/bin/python bench/queue_wait.py [--n 300] [--database-url URL] [--check]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.store import tables  # noqa: E402
from controller.store.queue import Queue  # noqa: E402
from controller.store.runs import Store  # noqa: E402
from runner.spec import TaskSpec  # noqa: E402

TARGET_P50_MS = 50.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--database-url")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clarity-qbench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'q.db'}"
        store = Store.open(url)
        queue = Queue(store.engine)
        run_id = store.create_run(repo="bench", workflow="q", workflow_file="q.yaml", blob_sha=None, commit_sha=None,
                                  ref=None, event="push", dirty=False, trigger={}, tasks=[])
        spec = TaskSpec(run_id=str(run_id), task="t", image="x", argv=("true",))
        waits: list[float] = []
        leased = threading.Semaphore(0)
        stop = threading.Event()

        def runner() -> None:
            while not stop.is_set():
                item = queue.lease("bench-runner", [], wait_s=2.0)
                if item is not None:
                    waits.append((item.leased_at or 0) - item.queued_at)
                    leased.release()

        thread = threading.Thread(target=runner, daemon=True)
        thread.start()
        time.sleep(0.2)  # the runner is idle, waiting
        started = time.perf_counter()
        for i in range(args.n):
            with store.engine.begin() as conn:
                queue.enqueue(conn, run_id=run_id, task=f"t{i}", attempt=1, spec=spec, labels=(), log_offset=0)
            queue.notify()
            if not leased.acquire(timeout=10):
                print(f"task {i} was not leased within 10 s", file=sys.stderr)
                return 1
            time.sleep(0.002)  # idle again before the next one
        elapsed = time.perf_counter() - started
        stop.set()
        thread.join()
        with store.engine.connect() as conn:
            left = conn.execute(sa.select(sa.func.count()).select_from(tables.queue)
                                .where(tables.queue.c.state == "queued")).scalar_one()
    ms = [w * 1000 for w in waits]
    p50 = statistics.median(ms)
    print(f"queue wait, enqueue -> lease, idle runner, {args.n} tasks on {url.split(':', 1)[0]} ({elapsed:.1f}s)")
    print(f"  p50 {p50:7.2f} ms   p90 {percentile(ms, 90):7.2f} ms   p99 {percentile(ms, 99):7.2f} ms   "
          f"max {max(ms):7.2f} ms   left queued: {left}")
    verdict = "PASS" if p50 < TARGET_P50_MS and left == 0 else "FAIL"
    print(f"  target p50 < {TARGET_P50_MS:g} ms: {verdict}")
    return 1 if args.check and verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
