"""Lint: every problem of a workflow file in one pass, then the model if there is no error.

Order of checks: YAML (load), the schema (validate), then what a schema
cannot say: names, references, expressions, cycles, cron, time zones.
The semantic checks read the raw data defensively, since it may be the
shape the schema just rejected.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.triggers.schedule import Schedule, ScheduleError
from controller.triggers.webhook import path_problem as webhook_path_problem

from . import expr
from .dag import build_edges, find_cycle
from .diagnostics import Diagnostic, Pos, error, errors, sort, suggest, warning
from .extends import resolve
from .load import JsonPath, Located, load
from .model import Workflow, build
from .schema import SECRET_NAME_PATTERN, TaskTypes
from .sources import Loaded, Sources

if TYPE_CHECKING:
    from controller.plugins import Registry
from .units import parse_duration, parse_size
from .validate import validate

WORKFLOW_DIR = ".clarity"
RENDERED_KEYS = ("commands", "env", "config", "workdir", "inputs")  # what the engine renders for a task


def _secret_name(name: str) -> str:
    """A secret's name as it may be written: `deploy-key` -> `DEPLOY_KEY`."""
    upper = re.sub(r"[^A-Z0-9_]", "_", name.upper())
    return "_" + upper if upper[:1].isdigit() else upper


def _known_task(word: str, names: Iterable[str]) -> str:
    """A hint for a name that is no task: the closest task's name, or the names there are."""
    listed = list(names)
    return suggest(word, listed) or (f"the workflow's tasks: {', '.join(listed)}" if listed else "the workflow has no task")


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)] if isinstance(value, list) else []


_SCHEDULE_HINTS = {
    "cron": "five fields: minute hour day-of-month month day-of-week, or @hourly, @daily, @weekly, @monthly, @yearly",
    "catchup": "none, latest or all",
}


