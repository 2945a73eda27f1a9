"""Composition: a task of `type: workflow` runs another workflow as a sub-run.

```yaml
- name: deploy
  type: workflow
  workflow: deploy.yaml            # or {repo: acme/ci-templates, ref: v2, path: deploy.yaml}
  inputs: {env: staging, replicas: 2, version: "${tasks.build.outputs.version}"}
  wait: true                       # default; false: the task ends once the sub-run has started
```

The sub-workflow is read through `Sources` (controller.workflow.sources): a file of the same
repository at the parent run's commit, or of another repository at a pinned ref. It is linted,
and its `inputs` are checked against the sub-workflow's `manual` trigger inputs exactly as a
manual run's are (types, choices, required, unknown names). The sub-run runs in the parent run's
workspace and git context; its declared `outputs:` (evaluated when it succeeds) become the
task's outputs (`${tasks.deploy.outputs.url}`). The engine side is in controller.engine.

Here: the lint checks (`check`, hooked into lint_text; with `sources` they read the
sub-workflows: unreadable or broken files, literal inputs of the wrong type, recursion through
files lint can follow) and `prepare`, what the scheduler does before it makes a sub-run.
Recursion lint cannot see (through repositories it cannot read) is cut at run time at
`MAX_DEPTH` nested sub-runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import posixpath
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from controller.triggers.manual import InputError, check_input, declared_inputs, resolve_inputs

from . import expr
from .diagnostics import Diagnostic, Pos, error, suggest
from .load import JsonPath, Located
from .model import Task, Workflow, env_value
from .sources import WORKFLOW_DIR, FileRef, Loaded, SourceError, Sources, read_hint

MAX_DEPTH = 5  # sub-runs inside sub-runs; the next one is not started

Key = tuple[str | None, str | None, str]  # (repo, ref, path in the repository): one workflow file


class ComposeError(Exception):
    """The sub-run cannot be made: a sentence for the task's error."""


def own_path(file: str) -> str:
    """The path in its repository of a file named as diagnostics name it (`.clarity/ci.yaml`,
    `/home/me/repo/.clarity/ci.yaml`, `acme/ci@v2:.clarity/ci.yaml`)."""
    at = file.rfind(f"{WORKFLOW_DIR}/")
    if at == 0 or (at > 0 and file[at - 1] in "/:"):
        return file[at:]
    return file[2:] if file.startswith("./") else file


def _norm(path: str) -> str:
    return posixpath.normpath(path).lstrip("/")


def key_of(ref: FileRef, parent: Key) -> Key:
    """Which file `ref` names, written in the file `parent` (a path of that file's repository)."""
    if ref.repo is not None:
        return (ref.repo, ref.ref, _norm(ref.repo_path))
    return (parent[0], parent[1], _norm(ref.repo_path))


def root_key(file: str, loaded: Loaded | None = None) -> Key:
    if loaded is not None:
        return (loaded.ref.repo, loaded.ref.ref, _norm(loaded.ref.repo_path))
    return (None, None, _norm(own_path(file)))


def shown(key: Key) -> str:
    return key[2] if key[0] is None else f"{key[0]}@{key[1]}:{key[2]}"


def literal(value: Any) -> str | None:
    """The text a value of `inputs:` gives, when it has no expression (None: known at run time)."""
    if isinstance(value, str):
        return None if "${" in value.replace("$${", "") else value.replace("$${", "${")
    if isinstance(value, (bool, int, float)):
        return env_value(value)
    return None


# Set while check() lints the sub-workflows it follows: their own sub-workflows are followed by
# that check (`_Lint._cycle`), not by each nested lint in turn (which would never end on a cycle).
_following: contextvars.ContextVar[bool] = contextvars.ContextVar("compose_following", default=False)


@contextlib.contextmanager
def _nested() -> Iterator[None]:
    token = _following.set(True)
    try:
        yield
    finally:
        _following.reset(token)


