"""The manifest (what the controller's loader reads; its config schema is what `clarity lint`
checks tasks with) and the docs' examples: they pass that schema, and the documented log is what
the task prints."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

from plugins.transformation.tests.conftest import STANDARDS, Task

PLUGIN = Path(__file__).resolve().parents[2]
REPO = PLUGIN.parents[1]
NAME = "transformation"
MANIFEST = yaml.safe_load((PLUGIN / "manifest.yaml").read_text())
SCHEMA = MANIFEST["task_types"][NAME]["config"]
STEPS = ["select", "filter", "rename", "compute", "map", "drop", "sort", "limit"]


def errors(config: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(config)]


def blocks(doc: Path, lang: str) -> list[str]:
    """The fenced code blocks of `doc` in `lang` ("" for the plain ones), top level only."""
    found: list[str] = []
    current: list[str] | None = None
    current_lang = ""
    for line in doc.read_text().splitlines(keepends=True):
        fence = re.match(r"^```(\w*)\s*$", line)
        if current is None and fence:
            current, current_lang = [], fence.group(1)
        elif current is not None and fence:
            if current_lang == lang:
                found.append("".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return found


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


def rules_files(doc: Path) -> list[Any]:
    """The documented rules files: yaml blocks that start with `# ./rules/NAME.yaml`."""
    return [yaml.safe_load(b) for b in blocks(doc, "yaml") if b.startswith("# ./rules/")]


def test_the_manifest_has_the_loaders_shape() -> None:
    assert set(MANIFEST) == {"name", "version", "description", "image", "task_types", "trigger_types",
                             "permissions"}
    assert MANIFEST["name"] == NAME and MANIFEST["version"] == "1.0.0"
    assert MANIFEST["image"] == "clarity-plugins:latest" and MANIFEST["trigger_types"] == {}
    assert MANIFEST["permissions"] == {"network": False, "secrets": False, "host_paths": False}
    assert list(MANIFEST["task_types"]) == [NAME]
    decl = MANIFEST["task_types"][NAME]
    assert set(decl) == {"description", "module", "config"}
    assert decl["module"] == "plugins.transformation.src.run"
    assert (REPO / (decl["module"].replace(".", "/") + ".py")).is_file()
    assert "\n" not in MANIFEST["description"] and "\n" not in decl["description"]


def test_the_config_schema_is_a_valid_json_schema_strict_and_described_everywhere() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["type"] == "object" and SCHEMA["additionalProperties"] is False
    assert SCHEMA["required"] == ["rules"]
    assert list(SCHEMA["properties"]["rules"]["items"]["properties"]) == STEPS  # the steps run.py knows

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                assert node.get("additionalProperties") is False, f"{where}: additionalProperties is not false"
                for name, sub in node["properties"].items():
                    assert sub.get("description"), f"{where}.{name}: no description"
            if isinstance(node.get("additionalProperties"), dict):
                assert node["additionalProperties"].get("description"), f"{where}: no description of the values"
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(SCHEMA, "config")


def test_run_py_knows_the_same_steps() -> None:
    from plugins.transformation.src.run import STEPS as KNOWN

    assert list(KNOWN) == STEPS


@pytest.mark.parametrize("doc", ["docs/api.md", "docs/README.md"])
def test_the_documented_examples_pass_the_schema(doc: str) -> None:
    configs = [c for b in blocks(PLUGIN / doc, "yaml") for c in task_configs(yaml.safe_load(b))]
    assert len(configs) >= (3 if doc == "docs/api.md" else 2), configs
    for config in configs:
        assert errors(config) == [], config
    files = rules_files(PLUGIN / doc)
    assert len(files) >= 1
    for rules in files:  # a rules file's steps are what inline rules may hold
        steps = rules["steps"] if isinstance(rules, dict) else rules
        assert errors({"rules": steps}) == [], rules


def test_every_step_is_documented_and_used_in_an_example() -> None:
    api = (PLUGIN / "docs" / "api.md").read_text()
    used = {name for rules in rules_files(PLUGIN / "docs" / "api.md")
            for step in (rules["steps"] if isinstance(rules, dict) else rules) for name in step}
    assert used == set(STEPS)
    for step in STEPS:
        assert f"| `{step}: " in api, step
    for key in SCHEMA["properties"]:
        assert f"### `{key}`" in api and f"| `{key}` |" in api, key


def test_the_documented_rules_file_is_the_standards_examples() -> None:
    documented = rules_files(PLUGIN / "docs" / "README.md")[0]
    assert documented == yaml.safe_load((STANDARDS / "rules" / "processing.yaml").read_text())


def test_the_documented_log_is_what_the_task_prints(task: Task) -> None:
    readme, api = PLUGIN / "docs" / "README.md", PLUGIN / "docs" / "api.md"
    config = next(c for b in blocks(readme, "yaml") for c in task_configs(yaml.safe_load(b))
                  if c.get("input") == "./data/stock.csv")
    task.write("data/stock.csv", blocks(api, "csv")[0])
    done = task.run(config)
    assert done.returncode == 0, done.stderr
    logs = [b for b in blocks(api, "") if b.startswith("input ./data/stock.csv")]
    assert done.stdout == logs[0]
    assert (task.workspace / "out" / "expensive.csv").read_text() == "sku,value\nA-1,37.5\n"


@pytest.mark.parametrize("config", [
    {"rules": "./rules/processing.yaml", "input": "${tasks.validate-input.output}"},
    {"rules": {"file": "rules/p.JSON"}, "input": {"file": "data/x.csv"}, "output": "out/r.yml"},
    {"rules": [{"select": "a"}, {"filter": "b"}, {"rename": {"a": "b"}}, {"compute": {"x": "y"}}, {"map": "@"},
               {"drop": "x"}, {"drop": ["x", "y"]}, {"sort": "x"}, {"sort": {"by": "x", "reverse": True}},
               {"limit": 0}], "output": "./out/result.csv"},
    {"rules": "${inputs.rules}", "output": "./out/${run.id}.json"},
])
def test_valid_configs(config: dict[str, Any]) -> None:
    assert errors(config) == []


@pytest.mark.parametrize("config, expected", [
    ({"input": 1}, ": 'rules' is a required property"),
    ({"rules": "rules/processing.yaml"}, "rules: 'rules/processing.yaml' does not match"),
    ({"rules": "./rules/processing.txt"}, "rules: './rules/processing.txt' does not match"),
    ({"rules": {"file": "r.yaml", "x": 1}}, "rules: Additional properties are not allowed ('x' was unexpected)"),
    ({"rules": {"steps": []}}, "rules: 'file' is a required property"),
    ({"rules": []}, "rules: [] should be non-empty"),
    ({"rules": [{"sleect": "a"}]}, "rules.0: Additional properties are not allowed ('sleect' was unexpected)"),
    ({"rules": [{"select": "a", "map": "b"}]}, "rules.0: {'select': 'a', 'map': 'b'} has too many properties"),
    ({"rules": [{"limit": -1}]}, "rules.0.limit: -1 is less than the minimum of 0"),
    ({"rules": [{"limit": "3"}]}, "rules.0.limit: '3' is not of type 'integer'"),
    ({"rules": [{"rename": {"a": 1}}]}, "rules.0.rename.a: 1 is not of type 'string'"),
    ({"rules": [{"sort": {"by": "a", "order": "desc"}}]}, "('order' was unexpected)"),
    ({"rules": [{"drop": []}]}, "rules.0.drop: [] should be non-empty"),
    ({"rules": [{"filter": ""}]}, "rules.0.filter: '' should be non-empty"),
    ({"rules": [{"map": "@"}], "output": "../out.json"}, "output: '../out.json' does not match"),
    ({"rules": [{"map": "@"}], "output": "/tmp/out.json"}, "output: '/tmp/out.json' does not match"),
    ({"rules": [{"map": "@"}], "output": "./out/result.txt"}, "output: './out/result.txt' does not match"),
    ({"rules": [{"map": "@"}], "format": "csv"}, "('format' was unexpected)"),
])
def test_invalid_configs(config: dict[str, Any], expected: str) -> None:
    found = errors(config)
    assert any(expected in e for e in found), found
