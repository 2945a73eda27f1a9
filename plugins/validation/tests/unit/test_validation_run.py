"""The validation task, run as the container runs it: `python3 -m plugins.validation.src.run`."""

from __future__ import annotations

import json
import shutil

import pytest

from plugins.validation.tests.conftest import STANDARDS, Task

ITEMS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "price"],
        "additionalProperties": False,
        "properties": {"id": {"type": "string"}, "price": {"type": "number", "minimum": 0},
                       "tags": {"type": "array", "items": {"type": "string"}}},
    },
}
ITEMS = [{"id": "a", "price": 1.5}, {"id": "b", "price": 0}, {"id": "c", "price": 10, "tags": ["x"]}]


@pytest.fixture
def standards(task: Task) -> Task:
    """The workspace of the standards' example (schemas/input.json, data/input.json)."""
    for folder in ("schemas", "data", "rules"):
        shutil.copytree(STANDARDS / folder, task.workspace / folder)
    return task


# -- valid data ----------------------------------------------------------------------------------

def test_the_standards_example_validates_the_trigger_payload(standards: Task) -> None:
    payload = json.loads((STANDARDS / "data" / "input.json").read_text())
    done = standards.run({"schema": "./schemas/input.json"}, payload=payload)
    assert done.returncode == 0, done.stderr
    assert done.lines == ["valid: an object (orders: 6 records) from the trigger's payload "
                          "against ./schemas/input.json"]
    assert done.output == payload  # the output is the data itself, for ${tasks.validate-input.output}
    assert done.stderr == ""


def test_the_standards_sample_data_is_valid_from_its_file(standards: Task) -> None:
    done = standards.run({"schema": "./schemas/input.json", "data": "./data/input.json"})
    assert done.returncode == 0, done.stderr
    assert done.lines == ["valid: an object (orders: 6 records) from ./data/input.json against ./schemas/input.json"]
    assert done.output == json.loads((STANDARDS / "data" / "input.json").read_text())


def test_data_from_a_file_records_counted(task: Task) -> None:
    task.write("schemas/items.json", ITEMS_SCHEMA)
    task.write("data.json", ITEMS)
    done = task.run({"schema": "./schemas/items.json", "data": "./data.json"})
    assert done.returncode == 0, done.stderr
    assert done.lines == ["valid: 3 records from ./data.json against ./schemas/items.json"]
    assert done.output == ITEMS


def test_inline_data_and_inline_schema(task: Task) -> None:
    done = task.run({"schema": ITEMS_SCHEMA, "data": ITEMS[:1]})
    assert done.returncode == 0, done.stderr
    assert done.lines == ["valid: 1 record against the inline schema"]
    assert done.output == ITEMS[:1]


def test_an_upstream_output_resolved_into_a_value(task: Task) -> None:
    """`data: ${tasks.fetch.output}` reaches the container as the value itself."""
    task.write("schemas/s.json", {"type": "object", "required": ["count"]})
    done = task.run({"schema": "./schemas/s.json", "data": {"count": 2, "rows": [1, 2]}})
    assert done.returncode == 0, done.stderr
    assert done.lines == ["valid: an object (rows: 2 records) against ./schemas/s.json"]
    assert done.output == {"count": 2, "rows": [1, 2]}


def test_file_references_as_mappings_and_a_yaml_schema(task: Task) -> None:
    task.write("schemas/items.yaml", "type: array\nitems:\n  type: object\n  required: [id]\n")
    task.write("in/data.yml", "- id: a\n- id: b\n")
    done = task.run({"schema": {"file": "schemas/items.yaml"}, "data": {"file": "in/data.yml"}})
    assert done.returncode == 0, done.stderr
    assert done.lines == ["valid: 2 records from in/data.yml against schemas/items.yaml"]
    assert done.output == [{"id": "a"}, {"id": "b"}]


