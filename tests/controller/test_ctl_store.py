"""The Store: migrations, runs and tasks, log ordering."""

from __future__ import annotations

import time
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.store import tables
from controller.store.migrations import MIGRATIONS, current_version, migrate
from controller.store.runs import NotFound, Store


def new_run(store: Store, tasks: list[str] = ["a", "b"]) -> int:  # noqa: B006
    return store.create_run(repo="/r", workflow="wf", workflow_file=".clarity/wf.yaml", blob_sha="b" * 40,
                            commit_sha="c" * 40, ref="refs/heads/main", event="push", dirty=False,
                            trigger={"by": "test", "inputs": {"x": "1"}}, tasks=[(t, "alpine") for t in tasks])


def test_migrations_idempotent(database_url: str) -> None:
    first = Store.open(database_url)
    run_id = new_run(first)
    second = Store.open(database_url)
    assert migrate(second.engine) == MIGRATIONS[-1][0]
    with second.engine.connect() as conn:
        versions = conn.execute(sa.select(tables.schema_version.c.version)).scalars().all()
        assert current_version(conn) == MIGRATIONS[-1][0]
    assert versions == [n for n, _ in MIGRATIONS]  # each applied exactly once
    assert second.get_run(run_id).workflow == "wf"  # nothing lost


def test_newer_schema_refused(database_url: str) -> None:
    store = Store.open(database_url)
    newer = MIGRATIONS[-1][0] + 1
    with store.engine.begin() as conn:
        conn.execute(tables.schema_version.insert().values(version=newer, applied_at=time.time()))
    with pytest.raises(RuntimeError) as info:
        Store.open(database_url)
    message = str(info.value)
    assert f"schema version {newer}" in message and "newer than this Clarity" in message
    assert "upgrade Clarity" in message


def test_runs_and_tasks_round_trip(database_url: str) -> None:
    store = Store.open(database_url)
    run_id = new_run(store, ["build", "test", "deploy"])
    run = store.get_run(run_id)
    assert (run.state, run.dirty, run.trigger, run.started_at, run.duration_s) == (
        "queued", False, {"by": "test", "inputs": {"x": "1"}}, None, None)
    tasks = store.list_tasks(run_id)
    assert [(t.name, t.position, t.state, t.attempt, t.image) for t in tasks] == [
        ("build", 0, "pending", 0, "alpine"), ("test", 1, "pending", 0, "alpine"), ("deploy", 2, "pending", 0, "alpine")]
    store.set_run_state(run_id, "running", started=True)
    store.update_task(run_id, "test", state="succeeded", output={"k": [1]}, outputs={"a": "b"},
                      exit_code=0, started_at=10.0, finished_at=12.5)
    store.set_run_state(run_id, "succeeded", finished=True)
    run = store.get_run(run_id)
    assert run.state == "succeeded" and run.duration_s is not None and run.duration_s >= 0
    t = {t.name: t for t in store.list_tasks(run_id)}["test"]
    assert (t.output, t.outputs, t.duration_s) == ({"k": [1]}, {"a": "b"}, 2.5)
    with pytest.raises(NotFound):
        store.get_run(run_id + 100)


def test_list_runs_newest_first_with_limit_and_repo(database_url: str) -> None:
    store = Store.open(database_url)
    ids = [new_run(store) for _ in range(5)]
    assert [r.id for r in store.list_runs()] == ids[::-1]
    assert [r.id for r in store.list_runs(limit=2)] == ids[:-3:-1]
    assert store.list_runs(repo="/elsewhere") == []


def test_logs_ordered_across_batches_and_tasks(database_url: str) -> None:
    store = Store.open(database_url)
    run_id = new_run(store, ["first", "second"])
    # written interleaved, in batches, second task first
    store.append_logs(run_id, "second", [(1.0, "s1"), (1.0, "s2")])
    store.append_logs(run_id, "first", [(2.0, "f1")])
    store.append_logs(run_id, "second", [(0.5, "s3")])  # an earlier timestamp does not reorder
    store.append_logs(run_id, "first", [])
    store.append_logs(run_id, "first", [(3.0, f"f{i}") for i in range(2, 6)])
    assert [(t, line) for t, _, line in store.logs(run_id)] == [
        ("first", "f1"), ("first", "f2"), ("first", "f3"), ("first", "f4"), ("first", "f5"),
        ("second", "s1"), ("second", "s2"), ("second", "s3")]
    assert [line for _, _, line in store.logs(run_id, "second")] == ["s1", "s2", "s3"]

    # another Store (another process) continues the sequence instead of colliding with it
    other = Store.open(database_url)
    other.append_logs(run_id, "second", [(4.0, "s4")])
    store2 = Store.open(database_url)
    store2.append_logs(run_id, "second", [(5.0, "s5")])
    assert [line for _, _, line in other.logs(run_id, "second")] == ["s1", "s2", "s3", "s4", "s5"]


def test_logs_of_runs_kept_apart(database_url: str) -> None:
    store = Store.open(database_url)
    r1, r2 = new_run(store), new_run(store)
    store.append_logs(r1, "a", [(1.0, "one")])
    store.append_logs(r2, "a", [(1.0, "two")])
    assert [line for _, _, line in store.logs(r1)] == ["one"]
    assert [line for _, _, line in store.logs(r2)] == ["two"]


def test_logs_of_a_task_not_in_the_run_come_first(database_url: str) -> None:
    """Same order on both databases (SQLite sorts NULLs first, PostgreSQL last)."""
    store = Store.open(database_url)
    run_id = new_run(store, ["a"])
    store.append_logs(run_id, "a", [(1.0, "a1")])
    store.append_logs(run_id, "zz", [(1.0, "z1"), (1.0, "z2")])
    store.append_logs(run_id, "yy", [(1.0, "y1")])
    assert [line for _, _, line in store.logs(run_id)] == ["y1", "z1", "z2", "a1"]


def test_sqlite_directory_created(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state' / 'db.sqlite'}")  # creates the directory too
    assert store.list_runs() == [] and (tmp_path / "state" / "db.sqlite").is_file()


def test_store_shared_by_threads(database_url: str) -> None:
    """One Store used by more threads than its pool keeps open (the engine's workers)."""
    store = Store.open(database_url)
    run_id = new_run(store, [f"t{i}" for i in range(16)])
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def work(i: int) -> None:
        try:
            start.wait()
            for j in range(10):
                store.append_logs(run_id, f"t{i}", [(float(j), f"{i}-{j}")])
                store.update_task(run_id, f"t{i}", state="running", attempt=j)
                new_run(store, [])
            store.update_task(run_id, f"t{i}", state="succeeded")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {t.state for t in store.list_tasks(run_id)} == {"succeeded"}
    assert len(store.list_runs(limit=1000)) == 1 + 16 * 10
    assert [line for _, _, line in store.logs(run_id, "t7")] == [f"7-{j}" for j in range(10)]
    store.engine.dispose()


def test_stores_opened_at_once_on_a_new_database_all_work(database_url: str) -> None:
    # Several processes (controller replicas, `clarity run`s) may start together on a new database:
    # one migrates, the others wait for it.
    import threading

    from controller.store.runs import Store

    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            Store.open(database_url).engine.dispose()
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_plain_postgresql_url_uses_the_installed_driver() -> None:
    from controller.store.runs import open_engine

    engine = open_engine("postgresql://nobody@127.0.0.1:1/x")
    assert engine.dialect.driver == "psycopg"