class _Checker:
    def __init__(self, doc: Located) -> None:
        self.doc = doc
        wf = doc.data.get("workflow")
        self.wf: dict[str, Any] = wf if isinstance(wf, dict) else {}
        self.tasks = _dicts(self.wf.get("tasks"))
        self.triggers = _dicts(self.wf.get("triggers"))
        self.index: dict[str, int] = {}  # task name -> list index (first occurrence)
        self.dag_mode = any("needs" in t for _, t in self.tasks)
        self.refs: dict[str, set[str]] = {}  # task name -> tasks its rendered values read

    def run(self) -> Iterator[Diagnostic]:
        yield from self._names()
        yield from self._needs()
        yield from self._expressions()
        yield from self._cycles()
        yield from self._triggers()
        yield from self._values()

    def _names(self) -> Iterator[Diagnostic]:
        for i, task in self.tasks:
            name = task.get("name")
            if not isinstance(name, str):
                continue
            if name in self.index:
                first = self.doc.pos(("workflow", "tasks", self.index[name], "name"))
                yield error(self.doc.pos(("workflow", "tasks", i, "name")),
                            f"duplicate task name '{name}' (first defined at {first})")
            else:
                self.index[name] = i

    def _needs(self) -> Iterator[Diagnostic]:
        for i, task in self.tasks:
            needs = task.get("needs")
            for j, dep in enumerate(needs if isinstance(needs, list) else []):
                path = ("workflow", "tasks", i, "needs", j)
                if dep == task.get("name"):
                    yield error(self.doc.pos(path), f"task '{dep}' needs itself")
                elif isinstance(dep, str) and dep not in self.index:
                    yield error(self.doc.pos(path), f"'needs' names an unknown task '{dep}'",
                                _known_task(dep, self.index))

    def _expressions(self) -> Iterator[Diagnostic]:
        inputs = self._declared_inputs()
        for path, text in expr.strings(self.wf, ("workflow",)):
            refs, malformed = expr.find_all(text)  # a malformed one hides nothing else of the string
            for exc in malformed:
                yield error(self.doc.at(path, exc.offset), exc.message, expr.malformed_hint(exc))
            for ref in refs:
                where = self.doc.at(path, ref.start)
                if (message := expr.problem(ref)) is not None:
                    hint = suggest(ref.root, expr.ROOTS) if ref.root not in expr.ROOTS else None
                    yield error(where, message, hint)
                elif ref.root == "tasks":
                    yield from self._task_ref(ref, path, where)
                elif ref.root == "secrets" and len(path) == 4 and path[1] == "tasks" and path[3] == "image":
                    yield error(where, f"{ref.raw}: an image name is not secret (it is shown in logs and "
                                       "statuses): a secret cannot be part of it",
                                "log in to the registry on the runner's machine (docker login) instead")
                elif ref.root == "secrets" and not re.fullmatch(SECRET_NAME_PATTERN, ref.parts[0]):
                    yield error(where, f"{ref.raw}: secret names are capital letters, digits and '_', not "
                                       f"starting with a digit", f"write ${{secrets.{_secret_name(ref.parts[0])}}} "
                                       "(and give it under that name: --secret, clarity secret set)")
                elif ref.root == "inputs" and inputs is not None and ref.parts[0] not in inputs:
                    yield warning(where, f"{ref.raw}: no manual trigger declares the input '{ref.parts[0]}'",
                                  suggest(ref.parts[0], inputs))

    def _task_ref(self, ref: expr.Ref, path: JsonPath, where: Pos) -> Iterator[Diagnostic]:
        target = ref.parts[0]
        if target not in self.index:
            yield error(where, f"{ref.raw} refers to an unknown task '{target}'", _known_task(target, self.index))
            return
        if path[1:2] == ("outputs",):  # the workflow's outputs: read when the run is over
            return
        if len(path) < 4 or path[1] != "tasks" or not isinstance(path[2], int):
            yield error(where, f"{ref.raw}: only a task, or the workflow's outputs, can read the results of a task")
            return
        task = self.wf["tasks"][path[2]]
        name = task.get("name") if isinstance(task, dict) else None
        if not isinstance(name, str) or path[3] not in RENDERED_KEYS:
            if path[3] not in RENDERED_KEYS:
                yield error(where, f"{ref.raw}: task results can be used in "
                                   f"{', '.join(RENDERED_KEYS)} only, not in '{path[3]}'")
            return
        self.refs.setdefault(name, set()).add(target)
        if not self.dag_mode and self.index[target] >= path[2]:
            what = "its own result" if target == name else f"task '{target}', which runs after it"
            yield error(where, f"{ref.raw}: task '{name}' reads {what} (tasks run in list order)",
                        f"move '{target}' earlier, or declare needs" if target != name else None)

    def _declared_inputs(self) -> set[str] | None:
        declared = [t.get("inputs") for _, t in self.triggers if t.get("type") == "manual"]
        if not any(isinstance(d, dict) for d in declared):
            return None  # inputs may come from the API; nothing to compare with
        return {name for d in declared if isinstance(d, dict) for name in d}

    def _cycles(self) -> Iterator[Diagnostic]:
        if not self.dag_mode or not self.index:
            return
        names = list(self.index)
        needs = {}
        for _, task in self.tasks:
            raw = task.get("needs")
            if task.get("name") in self.index and isinstance(raw, list):
                needs[task["name"]] = [n for n in raw if isinstance(n, str) and n != task["name"]]
        cycle = find_cycle(build_edges(names, needs, self.refs))
        if cycle:
            pos = self.doc.pos(("workflow", "tasks", self.index[cycle[0]]))
            yield error(pos, f"dependency cycle: {' -> '.join(cycle)}",
                        "needs and ${tasks.X...} references both order tasks")

    def _triggers(self) -> Iterator[Diagnostic]:
        for i, trig in self.triggers:
            base = ("workflow", "triggers", i)
            if trig.get("type") == "schedule" and isinstance(trig.get("cron"), str) and \
                    isinstance(trig.get("timezone", "UTC"), str):
                said = set()  # the same checks the controller's schedules make; each key once
                for variant in (trig, {**trig, "timezone": "UTC"}, {**trig, "cron": "@daily"},
                                {**trig, "cron": "@daily", "timezone": "UTC"}):
                    try:
                        Schedule.parse(variant)
                    except ScheduleError as exc:
                        if exc.key not in said:
                            said.add(exc.key)
                            at = base + (exc.key,)
                            pos = self.doc.pos(at) if exc.offset is None else self.doc.at(at, exc.offset)
                            yield error(pos, str(exc), exc.hint or _SCHEDULE_HINTS.get(exc.key))
            path = trig.get("path")
            if trig.get("type") == "webhook" and isinstance(path, str) and path.startswith("/"):  # else: schema's
                problem = webhook_path_problem(path)
                if problem is not None:
                    yield error(self.doc.pos(base + ("path",)), *problem)
            if trig.get("type") == "event" and "repo" not in trig and trig.get("workflow") == self.wf.get("name") \
                    and isinstance(trig.get("workflow"), str):  # every state can match its own outcome
                yield error(self.doc.pos(base + ("workflow",)), "a workflow that starts itself when it finishes "
                            "never stops", "name another workflow; to try again after a failure, give the task "
                            "`retries`, or use a schedule")
            inputs = trig.get("inputs")
            if trig.get("type") == "manual" and isinstance(inputs, dict):
                for name, spec in inputs.items():
                    if isinstance(spec, dict):
                        yield from self._input(base + ("inputs", name), name, spec)

    def _input(self, path: JsonPath, name: str, spec: dict[str, Any]) -> Iterator[Diagnostic]:
        # the schema checks the default's type; only a choice needs the options to compare with
        options = spec.get("options")
        if spec.get("type") == "choice" and "default" in spec and isinstance(options, list):
            if spec["default"] not in options:
                yield error(self.doc.pos(path + ("default",)), f"the default of input '{name}' must be one of its options")

    def _values(self) -> Iterator[Diagnostic]:
        """Positivity of durations and sizes (the schema's patterns accept 0)."""
        for i, task in self.tasks:
            base = ("workflow", "tasks", i)
            checks: list[tuple[JsonPath, Any, Any]] = [(base + ("timeout",), task.get("timeout"), parse_duration)]
            resources = task.get("resources")
            if isinstance(resources, dict):
                checks.append((base + ("resources", "memory"), resources.get("memory"), parse_size))
            for path, value, parse in checks:
                if value is None or isinstance(value, bool):
                    continue
                try:
                    parse(value)
                except (ValueError, TypeError) as exc:
                    if "positive" in str(exc):  # malformed ones are schema errors already
                        yield error(self.doc.pos(path), str(exc))


