"""The transformation task, run as the container runs it: `python3 -m plugins.transformation.src.run`."""

from __future__ import annotations

import csv
import io
import json
import shutil
from typing import Any

import pytest
import yaml

from plugins.transformation.tests.conftest import STANDARDS, Task

ITEMS = [
    {"id": "a", "name": "Apple", "price": 12, "qty": 0, "secret": "s1"},
    {"id": "b", "name": "Banana", "price": 3, "qty": 5, "secret": "s2"},
    {"id": "c", "name": "Cherry", "price": 25, "qty": None, "secret": "s3"},
]


def run_steps(task: Task, steps: list[Any], data: Any = ITEMS, **config: Any) -> Any:
    done = task.run({"input": data, "rules": steps, **config})
    assert done.returncode == 0, done.stderr
    return done


# -- the standards' example ----------------------------------------------------------------------

def test_the_standards_example_processes_the_validated_orders(task: Task) -> None:
    """process-data: input ${tasks.validate-input.output} (the validated data), rules ./rules/processing.yaml."""
    shutil.copytree(STANDARDS / "rules", task.workspace / "rules")
    validated = json.loads((STANDARDS / "data" / "input.json").read_text())
    done = task.run({"input": validated, "rules": "./rules/processing.yaml"})
    assert done.returncode == 0, done.stderr
    assert done.output == [
        {"id": "ord-1001", "client": "Ada Lovelace", "amount": 120.5, "amount_cents": 12050},
        {"id": "ord-1006", "client": "Donald Knuth", "amount": 64.25, "amount_cents": 6425},
        {"id": "ord-1003", "client": "Grace Hopper", "amount": 19.99, "amount_cents": 1999},
        {"id": "ord-1005", "client": "Barbara Liskov", "amount": 0, "amount_cents": 0},
    ]
    assert done.lines == [
        "input: an object (orders: 6 records)",
        "step 1 select orders: 6 records",
        "step 2 filter status == 'paid': 4 records (2 dropped)",
        "step 3 compute amount_cents: 4 records",
        "step 4 rename customer -> client: 4 records",
        "step 5 drop status: 4 records",
        "step 6 sort by amount_cents (reverse): 4 records",
    ]


# -- every step ------------------------------------------------------------------------------------

def test_select(task: Task) -> None:
    done = run_steps(task, [{"select": "data.items[?price > `5`].name"}], data={"data": {"items": ITEMS}})
    assert done.output == ["Apple", "Cherry"]
    assert done.lines[1] == "step 1 select data.items[?price > `5`].name: 2 records"


def test_filter_keeps_what_jmespath_calls_true(task: Task) -> None:
    assert run_steps(task, [{"filter": "price > `10`"}]).output == [ITEMS[0], ITEMS[2]]
    # JMESPath truth: 0 is true, null is false
    done = run_steps(task, [{"filter": "qty"}])
    assert [r["id"] for r in done.output] == ["a", "b"]
    assert done.lines[1] == "step 1 filter qty: 2 records (1 dropped)"


def test_rename_on_records_and_on_a_single_object(task: Task) -> None:
    done = run_steps(task, [{"rename": {"name": "title", "missing": "never"}}])
    assert [list(r) for r in done.output] == [["id", "title", "price", "qty", "secret"]] * 3  # order kept
    assert done.output[1]["title"] == "Banana"
    assert run_steps(task, [{"rename": {"a": "b"}}], data={"a": 1, "c": 2}).output == {"b": 1, "c": 2}


def test_rename_replaces_a_key_of_the_new_name_and_swaps(task: Task) -> None:
    assert run_steps(task, [{"rename": {"a": "b"}}], data=[{"a": 1, "b": 2}]).output == [{"b": 1}]
    assert run_steps(task, [{"rename": {"a": "b", "b": "a"}}], data=[{"a": 1, "b": 2}]).output == [{"b": 1, "a": 2}]


def test_compute_in_order_with_the_extra_functions(task: Task) -> None:
    done = run_steps(task, [{"compute": {
        "total": "multiply(price, qty || `0`)",
        "total_eur": "round(divide(total, `3`), `2`)",
        "label": "upper(join('-', [id, name]))",
        "net": "subtract(add(price, `1`), `0.5`)",
        "short": "lower(trim(' Hi '))",
    }}])
    assert done.output[1] == {**ITEMS[1], "total": 15, "total_eur": 5.0, "label": "B-BANANA", "net": 3.5,
                              "short": "hi"}
    assert done.output[2]["total"] == 0
    assert done.lines[1] == "step 1 compute total, total_eur, label, net, short: 3 records"


