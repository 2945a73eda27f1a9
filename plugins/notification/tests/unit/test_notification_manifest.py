"""The notification plugin's manifest: its config schema is strict (every key described, no
unknown keys) and accepts exactly the configs the docs show."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

MANIFEST = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifest.yaml").read_text(encoding="utf-8"))
SCHEMA = MANIFEST["task_types"]["notification"]["config"]
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_manifest_shape() -> None:
    assert MANIFEST["name"] == "notification" and MANIFEST["version"] == "1.0.0"
    assert MANIFEST["task_types"]["notification"]["module"] == "plugins.notification.src.run"
    assert MANIFEST["trigger_types"] == {}
    assert MANIFEST["permissions"] == {"network": True, "secrets": True, "host_paths": False}
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def _objects(schema: Any, where: str = "config") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        yield where, schema
        for key, sub in (schema.get("properties") or {}).items():
            yield from _objects(sub, f"{where}.{key}")
        for key in ("items", "additionalProperties", "propertyNames"):
            if isinstance(schema.get(key), dict):
                yield from _objects(schema[key], f"{where}[{key}]")


def test_every_key_is_described_and_every_object_is_closed() -> None:
    for where, schema in _objects(SCHEMA):
        assert schema.get("description"), f"{where} has no description"
        if schema.get("type") == "object" and "properties" in schema:
            assert schema.get("additionalProperties") is False, f"{where} accepts unknown keys"


@pytest.mark.parametrize("config", [
    {"webhook": {"url": "https://hooks.example.com/deploy"}},
    {"webhook": {"url": "${secrets.HOOK}", "method": "PUT", "payload": "${tasks.build.output}",
                 "headers": {"Authorization": "Bearer ${secrets.TOKEN}"}, "secret": "${secrets.KEY}", "timeout_s": 5}},
    {"webhook": {"url": "http://ci.local/x", "payload": [1, "two", {"three": 3}]}},
    {"slack": {"url": "${secrets.SLACK_WEBHOOK}", "text": "Deployed", "channel": "#ci", "username": "Clarity",
               "blocks": [{"type": "divider"}]}},
    {"slack": {"url": "https://hooks.slack.com/services/T/B/X", "text": "hi", "blocks": "./blocks.json"}},
    {"email": {"host": "smtp.example.com", "from": "ci@example.com", "to": "dev@example.com", "subject": "s"}},
    {"email": {"host": "smtp.example.com", "port": 587, "starttls": True, "username": "u", "password": "p",
               "from": "CI <ci@example.com>", "to": ["a@example.com", "b@example.com"], "cc": "c@example.com",
               "subject": "s", "body": "./notes.txt", "timeout_s": 20}},
])
def test_documented_configs_are_valid(config: dict[str, Any]) -> None:
    assert list(VALIDATOR.iter_errors(config)) == []


@pytest.mark.parametrize("config, validator", [
    ({}, "oneOf"),
    ({"webhook": {"url": "https://a"}, "slack": {"url": "https://b", "text": "x"}}, "oneOf"),
    ({"sms": {"to": "123"}}, "additionalProperties"),
    ({"webhook": {"url": "ftp://example.com/x"}}, "pattern"),
    ({"webhook": {"url": "https://a", "method": "GET"}}, "enum"),
    ({"webhook": {"url": "https://a", "retries": 3}}, "additionalProperties"),
    ({"webhook": {"url": "https://a", "headers": {"Bad Header": "x"}}}, "pattern"),
    ({"webhook": {"url": "https://a", "timeout_s": 0}}, "exclusiveMinimum"),
    ({"slack": {"url": "https://a"}}, "required"),
    ({"email": {"host": "h", "from": "a@b.c", "to": "d@e.f", "subject": "s", "username": "u"}}, "dependentRequired"),
    ({"email": {"host": "h", "from": "a@b.c", "to": "d@e.f", "subject": "s", "port": 70000}}, "maximum"),
    ({"email": {"host": "h", "from": "a@b.c", "to": [], "subject": "s"}}, "minItems"),
    ({"email": {"host": "h", "from": "a@b.c", "to": "d@e.f"}}, "required"),
])
def test_bad_configs_are_refused(config: dict[str, Any], validator: str) -> None:
    found = {e.validator for e in VALIDATOR.iter_errors(config)} | {
        sub.validator for e in VALIDATOR.iter_errors(config) for sub in e.context or ()}
    assert validator in found
