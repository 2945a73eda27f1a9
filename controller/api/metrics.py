"""Prometheus metrics of one controller, in a registry of its own (never the global one).

Counts of things in the database (runs by state, tasks by state, queue depth and oldest wait) are
read at scrape time, so they are right whichever replica or runner changed them. Durations are
observed as they happen, in this process: the HTTP runner routes call `leased` and `finished`,
and an in-process runner should too (see `ObservedPeer` in the report / InProcessPeer hook).
"""

from __future__ import annotations

import time
from typing import Iterator

import sqlalchemy as sa
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.store import tables
from controller.store.queue import Item
from controller.store.runs import Store
from runner.spec import Outcome, TaskResult

CONTENT_TYPE = CONTENT_TYPE_LATEST
log = structlog.get_logger("clarity.metrics")
WAIT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class _Database(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("clarity_database_up", "1 when the database answered this scrape")
        try:
            families = list(self._read())
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("metrics: database unavailable", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> Iterator[Metric]:
        r, t, q = tables.runs, tables.tasks, tables.queue
        with self.store.engine.connect() as conn:
            runs = conn.execute(sa.select(r.c.state, sa.func.count()).group_by(r.c.state)).all()
            tasks = conn.execute(sa.select(t.c.state, sa.func.count()).group_by(t.c.state)).all()
            depth, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(q.c.queued_at)).where(q.c.state == "queued")).one()
            leased = conn.execute(sa.select(sa.func.count()).select_from(q).where(q.c.state == "leased")).scalar_one()
        runs_g = GaugeMetricFamily("clarity_runs", "Runs by state", labels=["state"])
        for state, n in runs:
            runs_g.add_metric([state], n)
        tasks_g = GaugeMetricFamily("clarity_tasks", "Tasks by state (pending, running, or their outcome)",
                                    labels=["state"])
        for state, n in tasks:
            tasks_g.add_metric([state], n)
        yield runs_g
        yield tasks_g
        yield GaugeMetricFamily("clarity_queue_length", "Tasks queued, waiting for a runner", value=depth)
        yield GaugeMetricFamily("clarity_queue_leased", "Tasks leased to a runner", value=leased)
        yield GaugeMetricFamily("clarity_queue_oldest_wait_seconds", "How long the oldest queued task has waited",
                                value=0.0 if oldest is None else max(0.0, time.time() - oldest))


class Metrics:
    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self.queue_wait = Histogram("clarity_queue_wait_seconds", "From enqueue to lease, per task attempt",
                                    buckets=WAIT_BUCKETS, registry=self.registry)
        self.task_duration = Histogram("clarity_task_duration_seconds", "Task run time on the runner, by outcome",
                                       ["outcome"], buckets=DURATION_BUCKETS, registry=self.registry)
        for outcome in Outcome:
            self.task_duration.labels(outcome.value)
        self.registry.register(_Database(store))

    def leased(self, item: Item) -> None:
        """Call when a runner leased `item` (any peer)."""
        self.queue_wait.observe(max(0.0, (item.leased_at or time.time()) - item.queued_at))

    def finished(self, result: TaskResult) -> None:
        """Call when a runner reported `result` (any peer)."""
        if result.duration_s is not None:
            self.task_duration.labels(result.outcome.value).observe(max(0.0, result.duration_s))

    def render(self) -> bytes:
        return generate_latest(self.registry)