def test_map(task: Task) -> None:
    done = run_steps(task, [{"map": "{id: id, cost: multiply(price, `2`)}"}])
    assert done.output == [{"id": "a", "cost": 24}, {"id": "b", "cost": 6}, {"id": "c", "cost": 50}]
    assert run_steps(task, [{"map": "name"}]).output == ["Apple", "Banana", "Cherry"]


def test_drop(task: Task) -> None:
    assert run_steps(task, [{"drop": ["secret", "qty", "absent"]}]).output == [
        {"id": "a", "name": "Apple", "price": 12}, {"id": "b", "name": "Banana", "price": 3},
        {"id": "c", "name": "Cherry", "price": 25}]
    assert run_steps(task, [{"drop": "secret"}], data={"secret": 1, "x": 2}).output == {"x": 2}


def test_sort_and_limit(task: Task) -> None:
    assert [r["id"] for r in run_steps(task, [{"sort": "price"}]).output] == ["b", "a", "c"]
    done = run_steps(task, [{"sort": {"by": "qty", "reverse": True}}, {"limit": 2}])
    assert [r["id"] for r in done.output] == ["b", "a"]  # the null qty goes last, whatever the order
    assert done.lines[1:] == ["step 1 sort by qty (reverse): 3 records", "step 2 limit 2: 2 records (1 dropped)"]
    assert run_steps(task, [{"sort": "name"}, {"limit": 0}]).output == []


def test_sort_refuses_mixed_values(task: Task) -> None:
    done = task.run({"input": [{"v": 1}, {"v": "2"}], "rules": [{"sort": "v"}]})
    assert done.returncode == 1
    assert ("error: rules, step 1 (sort): cannot sort by v: its values are number, string; they must be all "
            "numbers or all strings (to_number() or to_string() can help)") in done.stderr


# -- rules files ------------------------------------------------------------------------------------

def test_rules_file_as_a_list_in_yaml_and_as_steps_in_json(task: Task) -> None:
    task.write("rules/a.yaml", "- filter: \"price > `10`\"\n- map: id\n")
    task.write("rules/b.json", {"steps": [{"filter": "price > `10`"}, {"map": "id"}]})
    for rules in ("./rules/a.yaml", "./rules/b.json", {"file": "rules/a.yaml"}):
        done = task.run({"input": ITEMS, "rules": rules})
        assert done.returncode == 0, done.stderr
        assert done.output == ["a", "c"]


def test_csv_input_values_are_strings_until_converted(task: Task) -> None:
    task.write("data/stock.csv", "sku,price,qty\nA-1,12.5,3\nB-2,8,10\nC-3,30,0\n")
    as_text = task.run({"input": "./data/stock.csv", "rules": [{"filter": "price > `10`"}]})
    assert as_text.returncode == 1  # "12.5" > 10: a string is no number
    assert ("error: rules, step 1 (filter): price > `10` at $[0]: cannot compare a string with a number ('>' not "
            "supported between instances of 'str' and 'int'); values read from CSV are strings: convert them "
            'first, e.g. compute: {price: "to_number(price)"}') in as_text.stderr
    done = task.run({"input": "./data/stock.csv", "rules": [
        {"compute": {"price": "to_number(price)", "qty": "to_number(qty)"}}, {"filter": "price > `10`"}]})
    assert done.returncode == 0, done.stderr
    assert done.output == [{"sku": "A-1", "price": 12.5, "qty": 3}, {"sku": "C-3", "price": 30, "qty": 0}]
    assert done.lines[0] == "input ./data/stock.csv: 3 records"


def test_the_trigger_payload_is_the_default_input(task: Task) -> None:
    done = task.run({"rules": [{"select": "commits[].id"}]}, payload={"commits": [{"id": 1}, {"id": 2}]})
    assert done.returncode == 0, done.stderr
    assert done.output == [1, 2]
    assert done.lines[0] == "input the trigger's payload: an object (commits: 2 records)"


def test_no_input_and_no_payload(task: Task) -> None:
    done = task.run({"rules": [{"select": "a"}]})
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: no data to work on: set input: (a workspace file ./x.json, an inline "
                                   "value or ${tasks.NAME.output}), or start the run with a payload (a webhook or "
                                   "an event)")


