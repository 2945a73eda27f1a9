"""The trigger side of the plugin SDK: a custom trigger type.

A trigger type is any object with

    interval_s: float   # how often the controller asks (optional; default 60)
    def poll(self, config: Mapping[str, Any], state: Mapping[str, Any] | None) -> Poll

The controller calls `poll` for every workflow that declares a trigger of this type (on the
repository's default branch), every `interval_s`, with the trigger's `config` (checked against the
manifest's schema) and the state the previous call returned (None the first time). Each payload
in the answer starts one run of that workflow, with the payload as `${trigger.payload.*}`. The
state (JSON) is kept in the controller's database. Unlike task types, trigger types run in the
controller process: install only plugins you trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable


@dataclass(frozen=True)
class Poll:
    payloads: list[dict[str, Any]] = field(default_factory=list)  # one run each
    state: dict[str, Any] = field(default_factory=dict)  # given to the next poll


@runtime_checkable
class TriggerType(Protocol):
    def poll(self, config: Mapping[str, Any], state: Mapping[str, Any] | None) -> Poll: ...
