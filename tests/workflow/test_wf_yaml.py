"""YAML 1.1 pitfalls and positions from the loader."""

from __future__ import annotations

import pytest

from tests.workflow.wf_support import Lint
from controller.workflow.load import load

HEAD = "workflow:\n  name: w\n"

PITFALLS: list[tuple[str, str, str]] = [
    # (yaml after the head, expected formatted diagnostic substring, severity)
    ("  on: x\n  tasks: [{name: t, image: a}]\n",
     "w.yaml:3:3: error: key 'on' is read by YAML as the boolean true\n  hint: quote it: \"on\"", "error"),
    ("  version: 1.10\n  tasks: [{name: t, image: a}]\n",
     "w.yaml:3:12: error: 'version': expected a string, got the number 1.1 (YAML reads unquoted 1.10 as a number)\n"
     "  hint: quote it: \"1.10\"", "error"),
    ("  tasks: [{name: t, image: a, env: {DEBUG: yes}}]\n",
     "w.yaml:3:44: warning: 'yes' is read by YAML as the boolean true\n  hint: quote it: \"yes\", or write true",
     "warning"),
    ("  tasks: [{name: t, image: a, env: {MODE: 0755}}]\n",
     "warning: 0755 is read by YAML 1.1 as the octal number 493", "warning"),
    ("  tasks: [{name: t, image: a, timeout: 1:30}]\n",
     "warning: 1:30 is read by YAML 1.1 as the base-60 number 90", "warning"),
    ("  tasks: [{name: t, image: a, env: {V: 1.10}}]\n",
     "warning: 1.10 is read by YAML as the number 1.1\n  hint: quote it: \"1.10\"", "warning"),
    ("  tasks: [{name: t, image: off}]\n",
     "error: 'image': expected a string, got the boolean false (YAML reads unquoted off as a boolean)", "error"),
    ("  tasks:\n    - name: t\n      image: a\n      commands:\n        - echo key: value > out\n",
     "w.yaml:7:11: error: 'commands': expected a string, got a mapping in task 't'\n"
     "  hint: an unquoted ': ' makes YAML read the line as a mapping; quote the whole value", "error"),
    ("  tasks: [{name: t, image: a}]\n  tasks: []\n", "w.yaml:4:3: error: duplicate key 'tasks' (first defined at w.yaml:3:3)",
     "error"),
]


@pytest.mark.parametrize(("body", "expected", "severity"), PITFALLS)
def test_yaml_pitfall(lint: Lint, body: str, expected: str, severity: str) -> None:
    workflow, diagnostics = lint(HEAD + body)
    output = "\n".join(d.format() for d in diagnostics)
    assert expected in output, output
    assert (workflow is None) == (severity == "error")


def test_boolean_where_a_boolean_is_wanted_is_silent(lint: Lint) -> None:
    workflow, diagnostics = lint(HEAD + """\
  triggers:
    - type: manual
      inputs:
        force: {type: boolean, required: yes, default: no}
        name: {required: no, default: no}
  tasks: [{name: t, image: a}]
""")
    # a boolean input's default is a boolean; a string input's default is not
    assert [d.format().splitlines()[0] for d in diagnostics] == [
        "w.yaml:7:39: error: 'default': expected a string, got the boolean false "
        "(YAML reads unquoted no as a boolean) in the manual trigger"]
    assert workflow is None


def test_env_values_become_strings(lint: Lint) -> None:
    workflow, _ = lint(HEAD + "  env: {A: 1, B: true, C: 2.5, D: yes}\n  tasks: [{name: t, image: a}]\n")
    assert workflow is not None
    assert workflow.env == {"A": "1", "B": "true", "C": "2.5", "D": "true"}


def test_positions_and_source_text() -> None:
    doc, diagnostics = load("a:\n  b: [1, '2', x]\n  c: |\n    text\n", "f.yaml")
    assert doc is not None and diagnostics == []
    assert doc.data == {"a": {"b": [1, "2", "x"], "c": "text\n"}}
    assert str(doc.pos(("a", "b", 2))) == "f.yaml:2:15"
    assert str(doc.key_pos(("a", "c"))) == "f.yaml:3:3"
    assert str(doc.pos(("a", "b", 9))) == "f.yaml:2:6"  # nearest ancestor
    scalar = doc.scalar(("a", "b", 1))
    assert scalar is not None and scalar.text == "2" and not scalar.plain


def test_merge_keys_and_anchors() -> None:
    doc, diagnostics = load("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert doc is not None and diagnostics == []
    assert doc.data["other"] == {"x": 1, "y": 3}


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    doc, diagnostics = load("\n".join(lines) + "\n", "f.yaml")
    assert doc is None and "too large" in diagnostics[0].message


def test_y_and_n_stay_strings() -> None:
    # PyYAML (unlike some YAML 1.1 parsers) keeps y/n as strings: nothing changed, nothing to say
    doc, diagnostics = load("a: y\nn: b\n", "f.yaml")
    assert doc is not None and doc.data == {"a": "y", "n": "b"} and diagnostics == []