def test_csv_data_is_rows_of_strings(task: Task) -> None:
    task.write("schemas/rows.json", {"type": "array", "items": {
        "type": "object", "required": ["sku", "qty"],
        "properties": {"sku": {"type": "string", "pattern": "^[A-Z]+-[0-9]+$"},
                       "qty": {"type": "string", "pattern": "^[0-9]+$"}}}})
    task.write("stock.csv", "sku,qty\nAB-1,3\nCD-2,10\nbad,x\n")
    done = task.run({"schema": "./schemas/rows.json", "data": "./stock.csv"})
    assert done.returncode == 1
    assert done.lines == ["$[2].qty: 'x' does not match '^[0-9]+$'",
                          "$[2].sku: 'bad' does not match '^[A-Z]+-[0-9]+$'"]
    assert "error: 2 errors: ./stock.csv does not match ./schemas/rows.json" in done.stderr


# -- invalid data ----------------------------------------------------------------------------------

def test_every_error_is_listed_with_its_path_sorted_then_the_task_fails(task: Task) -> None:
    task.write("schemas/items.json", ITEMS_SCHEMA)
    data = [{"id": "ok", "price": 1}] * 12
    data[10] = {"id": "k", "price": -3}
    data[2] = {"id": 7, "price": -1, "color": "red"}
    data[5] = {"price": 2, "tags": ["a", 3]}
    task.write("data.json", data)
    done = task.run({"schema": "./schemas/items.json", "data": "./data.json"})
    assert done.returncode == 1
    assert done.lines == [
        "$[2]: Additional properties are not allowed ('color' was unexpected)",
        "$[2].id: 7 is not of type 'string'",
        "$[2].price: -1 is less than the minimum of 0",
        "$[5]: 'id' is a required property",
        "$[5].tags[1]: 3 is not of type 'string'",
        "$[10].price: -3 is less than the minimum of 0",  # index 10 after 5: paths sort by number
    ]
    assert done.stderr.strip() == "error: 6 errors: ./data.json does not match ./schemas/items.json"
    assert done.output is None


def test_one_error_in_the_payload_of_the_standards_example(standards: Task) -> None:
    payload = json.loads((STANDARDS / "data" / "input.json").read_text())
    payload["orders"][3]["status"] = "lost"
    done = standards.run({"schema": "./schemas/input.json"}, payload=payload)
    assert done.returncode == 1
    assert done.lines == ["$.orders[3].status: 'lost' is not one of ['paid', 'pending', 'refunded']"]
    assert "error: 1 error: the trigger's payload does not match ./schemas/input.json" in done.stderr


def test_inline_data_is_named_the_data_and_odd_keys_are_quoted(task: Task) -> None:
    schema = {"type": "object", "properties": {"first name": {"type": "string"}}}
    done = task.run({"schema": schema, "data": {"first name": 1}})
    assert done.returncode == 1
    assert done.lines == ['$["first name"]: 1 is not of type \'string\'']
    assert "error: 1 error: the data does not match the inline schema" in done.stderr


def test_fail_on_error_false_reports_the_errors_in_the_output(task: Task) -> None:
    task.write("schemas/items.json", ITEMS_SCHEMA)
    data = [{"id": "a", "price": -1}, {"id": "b"}]
    done = task.run({"schema": "./schemas/items.json", "data": data, "fail_on_error": False})
    assert done.returncode == 0, done.stderr
    assert done.output == {"valid": False, "data": data, "errors": [
        {"path": "$[0].price", "message": "-1 is less than the minimum of 0"},
        {"path": "$[1]", "message": "'price' is a required property"}]}
    assert done.lines == ["$[0].price: -1 is less than the minimum of 0", "$[1]: 'price' is a required property",
                          "invalid: 2 errors: the data does not match ./schemas/items.json "
                          "(fail_on_error is false: the task succeeds)"]


def test_fail_on_error_false_with_valid_data(task: Task) -> None:
    done = task.run({"schema": ITEMS_SCHEMA, "data": ITEMS, "fail_on_error": False})
    assert done.returncode == 0, done.stderr
    assert done.output == {"valid": True, "errors": [], "data": ITEMS}


