"""Unit tests of clarity-hello: the trigger's polls and the task's work, on the host.

They need Clarity's plugin SDK (`plugins.sdk`) importable, as it is where Clarity is installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import clarity_hello
from clarity_hello.task import greet
from plugins.sdk.runtime import PluginError
from plugins.sdk.trigger import Poll, TriggerType

MANIFEST = Path(clarity_hello.__file__).with_name("manifest.yaml")


def test_the_counter_emits_one_payload_per_poll_up_to_its_limit() -> None:
    counter = clarity_hello.TRIGGER_TYPES["hello_counter"]
    assert isinstance(counter, TriggerType)
    state: Any = None
    seen = []
    for _ in range(5):
        answer = counter.poll({"limit": 3}, state)
        assert isinstance(answer, Poll)
        seen.append(answer.payloads)
        state = answer.state
    assert seen == [[{"n": 1}], [{"n": 2}], [{"n": 3}], [], []]
    assert state == {"n": 3}
    assert counter.poll({"limit": 0}, None) == Poll(payloads=[], state={"n": 0})


def test_the_manifest_declares_what_the_module_provides() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["name"] == "hello"
    assert set(manifest["trigger_types"]) == set(clarity_hello.TRIGGER_TYPES)
    assert manifest["task_types"]["hello"]["module"] == "clarity_hello.task"
    times = manifest["task_types"]["hello"]["config"]["properties"]["times"]
    assert (times["minimum"], times["maximum"], times["default"]) == (1, 10, 1)


def test_greet_prints_the_greeting_times_times(capsys: pytest.CaptureFixture[str]) -> None:
    assert greet({"greeting": "Hi there", "times": 3}, {}) == {"greeted": 3}
    assert capsys.readouterr().out.splitlines() == ["Hi there"] * 3
    assert greet({"greeting": "Once"}, {"trigger": {"event": "hello_counter", "payload": {"n": 2}}}) == {"greeted": 1}
    assert capsys.readouterr().out.splitlines() == ["(started by hello_counter: {'n': 2})", "Once"]


@pytest.mark.parametrize("config, message", [
    ({}, "config.greeting"),
    ({"greeting": "x", "times": 0}, "from 1 to 10"),
    ({"greeting": "x", "times": 11}, "from 1 to 10"),
    ({"greeting": "x", "times": "2"}, "from 1 to 10"),
])
def test_greet_refuses_a_bad_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginError, match=message):
        greet(config, {})


def test_the_module_runs_as_the_container_runs_it(tmp_path: Path) -> None:
    """`python3 -m clarity_hello.task` with the config, context and output files Clarity provides."""
    (tmp_path / "config.json").write_text(json.dumps({"greeting": "Hello, world", "times": 2}))
    (tmp_path / "context.json").write_text(json.dumps({"task": "greet", "trigger": {"event": "push"}}))
    src = str(Path(clarity_hello.__file__).parents[1])
    env = {"CLARITY_PLUGIN_CONFIG": str(tmp_path / "config.json"), "CLARITY_PLUGIN_CONTEXT": str(tmp_path / "context.json"),
           "CLARITY_OUTPUT": str(tmp_path / "output.json"), "CLARITY_WORKSPACE": str(tmp_path),
           "PYTHONPATH": src + ":" + ":".join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-m", "clarity_hello.task"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Hello, world", "Hello, world"]
    assert json.loads((tmp_path / "output.json").read_text()) == {"greeted": 2}
    (tmp_path / "config.json").write_text(json.dumps({"greeting": "x", "times": 50}))
    done = subprocess.run([sys.executable, "-m", "clarity_hello.task"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "error: config.times: 50 is not a whole number from 1 to 10" in done.stderr
