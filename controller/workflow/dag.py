"""The order of a workflow's tasks: list order, or a DAG once any task declares `needs`.

Edges map a task to the tasks it depends on. In DAG mode they are the explicit
`needs` plus every `${tasks.X...}` reference (a value cannot be read before
its task ran). In list mode each task depends on the one before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from .expr import references_tasks

if TYPE_CHECKING:
    from .model import Task, Workflow

Edges = dict[str, tuple[str, ...]]


def build_edges(names: Sequence[str], needs: Mapping[str, Sequence[str] | None],
                refs: Mapping[str, Iterable[str]]) -> Edges:
    """Edges from plain data; names not in `names` are dropped (lint reports them)."""
    if all(needs.get(name) is None for name in names):
        return {name: (names[i - 1],) if i else () for i, name in enumerate(names)}
    known = set(names)
    out: Edges = {}
    for name in names:
        deps = list(dict.fromkeys([*(needs.get(name) or ()), *sorted(refs.get(name, ()))]))
        out[name] = tuple(d for d in deps if d in known)
    return out


def task_references(task: Task) -> set[str]:
    """Tasks referenced by the values the engine renders: commands, env, config, workdir, and
    the inputs of a `workflow` task."""
    return references_tasks([list(task.commands), task.env, task.config, task.workdir or "", task.inputs])


def edges(workflow: Workflow) -> Edges:
    names = [t.name for t in workflow.tasks]
    return build_edges(names, {t.name: t.needs for t in workflow.tasks},
                       {t.name: task_references(t) for t in workflow.tasks})


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle as a closed path (['a', 'b', 'a']), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in edges.get(node, ()):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in edges:
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def topo_order(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """Tasks with their dependencies first; ties keep the declaration order. Raises ValueError on a cycle."""
    remaining = {name: set(deps) & set(edges) for name, deps in edges.items()}
    order: list[str] = []
    while remaining:
        ready = [name for name, deps in remaining.items() if not deps]
        if not ready:
            cycle = find_cycle(edges) or list(remaining)
            raise ValueError(f"dependency cycle: {' -> '.join(cycle)}")
        for name in ready:
            order.append(name)
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(ready)
    return order
