"""The `hello` task, inside its container: `python3 -m clarity_hello.task`.

Clarity writes the task's config (checked against the manifest's schema) and context where
`plugins.sdk.runtime` reads them; what `greet` returns is the task's output
(`${tasks.NAME.output}`).
"""

from __future__ import annotations

from typing import Any

from plugins.sdk.runtime import PluginError, main


def greet(config: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    greeting = config.get("greeting")
    if not isinstance(greeting, str) or not greeting:
        raise PluginError("config.greeting: give the text to print, e.g. `greeting: Hello`")
    times = config.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 10:
        raise PluginError(f"config.times: {times!r} is not a whole number from 1 to 10")
    payload = (context.get("trigger") or {}).get("payload")
    if payload:
        print(f"(started by {context['trigger'].get('event')}: {payload})", flush=True)
    for _ in range(times):
        print(greeting, flush=True)
    return {"greeted": times}


if __name__ == "__main__":
    main(greet)
