"""What a task reads from its run that the run must be given: secrets and inputs, each with the
place in the workflow file that asks for it.

`clarity run` checks these before anything runs; a value that was not given is reported at the
line and column of the expression (or the `secrets:` entry) that needs it, with how to give it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from . import expr
from .diagnostics import Diagnostic, Pos, error
from .load import JsonPath
from .model import Task, Workflow

# what the engine renders for a task, the task's own first: the place shown is the task's own use
_RENDERED = ("commands", "env", "config", "workdir", "inputs")


def task_path(wf: Workflow, task: Task) -> JsonPath | None:
    """Where `task` is in the workflow's (resolved) document; None if it is not there."""
    tasks = wf.source.data.get("workflow", {}).get("tasks") if isinstance(wf.source.data, dict) else None
    for i, raw in enumerate(tasks if isinstance(tasks, list) else []):
        if isinstance(raw, dict) and raw.get("name") == task.name:
            return ("workflow", "tasks", i)
    return None


def _strings(wf: Workflow, task: Task, base: JsonPath | None) -> Iterator[tuple[JsonPath | None, str]]:
    """Every string rendered for `task` (at `base` in the document), with its path there (None:
    the task is not in the document, so its values have no place of their own)."""
    raw = wf.source.get(base) if base is not None else None
    if base is not None and isinstance(raw, dict):
        for key in _RENDERED:
            yield from expr.strings(raw.get(key), base + (key,))
    else:
        for _path, text in expr.strings([list(task.commands), task.env, task.config, task.workdir or "", task.inputs]):
            yield None, text
    for key, value in wf.env.items():
        yield ("workflow", "env", key), value


def reads(wf: Workflow, task: Task, root: str) -> list[tuple[str, Pos]]:
    """The names `task` reads as `${ROOT.NAME}` (for "secrets", also those of its `secrets:`),
    each once, with the position of its first mention: the `secrets:` entry, else the
    expression in the task's commands, env, config, workdir or inputs, else in the workflow's env."""
    found: dict[str, Pos] = {}
    base = task_path(wf, task)
    if root == "secrets":
        for j, name in enumerate(task.secrets):
            found.setdefault(name, wf.source.pos(base + ("secrets", j)) if base is not None else task.pos)
    for path, text in _strings(wf, task, base):
        refs, _malformed = expr.find_all(text)  # malformed ones are lint errors: a linted workflow has none
        for ref in refs:
            if ref.root == root and ref.parts:
                found.setdefault(ref.parts[0], wf.source.at(path, ref.start) if path is not None else task.pos)
    return list(found.items())


def secret_hint(name: str) -> str:
    return (f"pass --secret {name}=VALUE, --secret {name} (the value of ${name}), --secret-file {name}=PATH, "
            f"or set CLARITY_SECRET_{name} in the environment of clarity run")


def missing_secrets(wf: Workflow, task: Task, given: Collection[str]) -> list[Diagnostic]:
    """An error for each secret `task` needs that is not in `given`, at its first mention."""
    return [error(pos, f"task '{task.name}' needs secret '{name}', which is not set", secret_hint(name))
            for name, pos in reads(wf, task, "secrets") if name not in given]


def missing_inputs(wf: Workflow, task: Task, given: Collection[str]) -> list[Diagnostic]:
    """An error for each input `task` reads that is not in `given`, at its first mention."""
    return [error(pos, f"task '{task.name}' reads input '{name}', which was not given",
                  f"pass --input {name}=VALUE, or give it a default in a manual trigger's inputs")
            for name, pos in reads(wf, task, "inputs") if name not in given]
