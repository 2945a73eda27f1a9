"""Plugin triggers: poll the declared triggers of plugins' trigger types, and start a run per payload.

A plugin's trigger type (plugins.sdk.trigger) is an object with `poll(config, state) -> Poll`. For
every trigger of such a type that a workflow file declares on its repository's default branch (the
`triggers` table, kept current by the schedule loop: controller.schedules.refresh_triggers), this
loop calls `poll` once every `interval_s` (the trigger object's `interval_s`, else the manifest's
`trigger_types.NAME.interval_s`, else 60 s) with the trigger's config (the manifest schema's
top-level defaults filled in) and the state the previous poll returned (None the first time; kept
in the `plugin_trigger_state` table). Each payload of the answer starts one run of the workflow
(`Starter.plugin_trigger`), at the head of the branch the trigger was read from; then the new
state is stored (a controller stopped in between polls again with the old state: at least once).

Intervals are slots of time, `floor(now / interval_s)`; each slot of each trigger is claimed in
the `schedule_ticks` table the way schedule ticks are (`Triggers.fire`), so with any number of
controllers on one database each interval polls once. A poll that raises, takes longer than
`poll_timeout_s`, or answers something else than a Poll of JSON objects is logged with the plugin
named and recorded in the state row's `error`; the state stays as it was and the next interval
polls again. Neither the loop nor the controller stops for it.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import structlog

from controller.loop import Loop
from controller.services import Services
from controller.starter import StartError
from controller.store.plugin_triggers import PluginTriggerStates
from controller.store.triggers import TriggerRow, Triggers
from controller.workflow.schema import TRIGGER_TYPES as CORE_TRIGGERS
from plugins.sdk.trigger import Poll, TriggerType

if TYPE_CHECKING:
    from controller.plugins import LoadedPlugin, Registry

log = structlog.get_logger("clarity.plugin_triggers")

TICK_S = 1.0  # how often the loop looks for a trigger whose interval has come
DEFAULT_INTERVAL_S = 60.0
MIN_INTERVAL_S = 1.0
POLL_TIMEOUT_S = 60.0  # a poll taking longer fails (its thread is left to end by itself)
PRUNE_S = 60.0  # how often the state rows of triggers no longer declared are removed
KEEP_SLOTS = 10  # claimed slots kept per trigger (older ones are removed): room for clocks apart


class PollError(Exception):
    """A poll failed: raised, timed out, or answered something else than a Poll."""


def interval_of(plugin: LoadedPlugin, type_name: str, impl: object) -> float:
    """The trigger object's `interval_s`, else the manifest's, else 60 (at least 1 s)."""
    for candidate in (getattr(impl, "interval_s", None), _declared_interval(plugin, type_name)):
        if isinstance(candidate, (int, float)) and not isinstance(candidate, bool) and math.isfinite(candidate) \
                and candidate > 0:
            return max(float(candidate), MIN_INTERVAL_S)
    return DEFAULT_INTERVAL_S


def _declared_interval(plugin: LoadedPlugin, type_name: str) -> float | None:
    decl = plugin.manifest.trigger_types.get(type_name)
    return decl.interval_s if decl is not None else None


def with_defaults(plugin: LoadedPlugin, type_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The trigger's config with the top-level `default`s of the manifest's schema filled in."""
    decl = plugin.manifest.trigger_types.get(type_name)
    props = (decl.config.get("properties") or {}) if decl is not None else {}
    filled = {k: v["default"] for k, v in props.items() if isinstance(v, Mapping) and "default" in v}
    return {**json.loads(json.dumps(filled)), **dict(config)}


def check_poll(answer: object) -> Poll:
    """The answer of a poll, checked: a Poll whose payloads are JSON objects and whose state is one."""
    if not isinstance(answer, Poll):
        raise PollError(f"poll returned {type(answer).__name__}, not a plugins.sdk.trigger.Poll")
    if not isinstance(answer.payloads, (list, tuple)):
        raise PollError(f"Poll.payloads is {type(answer.payloads).__name__}, not a list of objects")
    for i, payload in enumerate(answer.payloads):
        if not isinstance(payload, Mapping):
            raise PollError(f"Poll.payloads[{i}] is {type(payload).__name__}, not an object")
    if not isinstance(answer.state, Mapping):
        raise PollError(f"Poll.state is {type(answer.state).__name__}, not an object")
    try:
        payloads = [json.loads(json.dumps(dict(p))) for p in answer.payloads]
        state = json.loads(json.dumps(dict(answer.state)))
    except (TypeError, ValueError) as e:
        raise PollError(f"the Poll is not JSON: {e}") from None
    return Poll(payloads=payloads, state=state)


