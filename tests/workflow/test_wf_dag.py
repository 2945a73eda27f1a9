from __future__ import annotations

import pytest

from tests.workflow.wf_support import Lint
from controller.workflow.dag import edges, find_cycle, topo_order

DAGS: list[tuple[str, str, dict[str, tuple[str, ...]]]] = [
    ("list order", """
        - {name: a, image: x}
        - {name: b, image: x, commands: ["echo ${tasks.a.output}"]}
        - {name: c, image: x}
     """, {"a": (), "b": ("a",), "c": ("b",)}),
    ("explicit needs", """
        - {name: a, image: x}
        - {name: b, image: x}
        - {name: c, image: x, needs: [a, b]}
     """, {"a": (), "b": (), "c": ("a", "b")}),
    ("needs plus implicit references", """
        - {name: a, image: x, needs: []}
        - {name: b, image: x, env: {V: "${tasks.a.outputs.v}"}}
        - {name: c, image: x, workdir: "${tasks.b.output}", needs: [a]}
        - {name: d, type: storage, config: {data: ["${tasks.c.outcome}"]}}
     """, {"a": (), "b": ("a",), "c": ("a", "b"), "d": ("c",)}),
]


@pytest.mark.parametrize(("tasks", "expected"), [d[1:] for d in DAGS], ids=[d[0] for d in DAGS])
def test_edges(lint: Lint, tasks: str, expected: dict[str, tuple[str, ...]]) -> None:
    indented = "\n".join("    " + line.strip() for line in tasks.strip().splitlines())
    workflow, diagnostics = lint(f"workflow:\n  name: w\n  tasks:\n{indented}\n")
    assert workflow is not None, [d.format() for d in diagnostics]
    assert edges(workflow) == expected


def test_topo_order_keeps_declaration_order_for_ties() -> None:
    assert topo_order({"c": ("a",), "a": (), "b": (), "d": ("c", "b")}) == ["a", "b", "c", "d"]


def test_cycles() -> None:
    assert find_cycle({"a": ("b",), "b": ("c",), "c": ("a",)}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ("a",)}) == ["a", "a"]
    assert find_cycle({"a": (), "b": ("a",)}) is None
    with pytest.raises(ValueError, match="a -> b -> a"):
        topo_order({"a": ("b",), "b": ("a",)})