def lint_loaded(loaded: Loaded, sources: Sources | None = None) -> tuple[Workflow | None, list[Diagnostic], str]:
    """A sub-workflow as read: its model (None on errors), its diagnostics (its `extends:`
    resolved through `sources`), and the text its sub-run records (the resolved workflow)."""
    from . import extends
    from .lint import lint_text

    wf, diags = lint_text(loaded.text, loaded.file, sources=sources, loaded=loaded)
    return wf, diags, extends.workflow_text(wf, loaded.text) if wf is not None else loaded.text


def files_of(wf: Workflow, loaded: Loaded) -> tuple[dict[str, Any], ...]:
    """What a sub-run records of the files that went into it: its own, and its bases."""
    from . import extends

    return extends.files(wf, loaded)


@dataclass(frozen=True)
class InputProblem:
    kind: str  # unknown | value | missing
    name: str
    message: str
    hint: str | None = None


def input_problems(sub: Workflow, given: Mapping[str, str | None]) -> Iterator[InputProblem]:
    """What the sub-workflow would refuse of the given inputs, as a manual run would: unknown names
    (when it declares inputs), values of the wrong type, required inputs missing. A None value (an
    expression) is checked when the task runs."""
    declared = declared_inputs(sub)
    for name, raw in given.items():
        if name not in declared:
            if declared:
                yield InputProblem("unknown", name, f"{sub.file} has no input '{name}' (its inputs: "
                                   f"{', '.join(declared)})", suggest(name, declared))
            continue
        if raw is not None:
            try:
                check_input(name, declared[name], raw, sub.file)
            except InputError as exc:
                yield InputProblem("value", name, str(exc))
    for name, spec in declared.items():
        if spec.get("required", False) and name not in given and "default" not in spec:
            yield InputProblem("missing", name, f"{sub.file}: input '{name}' is required",
                               f"give it in the task's inputs: {name}: VALUE")


def resolved_inputs(sub: Workflow, given: Mapping[str, str]) -> dict[str, str]:
    """The inputs of a sub-run (defaults filled in); ComposeError names the first problem."""
    for problem in input_problems(sub, given):
        raise ComposeError(f"wrong input: {problem.message}")
    try:
        return resolve_inputs(sub, given, strict=True)
    except InputError as exc:  # pragma: no cover - input_problems found it first
        raise ComposeError(f"wrong input: {exc}") from None


@dataclass(frozen=True)
class Prepared:
    """A sub-run, ready to be made."""

    loaded: Loaded
    workflow: Workflow
    text: str
    inputs: dict[str, str]


def prepare(task: Task, sources: Sources, relative_to: Loaded | None, given: Mapping[str, str]) -> Prepared:
    """Read, lint and check the inputs of the workflow `task` runs. Raises ComposeError."""
    assert task.workflow is not None
    try:
        loaded = sources.read(task.workflow, relative_to=relative_to)
    except SourceError as exc:
        raise ComposeError(f"cannot read the workflow {task.workflow.shown()}: {exc}") from None
    wf, diags, text = lint_loaded(loaded, sources)
    if wf is None:
        found = [d for d in diags if d.is_error]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        first = found[0].format().splitlines()[0] if found else "it does not lint"
        raise ComposeError(f"the workflow {loaded.file} has errors: {first}{more}")
    return Prepared(loaded, wf, text, resolved_inputs(wf, given))


def loaded_from(record: Mapping[str, Any] | None, text: str) -> Loaded | None:
    """The Loaded of a sub-run's own file, from what its run recorded (`Loaded.record`)."""
    if not isinstance(record, Mapping) or not record.get("path"):
        return None
    repo = record.get("ref") and record.get("repo")
    ref = FileRef(str(record["path"]), str(repo) if repo else None, record.get("ref") if repo else None)
    return Loaded(ref=ref, text=text, file=str(record.get("file") or ref.shown()), repo=str(record.get("repo") or ""),
                  commit=record.get("commit"), blob=record.get("blob"))


# -- lint ------------------------------------------------------------------------------------------