# -- the output file ------------------------------------------------------------------------------

@pytest.mark.parametrize("path, parse", [
    ("./out/result.json", json.loads),
    ("out/result.yaml", yaml.safe_load),
    ("./result.yml", yaml.safe_load),
    ("./out/deep/result.csv", lambda text: [{**r, "price": int(r["price"])}
                                            for r in csv.DictReader(io.StringIO(text))]),
])
def test_the_output_is_also_written_in_the_format_of_its_extension(task: Task, path: str, parse: Any) -> None:
    done = run_steps(task, [{"map": "{id: id, price: price}"}], output=path)
    expected = [{"id": "a", "price": 12}, {"id": "b", "price": 3}, {"id": "c", "price": 25}]
    assert done.output == expected
    written = task.workspace / path
    assert parse(written.read_text()) == expected
    assert done.lines[-1] == f"wrote {path} (3 records, {written.stat().st_size} bytes)"


def test_csv_output_of_something_else_than_records_is_refused(task: Task) -> None:
    done = task.run({"input": ITEMS, "rules": [{"map": "id"}], "output": "./out/ids.csv"})
    assert done.returncode == 1
    assert ("error: output ./out/ids.csv: csv needs a list of objects (one per row); the rules produced "
            "3 records") in done.stderr
    assert not (task.workspace / "out").exists()


@pytest.mark.parametrize("path", ["./../../etc/passwd.json", "/etc/result.json", "out/../../x.json"])
def test_an_output_path_outside_the_workspace_is_refused(task: Task, path: str) -> None:
    done = task.run({"input": ITEMS, "rules": [{"map": "id"}], "output": path})
    assert done.returncode == 1
    assert f"error: output: '{path}' is outside {task.workspace.resolve()}" in done.stderr
    assert done.output is None and "step 1" not in done.stdout  # refused before anything ran


def test_an_output_of_an_unknown_format(task: Task) -> None:
    done = task.run({"input": ITEMS, "rules": [{"map": "id"}], "output": "./out/result.txt"})
    assert done.returncode == 1
    assert "error: output './out/result.txt': the format comes from the extension: .json, .yaml, .yml or .csv" \
        in done.stderr


# -- errors ----------------------------------------------------------------------------------------

def test_a_bad_expression_names_the_file_and_the_step_before_anything_runs(task: Task) -> None:
    task.write("rules/processing.yaml", "steps:\n  - select: items\n  - rename: {a: b}\n  - filter: 'price >'\n")
    done = task.run({"input": {"items": ITEMS}, "rules": "./rules/processing.yaml"})
    assert done.returncode == 1
    assert done.stderr.strip() == ('error: rules ./rules/processing.yaml, step 3 (filter): invalid JMESPath '
                                   'expression "price >": the expression is incomplete')
    assert done.stdout == "" and done.output is None


def test_arithmetic_operators_get_a_hint(task: Task) -> None:
    done = task.run({"input": ITEMS, "rules": [{"compute": {"cents": "price * `100`"}}]})
    assert done.returncode == 1
    assert 'error: rules, step 1 (compute): invalid JMESPath expression "price * `100`": ' in done.stderr
    assert "(JMESPath has no arithmetic operators: use add(a, b), subtract(a, b), multiply(a, b), divide(a, b))" \
        in done.stderr


def test_an_unknown_function(task: Task) -> None:
    done = task.run({"input": ITEMS, "rules": [{"map": "multiplyy(price, `2`)"}]})
    assert done.returncode == 1
    assert 'error: rules, step 1 (map): unknown function multiplyy() in "multiplyy(price, `2`)" ' \
           "(did you mean multiply?); known: abs, add, avg," in done.stderr


def test_an_unknown_step_lists_the_known_ones(task: Task) -> None:
    task.write("rules.yaml", "- select: items\n- sleect: name\n")
    done = task.run({"input": {"items": ITEMS}, "rules": "./rules.yaml"})
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: rules ./rules.yaml, step 2: unknown step 'sleect' (did you mean select?); "
                                   "known: select, filter, rename, compute, map, drop, sort, limit")


def test_a_step_with_two_keys(task: Task) -> None:
    done = task.run({"input": ITEMS, "rules": [{"select": "a", "filter": "b"}]})
    assert done.returncode == 1
    assert "error: rules, step 1: a step is a mapping with one key, the step's name (select, filter, rename, " \
           "compute, map, drop, sort, limit); got 2 keys (select, filter); write each as its own step" in done.stderr


