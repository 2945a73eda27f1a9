from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from controller.workflow.schema import DEFAULT_TASK_TYPES, dumps, json_schema, schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.json"


def test_schema_doc_in_sync() -> None:
    assert DOC.read_text() == dumps(), (
        "docs/schema.json is out of date; regenerate it: "
        "clarity schema > docs/schema.json  (or: python -m controller.workflow.schema > docs/schema.json)")


def test_schemas_are_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())
    jsonschema.Draft202012Validator.check_schema(schema(DEFAULT_TASK_TYPES))


def _objects(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        if "properties" in node and node.get("type") == "object":
            found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_objects(value))
    return found


def test_every_object_is_closed_and_every_property_described() -> None:
    doc = json.loads(dumps())
    for obj in _objects(doc):
        if obj.get("description") in ("A task.", "An event that starts the workflow."):
            continue  # dispatchers by `type`: their if/then shapes are the closed ones
        assert obj.get("additionalProperties") is False, obj.get("description")
        properties = obj["properties"]
        assert isinstance(properties, dict)
        for name, prop in properties.items():
            assert "description" in prop, name


def test_editor_schema_accepts_any_plugin_type() -> None:
    v = jsonschema.Draft202012Validator(json_schema())
    doc = {"workflow": {"name": "w", "tasks": [{"name": "t", "type": "anything", "config": {"x": 1}}]}}
    assert list(v.iter_errors(doc)) == []
    doc["workflow"]["tasks"][0]["imgae"] = "x"  # type: ignore[index]
    assert [e.validator for e in v.iter_errors(doc)] == ["additionalProperties"]
