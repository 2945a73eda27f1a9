"""The state of plugin triggers (controller.plugin_triggers): one row per declared trigger of a
plugin's trigger type, keyed by the trigger's key.

`state` is what the trigger type's last good poll returned (JSON), handed to its next poll; a
failing poll leaves it as it was and records its `error`. Rows of triggers no longer declared are
removed by `prune`. Each poll interval is claimed in `schedule_ticks` (`Triggers.fire`); `forget_slots`
removes a trigger's old claims.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, List, Mapping

import sqlalchemy as sa

from controller.store import tables

s = tables.plugin_trigger_state


@dataclass(frozen=True)
class PluginTriggerState:
    trigger_key: str
    state: Mapping[str, Any] | None
    polled_at: float | None
    error: str | None


class PluginTriggerStates:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get(self, key: str) -> PluginTriggerState | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s).where(s.c.trigger_key == key)).mappings().first()
        return PluginTriggerState(**row) if row is not None else None

    def list(self) -> "List[PluginTriggerState]":
        with self.engine.connect() as conn:
            return [PluginTriggerState(**r) for r in conn.execute(sa.select(s).order_by(s.c.trigger_key)).mappings()]

    def polled(self, key: str, state: Mapping[str, Any], at: float | None = None) -> None:
        """A good poll: `state` is what the next poll gets."""
        self._put(key, {"state": dict(state), "polled_at": time.time() if at is None else at, "error": None})

    def failed(self, key: str, error: str, at: float | None = None) -> None:
        """A failed poll: the state stays as it was, the error is recorded."""
        self._put(key, {"polled_at": time.time() if at is None else at, "error": error})

    def _put(self, key: str, values: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(s.update().where(s.c.trigger_key == key).values(**values))
            if done.rowcount:
                return
            try:
                with conn.begin_nested():
                    conn.execute(s.insert().values(trigger_key=key, **values))
            except sa.exc.IntegrityError:  # made meanwhile (another controller): update it
                conn.execute(s.update().where(s.c.trigger_key == key).values(**values))

    def prune(self) -> int:
        """Remove the rows of triggers that are no longer declared (gone from the `triggers` table)."""
        with self.engine.begin() as conn:
            gone = conn.execute(s.delete().where(s.c.trigger_key.not_in(sa.select(tables.triggers.c.key))))
            return int(gone.rowcount or 0)

    def forget_slots(self, key: str, *, before: float) -> None:
        """Remove the trigger's claimed slots (`schedule_ticks` rows) older than `before`."""
        ticks = tables.schedule_ticks
        with self.engine.begin() as conn:
            conn.execute(ticks.delete().where(ticks.c.trigger_key == key, ticks.c.tick_at < before))
