"""The manifest (what the controller's loader reads; its config schema is what `clarity lint`
checks tasks with) and the docs' examples, which must pass that schema."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

PLUGIN = Path(__file__).resolve().parents[2]
REPO = PLUGIN.parents[1]
NAME = "validation"
MANIFEST = yaml.safe_load((PLUGIN / "manifest.yaml").read_text())
SCHEMA = MANIFEST["task_types"][NAME]["config"]


def errors(config: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(config)]


def yaml_blocks(doc: Path) -> Iterator[Any]:
    for block in re.findall(r"^```yaml\n(.*?)^```", doc.read_text(), flags=re.S | re.M):
        yield yaml.safe_load(block)


def task_configs(node: Any) -> Iterator[Any]:
    """The `config` of every task of this plugin's type in a document."""
    if isinstance(node, dict):
        if node.get("type") == NAME and "config" in node:
            yield node["config"]
        for value in node.values():
            yield from task_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from task_configs(value)


def test_the_manifest_has_the_loaders_shape() -> None:
    assert set(MANIFEST) == {"name", "version", "description", "image", "task_types", "trigger_types",
                             "permissions"}
    assert MANIFEST["name"] == NAME and MANIFEST["version"] == "1.0.0"
    assert MANIFEST["image"] == "clarity-plugins:latest" and MANIFEST["trigger_types"] == {}
    assert MANIFEST["permissions"] == {"network": False, "secrets": False, "host_paths": False}
    assert list(MANIFEST["task_types"]) == [NAME]
    decl = MANIFEST["task_types"][NAME]
    assert set(decl) == {"description", "module", "config"}
    assert decl["module"] == "plugins.validation.src.run"
    assert (REPO / (decl["module"].replace(".", "/") + ".py")).is_file()
    assert "\n" not in MANIFEST["description"] and "\n" not in decl["description"]


def test_the_config_schema_is_a_valid_json_schema_strict_and_described_everywhere() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["type"] == "object" and SCHEMA["additionalProperties"] is False
    assert SCHEMA["required"] == ["schema"]

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                assert node.get("additionalProperties") is False, f"{where}: additionalProperties is not false"
                for name, sub in node["properties"].items():
                    assert sub.get("description"), f"{where}.{name}: no description"
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(SCHEMA, "config")


def test_the_schema_works_embedded_in_the_workflow_schema() -> None:
    """Lint checks a task's config inside the whole workflow's schema: the meta-schema `$ref` (an
    absolute URI) must resolve there too."""
    wrapper = {"type": "object", "properties": {"tasks": {"type": "array", "items": {
        "type": "object", "properties": {"config": SCHEMA}}}}}
    found = list(jsonschema.Draft202012Validator(wrapper).iter_errors(
        {"tasks": [{"config": {"schema": {"type": "numbr"}}}, {"config": {"schema": "./s.json"}}]}))
    assert [list(e.absolute_path) for e in found] == [["tasks", 0, "config", "schema", "type"]]


@pytest.mark.parametrize("doc", ["docs/api.md", "docs/README.md"])
def test_the_documented_examples_pass_the_schema(doc: str) -> None:
    configs = [c for block in yaml_blocks(PLUGIN / doc) for c in task_configs(block)]
    assert len(configs) >= (6 if doc == "docs/api.md" else 2), configs
    for config in configs:
        assert errors(config) == [], config


def test_every_config_key_is_documented() -> None:
    api = (PLUGIN / "docs" / "api.md").read_text()
    for key in SCHEMA["properties"]:
        assert f"### `{key}`" in api and f"| `{key}` |" in api, key


@pytest.mark.parametrize("config", [
    {"schema": "./schemas/input.json"},
    {"schema": "./schemas/input.YAML", "data": "./data/input.csv", "fail_on_error": False},
    {"schema": {"file": "schemas/input.yml"}, "data": None},
    {"schema": {"type": "object", "properties": {"file": {"type": "string"}}}, "data": [1, 2]},
    {"schema": "${tasks.make-schema.output}", "data": "${tasks.fetch.output}"},
])
def test_valid_configs(config: dict[str, Any]) -> None:
    assert errors(config) == []


@pytest.mark.parametrize("config, expected", [
    ({"data": 1}, ": 'schema' is a required property"),
    ({"schema": "schemas/input.json"}, "schema: 'schemas/input.json' does not match"),
    ({"schema": "./schemas/input.txt"}, "schema: './schemas/input.txt' does not match"),
    ({"schema": {"file": "schemas/input.csv"}}, "schema.file: 'schemas/input.csv' does not match"),
    ({"schema": {"file": 3}}, "schema.file: 3 is not of type 'string'"),  # a mapping of only file is a file
    ({"schema": {"type": "numbr"}}, "schema.type: 'numbr' is not valid under any of the given schemas"),
    ({"schema": {"minimum": "zero"}}, "schema.minimum: 'zero' is not of type 'number'"),
    ({"schema": 3}, "schema: 3 is not of type 'string', 'object'"),
    ({"schema": {}, "fail_on_error": "no"}, "fail_on_error: 'no' is not of type 'boolean'"),
    ({"schema": {}, "strict": True}, "('strict' was unexpected)"),
])
def test_invalid_configs(config: dict[str, Any], expected: str) -> None:
    found = errors(config)
    assert any(expected in e for e in found), found