class PluginTriggerLoop:
    def __init__(self, services: Services, *, clock: Callable[[], float] = time.time,
                 registry: Registry | None = None, tick_s: float = TICK_S,
                 poll_timeout_s: float = POLL_TIMEOUT_S) -> None:
        self.services, self.clock, self.tick_s, self.poll_timeout_s = services, clock, tick_s, poll_timeout_s
        self._registry = registry
        self.triggers = Triggers(services.store.engine)
        self.states = PluginTriggerStates(services.store.engine)
        self._slot: dict[str, float] = {}  # trigger key -> the newest slot seen here (claimed or not)
        self._missing: set[str] = set()  # trigger types no installed plugin provides (said once)
        self._pruned = float("-inf")
        self._loop = Loop("plugin-triggers", self.tick_s, self.tick, failed="plugin trigger pass failed")
        self.start, self.stop = self._loop.start, self._loop.stop

    def registry(self) -> Registry:
        if self._registry is not None:
            return self._registry
        from controller import plugins

        return plugins.installed()

    # -- a pass --------------------------------------------------------------------------------

    def tick(self) -> int:
        """One pass: poll every plugin trigger whose interval has come; the number of runs started."""
        now = self.clock()
        registry = self.registry()
        started = 0
        declared = [t for t in self.triggers.list() if t.type not in CORE_TRIGGERS]
        for trigger in declared:
            found = registry.trigger_type(trigger.type)
            if found is None:
                if trigger.type not in self._missing:
                    self._missing.add(trigger.type)
                    log.warning("no installed plugin provides this trigger type: not polled here",
                                type=trigger.type, trigger=trigger.key)
                continue
            plugin, impl = found
            started += self._due(trigger, plugin, impl, now)
        if now - self._pruned >= PRUNE_S:
            self._pruned = now
            self.states.prune()
            keys = {t.key for t in declared}
            self._slot = {k: v for k, v in self._slot.items() if k in keys}
        return started

    def _due(self, trigger: TriggerRow, plugin: LoadedPlugin, impl: TriggerType, now: float) -> int:
        interval = interval_of(plugin, trigger.type, impl)
        slot = math.floor(now / interval) * interval  # the start of this interval, epoch seconds
        if self._slot.get(trigger.key) == slot:
            return 0  # this interval was polled (here or by another controller) already
        self._slot[trigger.key] = slot
        if not self.triggers.fire(trigger.key, slot):
            return 0  # another controller polls this interval
        self.states.forget_slots(trigger.key, before=slot - KEEP_SLOTS * interval)
        return self.poll(trigger, plugin, impl, slot)

    def poll(self, trigger: TriggerRow, plugin: LoadedPlugin, impl: TriggerType, slot: float) -> int:
        """Poll one trigger now, start its runs, keep its state (or its error): the runs started."""
        who = f"{plugin.name} {plugin.version}"
        previous = self.states.get(trigger.key)
        state = dict(previous.state) if previous is not None and previous.state is not None else None
        try:
            answer = self._call(impl, with_defaults(plugin, trigger.type, trigger.config), state)
        except PollError as exc:
            log.warning("plugin trigger poll failed; polled again next interval", plugin=who, type=trigger.type,
                        trigger=trigger.key, error=str(exc))
            self.states.failed(trigger.key, f"plugin {who}: {exc}", at=self.clock())
            return 0
        started, first = 0, None
        for i, payload in enumerate(answer.payloads):
            run = self._start(trigger, (plugin.name, plugin.version), payload, f"{slot}:{i}")
            if run is not None:
                started += 1
                first = first if first is not None else run
        if first is not None:
            self.triggers.fired(trigger.key, slot, first)
        self.states.polled(trigger.key, answer.state, at=self.clock())
        if answer.payloads:
            log.info("plugin trigger polled", plugin=who, trigger=trigger.key, payloads=len(answer.payloads),
                     runs=started)
        return started

    def _call(self, impl: TriggerType, config: dict[str, Any], state: dict[str, Any] | None) -> Poll:
        """`impl.poll(config, state)` in a thread of its own, for at most poll_timeout_s."""
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["answer"] = impl.poll(config, state)
            except BaseException as e:  # noqa: BLE001 - whatever the plugin raises is its failure
                box["error"] = e

        thread = threading.Thread(target=work, name="plugin-trigger-poll", daemon=True)
        thread.start()
        thread.join(self.poll_timeout_s)
        if thread.is_alive():
            raise PollError(f"poll did not answer within {self.poll_timeout_s:g}s")
        if "error" in box:
            e = box["error"]
            raise PollError(f"poll raised {type(e).__name__}: {e}")
        return check_poll(box.get("answer"))

    def _start(self, trigger: TriggerRow, plugin: tuple[str, str], payload: Mapping[str, Any],
               slot_key: str) -> int | None:
        try:
            repo = self.services.repos.get_id(trigger.repo_id)
            outcome = self.services.starter.plugin_trigger(
                repo, trigger, payload, plugin=plugin, dedupe_key=f"{trigger.repo_id}:plugin:{trigger.key}:{slot_key}")
        except (StartError, LookupError) as exc:
            log.warning("plugin trigger run not started", plugin=f"{plugin[0]} {plugin[1]}", trigger=trigger.key,
                        error=str(exc))
            return None
        except Exception:  # the next payloads, and the state, still go through
            log.exception("plugin trigger run not started", plugin=f"{plugin[0]} {plugin[1]}", trigger=trigger.key)
            return None
        if not outcome.runs:
            log.warning("plugin trigger run not started", plugin=f"{plugin[0]} {plugin[1]}", trigger=trigger.key,
                        skipped=outcome.skipped or None)
            return None
        return outcome.runs[0]