def test_rename_of_something_else_than_records(task: Task) -> None:
    done = task.run({"input": {"names": ["x", "y"]}, "rules": [{"select": "names[0]"}, {"rename": {"a": "b"}}]})
    assert done.returncode == 1
    assert done.stderr.strip() == "error: rules, step 2 (rename): expects records (objects), got a string"
    done = task.run({"input": [{"a": 1}, 5], "rules": [{"rename": {"a": "b"}}]})
    assert "error: rules, step 1 (rename): expects records (objects), got a number at $[1]" in done.stderr


def test_filter_of_an_object_says_to_select_the_list(task: Task) -> None:
    done = task.run({"input": {"orders": ITEMS}, "rules": [{"filter": "price > `1`"}]})
    assert done.returncode == 1
    assert ("error: rules, step 1 (filter): expects a list of records, got an object (orders: 3 records); "
            "select the list first (e.g. select: orders)") in done.stderr


def test_an_expression_failing_on_a_record_names_it(task: Task) -> None:
    done = task.run({"input": ITEMS, "rules": [{"compute": {"double": "multiply(name, `2`)"}}]})
    assert done.returncode == 1
    assert ("error: rules, step 1 (compute) double: multiply(name, `2`) at $[0]: In function multiply(), invalid "
            "type for value: Apple") in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("rules, message", [
    ([], "rules: no steps; give at least one"),
    ({"select": "a"}, "rules: expected a list of steps, got an object"),
    ("rules/processing.yaml", "rules: 'rules/processing.yaml' is neither a workspace file (those start with ./"),
    ([{"limit": -1}], "rules, step 1 (limit): expects a number of records (0 or more), got -1"),
    ([{"drop": []}], "rules, step 1 (drop): expects a list of field names"),
    ([{"rename": {"a": 3}}], "rules, step 1 (rename): 'a': 3 must be a non-empty string (old: new)"),
    ([{"sort": {"by": "a", "reverse": "yes"}}], 'rules, step 1 (sort): reverse must be true or false, not "yes"'),
    ([{"select": ""}], 'rules, step 1 (select): the expression must be a JMESPath expression (a string), not ""'),
    (["select"], "rules, step 1: a step is a mapping with one key"),
])
def test_rule_mistakes(task: Task, rules: Any, message: str) -> None:
    done = task.run({"input": ITEMS, "rules": rules})
    assert done.returncode == 1
    assert f"error: {message}" in done.stderr


def test_a_rules_file_with_other_keys(task: Task) -> None:
    task.write("r.yaml", "steps: [{select: a}]\nversion: 2\n")
    done = task.run({"input": ITEMS, "rules": "./r.yaml"})
    assert done.returncode == 1
    assert ("error: rules ./r.yaml: the file holds a list of steps, or a mapping with only steps: [...]; unknown key "
            "'version'") in done.stderr


def test_missing_and_escaping_rules_files(task: Task) -> None:
    done = task.run({"input": ITEMS, "rules": "./rules/none.yaml"})
    assert done.returncode == 1
    assert "error: rules: no file './rules/none.yaml' in the workspace" in done.stderr
    done = task.run({"input": ITEMS, "rules": "./../../etc/passwd"})
    assert done.returncode == 1
    assert f"error: rules: './../../etc/passwd' is outside {task.workspace.resolve()}" in done.stderr


def test_input_escaping_the_workspace(task: Task) -> None:
    done = task.run({"input": "./../../etc/passwd", "rules": [{"select": "a"}]})
    assert done.returncode == 1
    assert f"error: input: './../../etc/passwd' is outside {task.workspace.resolve()}" in done.stderr


def test_unknown_config_key(task: Task) -> None:
    done = task.run({"input": ITEMS, "rules": [{"select": "a"}], "format": "csv"})
    assert done.returncode == 1
    assert "error: unknown config key format; known: input, rules, output" in done.stderr


def test_an_output_path_blocked_by_a_file(task: Task) -> None:
    task.write("out", "a file where the folder should be")
    done = task.run({"input": ITEMS, "rules": [{"map": "id"}], "output": "./out/ids.json"})
    assert done.returncode == 1
    assert "error: output ./out/ids.json: could not write it: " in done.stderr
    assert "Traceback" not in done.stderr
