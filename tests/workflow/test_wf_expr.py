from __future__ import annotations

import pytest

from controller.workflow.expr import ExprError, Ref, find, problem, references_tasks, render

FIND: list[tuple[str, list[str]]] = [
    ("${tasks.validate-input.output}", ["tasks.validate-input.output"]),
    ("a ${git.sha} b ${ workflow.id }", ["git.sha", "workflow.id"]),
    ("${tasks.x.outputs.key_1}", ["tasks.x.outputs.key_1"]),
    ("${trigger.payload.head.ref}", ["trigger.payload.head.ref"]),
    ("$${git.sha} ${HOME} ${x%.*} ${#arr} $PATH", []),  # escape and shell forms are not ours
    ("${foo.bar}", ["foo.bar"]),  # parsed; lint reports the unknown root
    ("", []),
]


@pytest.mark.parametrize(("text", "paths"), FIND)
def test_find(text: str, paths: list[str]) -> None:
    assert [ref.path for ref in find(text)] == paths


def test_ref_offsets() -> None:
    (ref,) = find("echo ${tasks.a.output}!")
    assert ref == Ref("tasks", ("a", "output"), 5, 22, "${tasks.a.output}")
    assert ref.task == "a"


@pytest.mark.parametrize("text", ["${tasks.a.output", "${git.sha | upper}", "${env.X:-y}", "${tasks..x}"])
def test_malformed(text: str) -> None:
    with pytest.raises(ExprError) as info:
        find(text)
    assert info.value.offset == 0


def test_render_and_escape() -> None:
    values = {"git.branch": "$(id)", "tasks.a.output": "42"}
    out = render("b=${git.branch} a=${tasks.a.output} lit=$${git.sha} sh=${HOME}", lambda r: values[r.path])
    assert out == "b=$(id) a=42 lit=${git.sha} sh=${HOME}"


def test_render_does_not_rescan_values() -> None:
    assert render("${inputs.x}", lambda r: "${secrets.TOKEN}") == "${secrets.TOKEN}"


PROBLEMS: list[tuple[str, str | None]] = [
    ("${tasks.a.output}", None), ("${tasks.a.outcome}", None), ("${tasks.a.outputs.k}", None),
    ("${tasks.a}", "use tasks.NAME.output"), ("${tasks.a.outputs}", "use tasks.NAME.output"),
    ("${workflow.id}", None), ("${workflow.owner}", "workflow has id"), ("${git.short_sha}", None),
    ("${git.sha.x}", "git has sha"), ("${inputs.a.b}", "use inputs.NAME"), ("${secrets.TOKEN}", None),
    ("${env.HOME}", None), ("${trigger.anything.at.all}", None), ("${bogus.x}", "unknown expression root 'bogus'"),
]


@pytest.mark.parametrize(("text", "expected"), PROBLEMS)
def test_problem(text: str, expected: str | None) -> None:
    (ref,) = find(text)
    found = problem(ref)
    assert (found is None) if expected is None else (found is not None and expected in found)


def test_references_tasks_walks_nested_values() -> None:
    value = {"a": ["${tasks.x.output}", {"b": "${tasks.y-z.outputs.k} ${git.sha}"}], "c": 3, "d": "${tasks.bad"}
    assert references_tasks(value) == {"x", "y-z"}
