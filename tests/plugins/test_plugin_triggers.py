"""Plugin trigger types fire runs (`controller.plugin_triggers.PluginTriggerLoop`): the real store
(SQLite and PostgreSQL) and starter, a real git repository, time driven by an injected clock.

The plugins: the third-party example (examples/plugins/clarity-hello, its `hello_counter` counts
to a limit) and a fake one made here, whose `ticker` the tests steer. A trigger declared on the
default branch is polled once per interval with the state its previous poll returned; each payload
starts one run with the payload in its trigger; a failing poll is logged with the plugin named,
recorded, and polled again next interval; a removed trigger is no longer polled; two controllers
on one database poll each interval once."""

from __future__ import annotations

import re
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest
import structlog

from controller.peer import InProcessPeer
from controller.plugin_triggers import PluginTriggerLoop, PollError, check_poll, interval_of
from controller.plugins import LoadedPlugin, Registry, discover
from controller.plugins.manifest import load
from controller.schedules import refresh_triggers
from controller.services import Services
from controller.store.plugin_triggers import PluginTriggerStates
from controller.store.triggers import Triggers
from plugins.sdk.trigger import Poll
from tests.api.conftest import _env, api, make_api  # noqa: F401 - fixtures
from tests.api.conftest import Api, git
from tests.controller.test_schedules_loop import Clock, repo_with, runs

HELLO_SRC = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "clarity-hello" / "src"

FAKE_MANIFEST = """\
name: fake
version: 2.1.0
description: A plugin of the tests.
trigger_types:
  ticker:
    description: Ticks as the test says.
    interval_s: 45
    config:
      type: object
      additionalProperties: false
      required: [tag]
      properties:
        tag: {type: string}
        batch: {type: integer, minimum: 0, default: 1}
"""

COUNTING = """\
workflow:
  name: counting
  triggers:
    - type: hello_counter
      limit: 2
  tasks:
    - name: report
      image: busybox
      env: {N: "${trigger.payload.n}", BY: "${trigger.by}", EVENT: "${trigger.event}"}
      commands: ["echo run $N"]
"""

TICKING = """\
workflow:
  name: ticking
  triggers:
    - type: ticker
      tag: {tag}
  tasks:
    - name: report
      image: busybox
      env: {{N: "${{trigger.payload.n}}"}}
      commands: ["echo tick $N"]
"""