def _tasks(doc: Located) -> list[tuple[int, dict[str, Any]]]:
    wf = doc.data.get("workflow") if isinstance(doc.data, dict) else None
    tasks = wf.get("tasks") if isinstance(wf, dict) else None
    if not isinstance(tasks, list):
        return []
    return [(i, t) for i, t in enumerate(tasks) if isinstance(t, dict) and t.get("type") == "workflow"]


def _ref(value: Any) -> FileRef | None:
    if isinstance(value, str) and value:
        return FileRef(value)
    if isinstance(value, dict) and isinstance(value.get("path"), str) and value["path"] and \
            isinstance(value.get("repo"), (str, type(None))) and isinstance(value.get("ref"), (str, type(None))) and \
            (value.get("repo") is None) == (value.get("ref") is None):
        return FileRef(value["path"], value.get("repo"), value.get("ref"))
    return None  # the schema says what is wrong


class _Lint:
    def __init__(self, doc: Located, sources: Sources | None, loaded: Loaded | None) -> None:
        self.doc, self.sources, self.loaded = doc, sources, loaded
        self.root = root_key(doc.file, loaded)
        self.read_cache: dict[Key, Loaded | SourceError] = {}
        self.model_cache: dict[Key, Workflow | None] = {}
        self.clean: set[Key] = set()  # explored: no recursion below

    def run(self) -> Iterator[Diagnostic]:
        yield from self._outputs()
        for i, task in _tasks(self.doc):
            base: JsonPath = ("workflow", "tasks", i)
            name = task.get("name")
            at = self.doc.pos(base + ("workflow",))
            value = task.get("workflow")
            texts = [value] if isinstance(value, str) else \
                [v for v in value.values() if isinstance(v, str)] if isinstance(value, dict) else []
            if any("${" in t for t in texts):
                yield error(at, f"task '{name}': the workflow to run is read before the run starts, "
                                "so it cannot hold ${...} expressions", "name the file as it is")
                continue
            raw_inputs = task.get("inputs")
            inputs: dict[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {}
            for key, v in inputs.items():
                if isinstance(v, str) and "${secrets." in v:
                    yield error(self.doc.pos(base + ("inputs", key)),
                                f"task '{name}': a secret cannot be given as an input (inputs are stored and "
                                "shown with the sub-run)", "the sub-run's tasks can declare the secret themselves")
            ref = _ref(value)
            if ref is None:
                continue
            target = key_of(ref, self.root)
            if target == self.root:
                yield error(at, f"task '{name}' runs the workflow it is part of ({shown(target)}): "
                                "it would start itself without end",
                            "run another workflow; put what both need in a file each of them runs")
                continue
            if self.sources is None or _following.get():
                continue
            yield from self._sub(base, str(name), ref, target, inputs)

    def _outputs(self) -> Iterator[Diagnostic]:
        wf = self.doc.data.get("workflow") if isinstance(self.doc.data, dict) else None
        outputs = wf.get("outputs") if isinstance(wf, dict) else None
        for name, value in (outputs.items() if isinstance(outputs, dict) else ()):
            if isinstance(value, str) and "${secrets." in value:
                yield error(self.doc.pos(("workflow", "outputs", name)),
                            f"output '{name}': a secret cannot be an output (outputs are stored and shown)")

    def _read(self, ref: FileRef, key: Key, relative_to: Loaded | None) -> Loaded:
        assert self.sources is not None
        if key not in self.read_cache:
            try:
                self.read_cache[key] = self.sources.read(ref, relative_to=relative_to)
            except SourceError as exc:
                self.read_cache[key] = exc
                raise
        found = self.read_cache[key]
        if isinstance(found, SourceError):
            raise found  # the same words (and hint) each time it is asked for
        return found

    def _model(self, key: Key, loaded: Loaded) -> tuple[Workflow | None, list[Diagnostic]]:
        with _nested():
            wf, diags, _text = lint_loaded(loaded, self.sources)
        self.model_cache[key] = wf
        return wf, diags

    def _sub(self, base: JsonPath, name: str, ref: FileRef, target: Key, inputs: Mapping[str, Any]) -> Iterator[Diagnostic]:
        at = self.doc.pos(base + ("workflow",))
        try:
            loaded = self._read(ref, target, self.loaded)
        except SourceError as exc:
            yield error(at, f"task '{name}': cannot read the workflow {ref.shown()}: {exc}", read_hint(ref, exc))
            return
        sub, diags = self._model(target, loaded)
        if sub is None:
            found = [d for d in diags if d.is_error]
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            first = found[0].format().splitlines()[0] if found else "it does not lint"
            yield error(at, f"task '{name}': the workflow {loaded.file} has errors: {first}{more}",
                        f"clarity lint {loaded.file}" if target[0] is None else None)
            return
        given = {k: literal(v) for k, v in inputs.items()}
        for problem in input_problems(sub, given):
            if problem.kind == "unknown":
                where = self.doc.key_pos(base + ("inputs", problem.name))
            elif problem.kind == "value":
                where = self.doc.pos(base + ("inputs", problem.name))
            else:
                where = self.doc.key_pos(base + ("inputs",)) if inputs else at
            yield error(where, f"task '{name}': {problem.message}", problem.hint)
        trail = self._cycle(target, loaded, sub, [self.root, target])
        if trail is not None:
            chain = " -> ".join(shown(k) for k in [self.root, target, *[k for _pos, k in trail]])
            back = "; ".join(f"{pos} runs {shown(k)}" for pos, k in trail)
            yield error(at, f"task '{name}': the workflows run one another without end: {chain}",
                        f"the way back: {back}")

    def _cycle(self, key: Key, loaded: Loaded, wf: Workflow, stack: list[Key]) -> list[tuple[Pos, Key]] | None:
        """The references (where each is, and the file it names) that lead from `key` back to a
        file on `stack`; None when there are none (or lint cannot read that far)."""
        if key in self.clean or len(stack) > MAX_DEPTH + 1:
            return None
        for i, task in enumerate(wf.tasks):
            if task.workflow is None:
                continue
            target = key_of(task.workflow, key)
            pos = wf.source.pos(("workflow", "tasks", i, "workflow"))
            if target in stack:
                return [(pos, target)]
            try:
                sub_loaded = self._read(task.workflow, target, loaded)
            except SourceError:
                continue
            sub = self.model_cache[target] if target in self.model_cache else self._model(target, sub_loaded)[0]
            if sub is None:
                continue
            found = self._cycle(target, sub_loaded, sub, [*stack, target])
            if found is not None:
                return [(pos, target), *found]
        self.clean.add(key)
        return None


def check(doc: Located, sources: Sources | None = None, loaded: Loaded | None = None) -> list[Diagnostic]:
    """Lint checks of `type: workflow` tasks and of `outputs:`.

    Without `sources`: what the file alone says (a task running the file it is in, expressions in
    `workflow:`, secrets given as inputs or outputs). With `sources` (and `loaded`, the file `doc`
    was read as, when it came through them): the sub-workflows are read and linted, literal inputs
    checked against their declared types, and chains of sub-workflows followed to find recursion."""
    return list(_Lint(doc, sources, loaded).run())


def sub_workflows(wf: Workflow, sources: Sources, loaded: Loaded | None = None) -> list[Workflow]:
    """The workflows `wf` runs as sub-runs, and theirs in turn (each once, at most MAX_DEPTH deep;
    files that cannot be read or do not lint are left out: the task fails when it runs)."""
    found: dict[Key, Workflow] = {}

    def walk(current: Workflow, key: Key, at: Loaded | None, depth: int) -> None:
        if depth >= MAX_DEPTH:
            return
        for task in current.tasks:
            if task.workflow is None:
                continue
            target = key_of(task.workflow, key)
            if target in found:
                continue
            try:
                sub_loaded = sources.read(task.workflow, relative_to=at)
            except SourceError:
                continue
            with _nested():
                sub, _diags, _text = lint_loaded(sub_loaded, sources)
            if sub is not None:
                found[target] = sub
                walk(sub, target, sub_loaded, depth + 1)

    walk(wf, root_key(wf.file, loaded), loaded, 0)
    return list(found.values())
