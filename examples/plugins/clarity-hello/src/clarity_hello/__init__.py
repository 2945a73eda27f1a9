"""clarity-hello: an example third-party Clarity plugin.

The `clarity.plugins` entry point names this module; Clarity reads `manifest.yaml` beside it.

- task type `hello`: no code here. The manifest names `module: clarity_hello.task`, so Clarity runs
  `python3 -m clarity_hello.task` in the manifest's image (see task.py).
- trigger type `hello_counter`: `TRIGGER_TYPES` below. Clarity calls its `poll(config, state)` in
  the controller, every `interval_s`, for each workflow that declares the trigger.

This module is also imported inside the task's container (it is the package's `__init__`), where
only `plugins.sdk.runtime` of the SDK is present: the trigger side imports `plugins.sdk.trigger`
when it polls, not at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from plugins.sdk.trigger import Poll

__all__ = ["HelloCounter", "TRIGGER_TYPES"]


class HelloCounter:
    """Counts to `limit`: each poll emits one payload {"n": k} and remembers k in its state."""

    interval_s = 60.0  # how often Clarity polls (the manifest says the same)

    def poll(self, config: Mapping[str, Any], state: Mapping[str, Any] | None) -> Poll:
        from plugins.sdk.trigger import Poll

        limit = int(config["limit"])
        n = int((state or {}).get("n", 0))
        if n >= limit:
            return Poll(payloads=[], state={"n": n})
        return Poll(payloads=[{"n": n + 1}], state={"n": n + 1})


TRIGGER_TYPES = {"hello_counter": HelloCounter()}