def test_formats_are_checked(task: Task) -> None:
    schema = {"type": "object", "properties": {
        "email": {"format": "email"}, "at": {"format": "date-time"}, "day": {"format": "date"},
        "ip": {"format": "ipv4"}, "id": {"format": "uuid"}}}
    good = {"email": "a@b.org", "at": "2024-05-01T10:00:00Z", "day": "2024-05-01", "ip": "10.0.0.1",
            "id": "12345678-1234-5678-1234-567812345678"}
    assert task.run({"schema": schema, "data": good}).returncode == 0
    done = task.run({"schema": schema, "data": {"email": "nobody", "at": "2024-05-01 10:00", "day": "2024-13-01",
                                                "ip": "10.0.0.300", "id": "x"}})
    assert done.returncode == 1
    assert done.lines == ["$.at: '2024-05-01 10:00' is not a 'date-time'", "$.day: '2024-13-01' is not a 'date'",
                          "$.email: 'nobody' is not a 'email'", "$.id: 'x' is not a 'uuid'",
                          "$.ip: '10.0.0.300' is not a 'ipv4'"]


def test_another_draft_named_by_its_schema_keyword(task: Task) -> None:
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "array",
              "items": [{"type": "string"}], "additionalItems": False}  # draft-07's tuple form
    done = task.run({"schema": schema, "data": ["a", 1]})
    assert done.returncode == 1
    assert done.lines[0].startswith("$: Additional items are not allowed")


def test_refs_to_other_workspace_files_relative_to_the_schema(task: Task) -> None:
    task.write("schemas/order.json", {"type": "object", "properties": {"line": {"$ref": "defs/line.json"}}})
    task.write("schemas/defs/line.json", {"type": "object", "properties": {"qty": {"$ref": "common.json#/$defs/n"}}})
    task.write("schemas/defs/common.json", {"$defs": {"n": {"type": "integer", "minimum": 1}}})
    assert task.run({"schema": "./schemas/order.json", "data": {"line": {"qty": 2}}}).returncode == 0
    done = task.run({"schema": "./schemas/order.json", "data": {"line": {"qty": 0}}})
    assert done.returncode == 1
    assert done.lines == ["$.line.qty: 0 is less than the minimum of 1"]


# -- the schema's own mistakes ------------------------------------------------------------------

def test_an_invalid_schema_is_reported_with_its_path_in_the_schema(task: Task) -> None:
    task.write("schemas/input.json", {"type": "object", "properties": {"amount": {"type": "number",
                                                                                   "minimum": "zero"}}})
    done = task.run({"schema": "./schemas/input.json", "data": {"amount": 1}})
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: the schema ./schemas/input.json is not a valid JSON Schema: "
                                   "$.properties.amount.minimum: 'zero' is not of type 'number'")
    assert done.output is None and done.stdout == ""


def test_a_schema_with_a_bad_regex_is_invalid(task: Task) -> None:
    done = task.run({"schema": {"type": "string", "pattern": "([a-z"}, "data": "x"})
    assert done.returncode == 1
    assert done.stderr.strip() == "error: the inline schema is not a valid JSON Schema: $.pattern: '([a-z' is not a 'regex'"


def test_a_schema_file_holding_no_object(task: Task) -> None:
    task.write("schemas/list.yaml", "- type: string\n")
    done = task.run({"schema": "./schemas/list.yaml", "data": 1})
    assert done.returncode == 1
    assert "error: the schema ./schemas/list.yaml is not a valid JSON Schema: it is a list, not an object" \
        in done.stderr


def test_an_unknown_schema_draft(task: Task) -> None:
    done = task.run({"schema": {"$schema": "https://example.com/my-draft"}, "data": 1})
    assert done.returncode == 1
    assert 'unknown $schema "https://example.com/my-draft"' in done.stderr


def test_a_ref_that_cannot_be_resolved_fetches_nothing(task: Task) -> None:
    task.write("schemas/s.json", {"$ref": "https://example.com/schemas/thing.json"})
    done = task.run({"schema": "./schemas/s.json", "data": 1})
    assert done.returncode == 1
    assert "error: the schema ./schemas/s.json: cannot resolve $ref 'https://example.com/schemas/thing.json'" \
        in done.stderr
    assert "nothing is fetched" in done.stderr and "Traceback" not in done.stderr


