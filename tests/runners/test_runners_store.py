"""`controller.store.runners`: one-time tokens, credentials (hashed, compared in constant time),
disable/enable, last seen, and whether any runner can take a set of labels."""

from __future__ import annotations

import hmac
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from controller.store import tables
from controller.store.repos import Conflict
from controller.store.runners import Runners, TokenRefused
from controller.store.runs import Store


@pytest.fixture
def store(database_url: str) -> Any:
    """On SQLite, and on PostgreSQL (`database_url`'s two params)."""
    s = Store.open(database_url)
    yield Runners(s.engine)
    s.engine.dispose()


def test_a_token_works_once(store: Runners) -> None:
    row, secret = store.create_token(["linux"])
    assert secret.startswith("clrt_") and row.prefix == secret[:13] and row.state == "unused"
    runner, credential = store.register(secret, "box-1", None, 2, "0.1.0")
    assert runner.labels == ("linux",)  # the token's labels: the runner gave none
    assert credential.startswith("clrc_") and runner.prefix == credential[:13]
    with pytest.raises(TokenRefused):
        store.register(secret, "box-2", ["x"], 1)
    used = store.tokens()[0]
    assert used.state == "used" and used.used_by == "box-1"
    with pytest.raises(LookupError):
        store.revoke_token(row.prefix)  # a used token is not revoked: it is spent


def test_own_labels_win_over_the_tokens(store: Runners) -> None:
    _, secret = store.create_token(["linux"])
    runner, _ = store.register(secret, "box", ["gpu", "arm64", "gpu"], 1)
    assert runner.labels == ("gpu", "arm64")


def test_revoked_and_bad_tokens(store: Runners) -> None:
    row, secret = store.create_token()
    store.revoke_token(row.prefix)
    with pytest.raises(TokenRefused):
        store.register(secret, "box", [], 1)
    _, other = store.create_token()
    with pytest.raises(TokenRefused):
        store.register(other[:-2] + "xx", "box", [], 1)  # right prefix, wrong secret
    with pytest.raises(TokenRefused):
        store.register("clrt_nothing", "box", [], 1)
    store.register(other, "box", [], 1)  # the failed attempts did not spend it


def test_a_refused_registration_does_not_spend_the_token(store: Runners) -> None:
    _, first = store.create_token()
    store.register(first, "box", [], 1)
    _, secret = store.create_token()
    with pytest.raises(Conflict):
        store.register(secret, "box", [], 1)
    for name, labels, capacity in (("builtin-x", [], 1), ("bad name", [], 1), ("ok", ["bad label"], 1), ("ok", [], 0)):
        with pytest.raises(ValueError):
            store.register(secret, name, labels, capacity)
    assert store.register(secret, "box-2", [], 1)[0].name == "box-2"


def test_one_token_many_racers_one_winner(store: Runners) -> None:
    _, secret = store.create_token()
    wins: list[str] = []
    refused: list[str] = []

    def go(i: int) -> None:
        try:
            store.register(secret, f"racer-{i}", [], 1)
            wins.append(f"racer-{i}")
        except TokenRefused:
            refused.append(f"racer-{i}")

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(refused) == 7
    assert [r.name for r in store.list()] == wins


def test_credentials_check_disable_enable(store: Runners) -> None:
    _, secret = store.create_token()
    runner, credential = store.register(secret, "box", ["linux"], 3)
    assert store.check(credential) == runner
    assert store.check(credential[:-1] + ("A" if credential[-1] != "A" else "B")) is None
    assert store.check("clrc_unknown") is None
    assert store.check("") is None
    store.disable("box")
    assert store.check(credential) is None
    assert store.list()[0].disabled
    store.enable("box")
    assert store.check(credential) is not None
    with pytest.raises(LookupError):
        store.disable("nobody")


def test_only_hashes_are_stored(store: Runners) -> None:
    _, secret = store.create_token()
    _, credential = store.register(secret, "box", [], 1)
    with store.engine.connect() as conn:
        dumped = repr(conn.execute(sa.select(tables.runners)).all())
        dumped += repr(conn.execute(sa.select(tables.runner_tokens)).all())
    assert secret not in dumped and credential not in dumped


def test_secrets_are_compared_in_constant_time(store: Runners, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module calls hmac.compare_digest
    _, secret = store.create_token()
    store.register(secret, "box", [], 1)
    assert calls, "the token was not compared with hmac.compare_digest"
    calls.clear()
    store.check("clrc_unknown-prefix")  # no such prefix: the same work is done anyway
    assert len(calls) == 1
    calls.clear()
    _, credential = store.register(store.create_token()[1], "box-2", [], 1)
    calls.clear()
    assert store.check(credential) is not None and len(calls) == 1


def test_touch_and_can_take(store: Runners) -> None:
    _, secret = store.create_token()
    runner, _ = store.register(secret, "box", ["linux", "fast"], 2)
    assert not store.can_take([])  # registered but never seen
    store.touch(runner, "10.0.0.7")
    seen = store.get("box")
    assert seen.last_ip == "10.0.0.7" and seen.last_seen_at is not None and seen.last_seen_at <= time.time()
    assert store.can_take([]) and store.can_take(["fast"]) and store.can_take(["linux", "fast"])
    assert not store.can_take(["gpu"]) and not store.can_take(["fast", "gpu"])
    assert not store.can_take(["fast"], within_s=-1)  # seen, but too long ago
    store.disable("box")
    assert not store.can_take(["fast"])
