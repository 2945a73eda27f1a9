"""The manifest: what the controller's loader reads, and the config schema `clarity lint` checks with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

PLUGIN = Path(__file__).resolve().parents[2]
MANIFEST = yaml.safe_load((PLUGIN / "manifest.yaml").read_text())
SCHEMA = MANIFEST["task_types"]["storage"]["config"]


def errors(config: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(config)]


def test_the_manifest_declares_the_task_type_and_permissions() -> None:
    # (the controller's loader checks the manifest in the main suite: plugins do not import the controller)
    assert MANIFEST["name"] == "storage" and MANIFEST["version"] == "1.0.0"
    assert MANIFEST["image"] == "clarity-plugins:latest" and MANIFEST["trigger_types"] == {}
    assert MANIFEST["permissions"] == {"network": True, "secrets": True, "host_paths": True}
    module = MANIFEST["task_types"]["storage"]["module"]
    assert module == "plugins.storage.src.run"
    assert (PLUGIN.parents[1] / (module.replace(".", "/") + ".py")).is_file()


def test_the_schema_is_strict_and_described_everywhere() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if any(isinstance(sub, dict) for sub in (node.get("properties") or {}).values()):
                assert node.get("additionalProperties") is False, f"{where}: additionalProperties is not false"
            for name, sub in (node.get("properties") or {}).items():
                if sub is not False:
                    assert sub.get("description"), f"{where}.{name}: no description"
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(SCHEMA, "config")


@pytest.mark.parametrize("config", [
    {"data": "${tasks.process-data.output}", "destination": "backups/${workflow.id}"},  # the standards' example
    {"data": [{"a": 1}], "destination": {"database": "sqlite:///r.db", "table": "results", "mode": "replace"}},
    {"files": ["dist/*.whl"], "destination": {"s3": {"bucket": "b", "prefix": "releases/42",
                                                     "endpoint_url": "http://minio:9000", "region": "eu-west-1",
                                                     "access_key_id": "k", "secret_access_key": "s"}}},
    {"data": {"a": 1}, "destination": {"s3": {"bucket": "b", "key": "r/42.yaml"}}, "format": "yaml"},
    {"data": None, "destination": "x", "filename": "result.csv"},
])
def test_valid_configs(config: dict[str, Any]) -> None:
    assert errors(config) == []


@pytest.mark.parametrize("config, expected", [
    ({"destination": "x"}, ": 'data' is a required property"),
    ({"data": 1, "files": ["a"], "destination": "x"}, "False schema does not allow 1"),
    ({"data": 1, "destination": {"database": "sqlite:///x", "table": "drop table;"}}, "destination.table: "),
    ({"data": 1, "destination": {"database": "sqlite:///x", "table": "t", "mode": "upsert"}},
     "destination.mode: 'upsert' is not one of ['append', 'replace']"),
    ({"data": 1, "destination": {"s3": {"bucket": "b", "key": "k", "prefix": "p"}}}, "destination.s3: False schema does not allow 'p'"),
    ({"data": 1, "destination": {"s3": {"bucket": "b", "acl": "public"}}}, "('acl' was unexpected)"),
    ({"data": 1, "destination": {"table": "t"}}, "destination: 'database' is a required property"),
    ({"data": 1, "destination": ""}, "destination: '' should be non-empty"),
    ({"data": 1, "destination": "x", "format": "xml"}, "format: 'xml' is not one of"),
    ({"data": 1, "destination": "x", "filename": "a/b.json"}, "filename: "),
    ({"data": 1, "destination": "x", "extra": 1}, "('extra' was unexpected)"),
])
def test_invalid_configs(config: dict[str, Any], expected: str) -> None:
    found = errors(config)
    assert any(expected in e for e in found), found