def test_a_ref_leaving_the_workspace_is_refused(task: Task) -> None:
    (task.tmp / "secret.json").write_text('{"type": "string"}')
    task.write("schemas/s.json", {"$ref": "../../secret.json"})
    done = task.run({"schema": "./schemas/s.json", "data": 1})
    assert done.returncode == 1
    assert "cannot resolve $ref '../../secret.json': '../../secret.json' is outside the workspace" in done.stderr


def test_a_schema_that_is_no_file_reference(task: Task) -> None:
    done = task.run({"schema": "schemas/input.json", "data": 1})
    assert done.returncode == 1
    assert ("error: schema: 'schemas/input.json' is neither a workspace file (those start with ./, "
            'e.g. "./schemas/input.json") nor a JSON Schema (an object)') in done.stderr


def test_a_schema_file_of_another_kind(task: Task) -> None:
    task.write("schemas/input.txt", "{}")
    done = task.run({"schema": "./schemas/input.txt", "data": 1})
    assert done.returncode == 1
    assert "error: schema: './schemas/input.txt' is not a JSON or YAML file" in done.stderr


# -- files, paths and config ------------------------------------------------------------------------

def test_a_missing_schema_file(task: Task) -> None:
    done = task.run({"schema": "./schemas/missing.json", "data": 1})
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: schema: no file './schemas/missing.json' in the workspace "
                                   "(paths are relative to the repository root)")


def test_a_missing_data_file(task: Task) -> None:
    done = task.run({"schema": ITEMS_SCHEMA, "data": "./data/nope.json"})
    assert done.returncode == 1
    assert "error: data: no file './data/nope.json' in the workspace" in done.stderr


def test_data_that_is_not_valid_json(task: Task) -> None:
    task.write("data.json", "{not json")
    done = task.run({"schema": ITEMS_SCHEMA, "data": "./data.json"})
    assert done.returncode == 1
    assert "error: data: data.json is not valid JSON: " in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("key", ["schema", "data"])
def test_paths_escaping_the_workspace_are_refused(task: Task, key: str) -> None:
    config = {"schema": ITEMS_SCHEMA, "data": 1, key: "./../../etc/passwd"}
    done = task.run(config)
    assert done.returncode == 1
    assert f"error: {key}: './../../etc/passwd' is outside {task.workspace.resolve()}" in done.stderr
    assert "root:" not in done.stdout + done.stderr


def test_a_symlink_pointing_out_of_the_workspace_is_refused(task: Task) -> None:
    (task.tmp / "outside.json").write_text("[]")
    (task.workspace / "data.json").symlink_to(task.tmp / "outside.json")
    done = task.run({"schema": ITEMS_SCHEMA, "data": "./data.json"})
    assert done.returncode == 1
    assert "error: data: './data.json' is outside" in done.stderr


def test_no_data_and_no_payload_says_what_to_set(task: Task) -> None:
    done = task.run({"schema": ITEMS_SCHEMA})
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: no data to work on: set data: (a workspace file ./x.json, an inline value "
                                   "or ${tasks.NAME.output}), or start the run with a payload (a webhook or an event)")


def test_explicit_data_wins_over_the_payload(task: Task) -> None:
    done = task.run({"schema": {"type": "array"}, "data": [1]}, payload={"not": "a list"})
    assert done.returncode == 0, done.stderr
    assert done.output == [1]


@pytest.mark.parametrize("config, message", [
    ({"schema": {}, "data": 1, "strict": True}, "error: unknown config key strict; known: schema, data, fail_on_error"),
    ({"data": 1}, "error: give schema: a workspace file"),
    ({"schema": {}, "data": 1, "fail_on_error": "no"}, 'error: fail_on_error must be true or false, not "no"'),
])
def test_config_mistakes(task: Task, config: dict[str, object], message: str) -> None:
    done = task.run(config)
    assert done.returncode == 1
    assert message in done.stderr
