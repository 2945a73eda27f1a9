"""The deliveries table on SQLite and PostgreSQL: one row per (forge, delivery id), claims that never overlap."""

from __future__ import annotations

import threading
from typing import Iterator

import pytest
import sqlalchemy as sa

from controller.store.deliveries import Deliveries
from controller.store.runs import Store


@pytest.fixture
def store(database_url: str) -> Iterator[Deliveries]:
    engine = Store.open(database_url).engine
    yield Deliveries(engine)
    engine.dispose()


def test_a_delivery_is_recorded_once(store: Deliveries) -> None:
    first = store.record("github", "guid-1", None, "push", {"ref": "refs/heads/main"})
    assert first is not None
    assert store.record("github", "guid-1", None, "push", {"ref": "other"}) is None
    assert store.record("gitea", "guid-1", None, "push", {}) is not None  # ids are per forge
    row = store.get(first)
    assert (row.state, row.payload, row.processed_at) == ("received", {"ref": "refs/heads/main"}, None)
    assert [r.id for r in store.recent()][-1] == first


def test_an_ignored_delivery_is_recorded_final(store: Deliveries) -> None:
    row_id = store.record("github", "i", None, "issues", {}, state="ignored", error="not acted on")
    assert row_id is not None
    row = store.get(row_id)
    assert row.state == "ignored" and row.processed_at is not None
    assert store.claim_next("me") is None
    with pytest.raises(ValueError):
        store.record("github", "j", None, "push", {}, state="processing")


def test_claims_never_overlap(store: Deliveries) -> None:
    ids = {store.record("github", f"g{i}", None, "push", {}) or 0 for i in range(20)}
    claimed: list[int] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while (row := store.claim_next(name)) is not None:
            with lock:
                claimed.append(row.id)
            store.done(row.id, "processed", "ok")

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)  # each exactly once
    assert {r.state for r in store.recent(100)} == {"processed"}


def test_done_and_recover(store: Deliveries) -> None:
    row_id = store.record("gitlab", "k", None, "Push Hook", {})
    assert row_id is not None
    row = store.claim_next("host:1:1")
    assert row is not None and row.state == "processing" and row.error == "host:1:1"
    assert store.recover(lambda owner: False, stale_s=3600) == []
    assert store.recover(lambda owner: owner == "host:1:1", stale_s=3600) == [row_id]
    assert store.get(row_id).state == "received"
    store.claim_next("x")
    store.done(row_id, "failed", "could not clone")
    assert (store.get(row_id).state, store.get(row_id).error) == ("failed", "could not clone")
    with pytest.raises(ValueError):
        store.done(row_id, "received")
    with pytest.raises(LookupError):
        store.get(999)


def test_another_integrity_error_is_not_a_duplicate(store: Deliveries) -> None:
    with pytest.raises(sa.exc.IntegrityError):  # no repository 12345 (foreign key)
        store.record("github", "fk", 12345, "push", {})