class Ticker:
    """A trigger type steered by the test: `batch` payloads a poll, the count in its state."""

    interval_s = 30.0

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], Mapping[str, Any] | None]] = []
        self.fail: str | None = None
        self.answer: object = None
        self._lock = threading.Lock()

    def poll(self, config: Mapping[str, Any], state: Mapping[str, Any] | None) -> Poll:
        with self._lock:
            self.calls.append((dict(config), None if state is None else dict(state)))
        if self.fail:
            raise RuntimeError(self.fail)
        if self.answer is not None:
            return self.answer  # type: ignore[return-value]
        n = int((state or {}).get("n", 0))
        batch = int(config["batch"])
        return Poll(payloads=[{"n": n + i + 1, "tag": config["tag"]} for i in range(batch)], state={"n": n + batch})


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def registry(tmp_path: Path, ticker: Ticker, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The installed plugins, as every part of the controller sees them: clarity-hello (from its
    sources) and the fake plugin."""
    monkeypatch.syspath_prepend(str(HELLO_SRC))
    found = discover([metadata.EntryPoint("hello", "clarity_hello", "clarity.plugins")])
    assert not found.problems, found.problems
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "manifest.yaml").write_text(FAKE_MANIFEST)
    fake = LoadedPlugin(load(tmp_path / "fake" / "manifest.yaml"), "tests.fake", "fake-dist 2.1.0", {},
                        {"ticker": ticker})
    registry = Registry(plugins={**found.plugins, "fake": fake})
    monkeypatch.setattr("controller.plugins.installed", lambda: registry)
    yield registry


def loop(services: Services, clock: Clock, registry: Registry) -> PluginTriggerLoop:
    return PluginTriggerLoop(services, clock=clock, registry=registry)


def leased_env(services: Services) -> dict[str, str]:
    lease = InProcessPeer(services.queue, services.scheduler).lease("test-runner", [], 0)
    assert lease is not None
    return dict(lease.spec.env)


def test_a_third_party_trigger_starts_a_run_per_payload_with_its_state(
        make_api: Callable[..., Api], database_url: str, registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    services = make_api(database_url=database_url).services
    repo_with(tmp_path, services, COUNTING)
    refresh_triggers(services, services.repos.get("acme/app"))
    [trigger] = [t for t in Triggers(services.store.engine).list() if t.type == "hello_counter"]
    assert trigger.workflow == "counting" and trigger.ref == "refs/heads/main" and dict(trigger.config) == {"limit": 2}

    clock = Clock("2026-06-01T10:00:10")
    polls = loop(services, clock, registry)
    assert polls.tick() == 1  # a new trigger is polled at once
    [run] = runs(services)
    assert run["workflow"] == "counting" and run["event"] == "hello_counter"
    assert run["trigger"] == {"by": "plugin:hello 1.0.0", "event": "hello_counter", "trigger": trigger.key,
                              "payload": {"n": 1}}
    env = leased_env(services)  # ${trigger.payload.*} and the rest of the audit reach the task
    assert (env["N"], env["BY"], env["EVENT"]) == ("1", "plugin:hello 1.0.0", "hello_counter")

    clock.set("2026-06-01T10:00:59")
    assert polls.tick() == 0  # the same interval: not polled again
    clock.set("2026-06-01T10:01:00")
    assert polls.tick() == 1  # the next one: polled with the state the first poll returned
    clock.set("2026-06-01T10:02:00")
    assert polls.tick() == 0  # counted to its limit
    assert [r["trigger"]["payload"] for r in runs(services)] == [{"n": 1}, {"n": 2}]  # type: ignore[index]
    state = PluginTriggerStates(services.store.engine).get(trigger.key)
    assert state is not None and state.state == {"n": 2} and state.error is None
    assert state.polled_at == pytest.approx(clock.now)


def test_each_poll_gets_the_previous_state_and_the_config_with_its_defaults(
        api: Api, registry: Registry, ticker: Ticker, tmp_path: Path) -> None:  # noqa: F811
    services = api.services
    repo_with(tmp_path, services, TICKING.format(tag="a"))
    refresh_triggers(services, services.repos.get("acme/app"))
    clock = Clock("2026-06-01T10:00:00")
    polls = loop(services, clock, registry)
    assert polls.tick() == 1
    clock.set("2026-06-01T10:00:29")
    assert polls.tick() == 0
    clock.set("2026-06-01T10:00:30")  # the object's interval_s (30) before the manifest's (45)
    assert polls.tick() == 1
    assert ticker.calls == [({"tag": "a", "batch": 1}, None), ({"tag": "a", "batch": 1}, {"n": 1})]

    ticker.answer = Poll(payloads=[{"n": 10}, {"n": 11}, {"n": 12}], state={"n": 12, "cursor": "x"})
    clock.set("2026-06-01T10:01:00")
    assert polls.tick() == 3  # one run per payload
    assert [r["trigger"]["payload"] for r in runs(services)][-3:] == [  # type: ignore[index]
        {"n": 10}, {"n": 11}, {"n": 12}]
    ticker.answer = None
    clock.set("2026-06-01T10:01:30")
    polls.tick()
    assert ticker.calls[-1] == ({"tag": "a", "batch": 1}, {"n": 12, "cursor": "x"})


def test_a_failing_poll_is_logged_recorded_and_retried_next_interval(
        api: Api, registry: Registry, ticker: Ticker, tmp_path: Path) -> None:  # noqa: F811
    services = api.services
    repo_with(tmp_path, services, TICKING.format(tag="a"))
    refresh_triggers(services, services.repos.get("acme/app"))
    [trigger] = Triggers(services.store.engine).list("ticker")
    states = PluginTriggerStates(services.store.engine)
    clock = Clock("2026-06-01T10:00:00")
    polls = loop(services, clock, registry)
    assert polls.tick() == 1  # a good poll: state {"n": 1}

    ticker.fail = "the upstream is down"
    clock.set("2026-06-01T10:00:30")
    with structlog.testing.capture_logs() as logged:
        assert polls.tick() == 0
    [said] = [e for e in logged if e["event"].startswith("plugin trigger poll failed")]
    assert said["plugin"] == "fake 2.1.0" and said["trigger"] == trigger.key and said["log_level"] == "warning"
    assert "RuntimeError: the upstream is down" in said["error"]
    state = states.get(trigger.key)
    assert state is not None and state.state == {"n": 1}  # kept as the last good poll left it
    assert state.error == "plugin fake 2.1.0: poll raised RuntimeError: the upstream is down"
    clock.set("2026-06-01T10:00:45")
    assert polls.tick() == 0 and len(ticker.calls) == 2  # not again within the interval

    ticker.fail, ticker.answer = None, {"payloads": [{"n": 2}]}  # not a Poll
    clock.set("2026-06-01T10:01:00")
    assert polls.tick() == 0
    state = states.get(trigger.key)
    assert state is not None and state.error == "plugin fake 2.1.0: poll returned dict, not a plugins.sdk.trigger.Poll"

    ticker.answer = None
    clock.set("2026-06-01T10:01:30")
    assert polls.tick() == 1  # retried, with the state of the last good poll
    assert ticker.calls[-1] == ({"tag": "a", "batch": 1}, {"n": 1})
    state = states.get(trigger.key)
    assert state is not None and state.state == {"n": 2} and state.error is None
    assert [r["trigger"]["payload"]["n"] for r in runs(services)] == [1, 2]  # type: ignore[index]


def test_one_failing_trigger_does_not_stop_the_others(api: Api, registry: Registry, ticker: Ticker,  # noqa: F811
                                                      tmp_path: Path) -> None:
    services = api.services
    repo_with(tmp_path, services, TICKING.format(tag="a"), name="acme/ticking")
    repo_with(tmp_path, services, COUNTING, name="acme/counting")
    for name in ("acme/ticking", "acme/counting"):
        refresh_triggers(services, services.repos.get(name))
    ticker.fail = "always"
    polls = loop(services, Clock("2026-06-01T10:00:00"), registry)
    assert polls.tick() == 1
    assert [r["workflow"] for r in runs(services)] == ["counting"]


def test_a_removed_trigger_is_no_longer_polled(api: Api, registry: Registry, ticker: Ticker,  # noqa: F811
                                               tmp_path: Path) -> None:
    services = api.services
    src = repo_with(tmp_path, services, TICKING.format(tag="a"))
    repo = services.repos.get("acme/app")
    refresh_triggers(services, repo)
    clock = Clock("2026-06-01T10:00:00")
    polls = loop(services, clock, registry)
    assert polls.tick() == 1
    [old] = Triggers(services.store.engine).list("ticker")

    (src / ".clarity" / "nightly.yaml").write_text(TICKING.format(tag="a").replace("    - type: ticker\n      tag: a\n",
                                                                                  "    - type: manual\n"))
    git(src, "commit", "-q", "-am", "no more ticker")
    refresh_triggers(services, repo)
    assert Triggers(services.store.engine).list("ticker") == []
    clock.set("2026-06-01T10:05:00")
    assert polls.tick() == 0
    assert len(ticker.calls) == 1 and len(runs(services)) == 1
    assert PluginTriggerStates(services.store.engine).get(old.key) is None  # its state is gone too


def test_two_controllers_on_one_database_poll_each_interval_once(
        make_api: Callable[..., Api], database_url: str, registry: Registry, ticker: Ticker,  # noqa: F811
        tmp_path: Path) -> None:
    first, second = make_api(database_url=database_url), make_api(database_url=database_url)
    repo_with(tmp_path, first.services, TICKING.format(tag="a"))
    refresh_triggers(first.services, first.services.repos.get("acme/app"))
    clock = Clock("2026-06-01T10:00:00")
    loops = [loop(first.services, clock, registry), loop(second.services, clock, registry)]
    started = [0, 0]
    for step in range(4):  # four intervals, both controllers at each at the same moment
        clock.set(f"2026-06-01T10:{step // 2:02d}:{(step % 2) * 30 + 5:02d}")
        go = threading.Barrier(2)

        def work(i: int) -> None:
            go.wait()
            for _ in range(3):  # and again within the interval
                started[i] += loops[i].tick()

        threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(ticker.calls) == 4 and sum(started) == 4
    assert [state for _config, state in ticker.calls] == [None, {"n": 1}, {"n": 2}, {"n": 3}]
    assert sorted(r["trigger"]["payload"]["n"] for r in runs(first.services)) == [1, 2, 3, 4]  # type: ignore[index]


def test_the_interval_and_the_answer_are_checked(registry: Registry) -> None:
    hello, counter = registry.plugins["hello"], registry.plugins["hello"].trigger_types["hello_counter"]
    fake = registry.plugins["fake"]
    assert interval_of(hello, "hello_counter", counter) == 60.0

    class Plain:
        def poll(self, config: Mapping[str, Any], state: Mapping[str, Any] | None) -> Poll:
            return Poll()

    class Odd(Plain):
        interval_s = "soon"

    class Fast(Plain):
        interval_s = 0.01

    assert interval_of(fake, "ticker", Plain()) == 45.0  # the manifest's
    assert interval_of(fake, "ticker", Odd()) == 45.0
    assert interval_of(fake, "ticker", Fast()) == 1.0  # at least a second
    assert interval_of(hello, "nothing-declared", Plain()) == 60.0
    assert check_poll(Poll(payloads=[{"a": 1}], state={"b": [2]})) == Poll(payloads=[{"a": 1}], state={"b": [2]})
    for bad, says in ((None, "returned NoneType"), (Poll(payloads=[1]), "payloads[0] is int"),  # type: ignore[list-item]
                      (Poll(state=None), "state is NoneType"),  # type: ignore[arg-type]
                      (Poll(payloads=[{"when": object()}]), "not JSON")):
        with pytest.raises(PollError, match=re.escape(says)):
            check_poll(bad)


def test_a_poll_that_hangs_fails_after_its_timeout(api: Api, registry: Registry, ticker: Ticker,  # noqa: F811
                                                  tmp_path: Path) -> None:
    services = api.services
    repo_with(tmp_path, services, TICKING.format(tag="a"))
    refresh_triggers(services, services.repos.get("acme/app"))
    release = threading.Event()

    def hang(config: Mapping[str, Any], state: Mapping[str, Any] | None) -> Poll:
        release.wait(10)
        return Poll()

    ticker.poll = hang  # type: ignore[method-assign]
    polls = PluginTriggerLoop(services, clock=Clock("2026-06-01T10:00:00"), registry=registry, poll_timeout_s=0.2)
    try:
        assert polls.tick() == 0
    finally:
        release.set()
    [state] = PluginTriggerStates(services.store.engine).list()
    assert state.error == "plugin fake 2.1.0: poll did not answer within 0.2s"
