"""A workflow cut down to some of its tasks (`clarity run --task NAME`)."""

from __future__ import annotations

import dataclasses

from controller.workflow import dag
from controller.workflow.model import Workflow


class SelectError(ValueError):
    pass


def select_tasks(wf: Workflow, names: tuple[str, ...]) -> Workflow:
    """Keep the named tasks and, transitively, the tasks they declare in `needs` or read the
    outputs of; list order alone does not pull a task in."""
    known = {t.name: t for t in wf.tasks}
    missing = [n for n in names if n not in known]
    if missing:
        raise SelectError(
            f"{wf.file}: no task {', '.join(repr(m) for m in missing)} (its tasks: {', '.join(known)})"
        )
    keep: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        keep.add(name)
        task = known[name]
        refs = dag.task_references(task)
        stack.extend(n for n in (*(task.needs or ()), *refs) if n in known)
    kept = [t for t in wf.tasks if t.name in keep]
    if wf.uses_needs:  # stay a DAG: a kept task without `needs` is a root, not "after the previous"
        kept = [t if t.needs is not None else dataclasses.replace(t, needs=()) for t in kept]
    return dataclasses.replace(wf, tasks=tuple(kept))