def lint_text(text: str, file: str, task_types: TaskTypes | None = None, *, plugins: Registry | None = None,
              grants: Mapping[str, frozenset[str]] | None = None, sources: Sources | None = None,
              loaded: Loaded | None = None) -> tuple[Workflow | None, list[Diagnostic]]:
    """All diagnostics of one workflow text (sorted), and its model when there is no error.

    Task and trigger types are those of `plugins` (default: the installed plugins,
    controller.plugins.installed) unless `task_types` names them (then only those, no plugin
    checks). `grants` (plugin -> permissions) adds the permission checks of plugin tasks.
    `sources` reads the bases of `extends:` (`loaded`: this file as read, which relative bases
    are next to); the model's `source` is then the resolved document (extends.Resolved)."""
    from controller.plugins import check, installed
    from controller.plugins.payload import warnings as payload_warnings

    doc, diags = load(text, file)
    if doc is None:
        return None, sort(diags)
    resolved, inherited = resolve(doc, sources, loaded)  # `extends:` merged in (extends.py)
    diags.extend(inherited)
    if resolved is None:
        return None, sort(diags)
    doc = resolved
    registry = plugins if plugins is not None else (installed() if task_types is None else None)
    pins, pin_errors = check.strip_pins(doc)
    diags.extend(pin_errors)
    types: TaskTypes = task_types if task_types is not None else registry.task_schemas()  # type: ignore[union-attr]
    broken = {p.plugin for p in registry.problems} if registry is not None else set()
    diags.extend(validate(doc, types, registry.trigger_schemas() if registry is not None else None, broken=broken))
    if registry is not None:  # before the checks that need a valid document: all problems in one pass
        diags.extend(check.versions(doc, pins, registry))
        diags.extend(payload_warnings(doc, registry))
    diags.extend(_Checker(doc).run())
    from .compose import check as check_compose  # `type: workflow` tasks and `outputs:`

    diags.extend(check_compose(doc, sources, loaded))
    if registry is not None and not errors(diags):
        diags.extend(check.check(doc, registry, grants))
    diags = sort(diags)
    if errors(diags):
        return None, diags
    wf = build(doc)
    if pins:
        tasks = list(wf.tasks)
        for i, pin in pins.items():
            tasks[i] = dataclasses.replace(tasks[i], version_range=pin.range)
        wf = dataclasses.replace(wf, tasks=tuple(tasks))
    return wf, diags


def workflow_files(paths: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The files named, or the .clarity/*.yaml|yml of the directories named (default: cwd)."""
    out: list[Path] = []
    for raw in list(paths) or [Path.cwd()]:
        path = Path(raw)
        if path.is_dir():
            folder = path if path.name == WORKFLOW_DIR else path / WORKFLOW_DIR
            out.extend(sorted(p for p in folder.glob("*") if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            out.append(path)
    return out


def lint_paths(paths: Iterable[str | os.PathLike[str]] = (), task_types: TaskTypes | None = None, *,
               grants: Mapping[str, frozenset[str]] | None = None,
               sources: Callable[[Path, str], tuple[Sources | None, Loaded | None]] | None = None,
               ) -> dict[str, list[Diagnostic]]:
    """Diagnostics per file (an empty list for a clean file). `sources(path, text)`: where the
    bases of a file's `extends:` are read, and the file as Loaded."""
    results: dict[str, list[Diagnostic]] = {}
    for path in workflow_files(paths):
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            results[name] = [error(Pos(name, 1, 1), "no such file")]
            continue
        except UnicodeDecodeError as exc:
            results[name] = [error(Pos(name, 1, 1), f"not UTF-8 text (byte {exc.start}): a workflow file is YAML text")]
            continue
        except OSError as exc:
            results[name] = [error(Pos(name, 1, 1), f"cannot read the file: {exc.strerror}")]
            continue
        src, own = sources(path, text) if sources is not None else (None, None)
        results[name] = lint_text(text, name, task_types, grants=grants, sources=src, loaded=own)[1]
    return results
