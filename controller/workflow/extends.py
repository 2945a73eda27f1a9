"""Workflow inheritance: `extends:` merges a base workflow under the file that names it.

Pure functions over `Located` documents: every merged value keeps the position of the file it came
from (a `Pos` carries its file), so diagnostics point into the base where a base's value is wrong,
and `explain` can say where each value came from.

The rules (docs/workflow-format.md, "Inheritance"):
- maps merge deeply, the child's value winning for a key both have;
- `tasks` merge by `name`: a child task with the name of a base task overrides the fields it sets
  (its maps - env, config, resources, when - merge deeply; its lists are replaced); the child's
  other tasks come after the base's, in the child's order; `{name: X, remove: true}` drops the
  base's task X (an error when the base has none);
- every other list (`triggers`, `commands`, `needs`, ...) is replaced, never merged;
- `extends` itself is not in the result.

A base may be partial (only the resolved workflow must validate) and may extend another (at most
MAX_DEPTH bases); `resolve` reads the chain through `Sources` and reports a cycle, a missing file
or ref, or a chain too long at the child's `extends`, naming the base's too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from .diagnostics import Diagnostic, Pos, error
from .load import JsonPath, Located, load
from .sources import FileRef, Loaded, SourceError, Sources, read_hint

if TYPE_CHECKING:
    from .model import Workflow

MAX_DEPTH = 5  # bases in one chain
EXTENDS: JsonPath = ("workflow", "extends")
TASKS: JsonPath = ("workflow", "tasks")
_REF_KEYS = ("repo", "ref", "path")


@dataclass
class Resolved(Located):
    """The workflow after inheritance, with what went into it."""

    bases: tuple[Loaded, ...] = ()  # the bases read, nearest first
    text: str | None = None  # the resolved workflow as YAML; None: no base (the file's own text is it)


# -- merging ---------------------------------------------------------------------------------------


class _Merger:
    """Builds one merged document, copying the positions of every value it takes."""

    def __init__(self, file: str, *, extending: bool = True) -> None:
        self.out = Located(file)
        self.diags: list[Diagnostic] = []
        self.extending = extending  # False: the child extends nothing (a `remove` is a mistake)

    def meta(self, src: Located, sp: JsonPath, op: JsonPath) -> None:
        if sp in src.positions:
            self.out.positions[op] = src.positions[sp]
        if sp in src.key_positions:
            self.out.key_positions[op] = src.key_positions[sp]
        if sp in src.scalars:
            self.out.scalars[op] = src.scalars[sp]

    def copy(self, src: Located, sp: JsonPath, value: Any, op: JsonPath) -> Any:
        self.meta(src, sp, op)
        if isinstance(value, dict):
            return {k: self.copy(src, sp + (k,), v, op + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.copy(src, sp + (i,), v, op + (i,)) for i, v in enumerate(value)]
        return value

    def merge(self, base: Located, bp: JsonPath, b: Any, child: Located, cp: JsonPath, c: Any, op: JsonPath) -> Any:
        if op == TASKS and isinstance(c, list):
            return self.tasks(base, bp, b if isinstance(b, list) else [], child, cp, c, op)
        if not (isinstance(b, dict) and isinstance(c, dict)):
            return self.copy(child, cp, c, op)  # the child's value replaces (lists, scalars, a change of kind)
        self.meta(child, cp, op)
        out: dict[str, Any] = {}
        for key, value in b.items():
            if op + (key,) == EXTENDS:
                continue
            if key in c:
                out[key] = self.merge(base, bp + (key,), value, child, cp + (key,), c[key], op + (key,))
            else:
                out[key] = self.copy(base, bp + (key,), value, op + (key,))
        for key, value in c.items():
            if key not in b and op + (key,) != EXTENDS:
                # a map is merged with an empty one: down to the tasks, whose `remove` needs a look
                empty: dict[str, Any] | None = {} if isinstance(value, dict) else None
                out[key] = self.merge(base, bp + (key,), empty, child, cp + (key,), value, op + (key,))
        return out

    def tasks(self, base: Located, bp: JsonPath, b: list[Any], child: Located, cp: JsonPath, c: list[Any],
              op: JsonPath) -> list[Any]:
        index: dict[str, int] = {}
        for i, task in enumerate(b):
            if isinstance(task, dict) and isinstance(task.get("name"), str):
                index.setdefault(task["name"], i)
        overrides: dict[int, int] = {}  # base task -> the child task that overrides it
        removed: set[int] = set()
        added: list[int] = []
        for j, task in enumerate(c):
            name = task.get("name") if isinstance(task, dict) else None
            if isinstance(task, dict) and "remove" in task and not self.extending:
                self.diags.append(error(child.key_pos(cp + (j, "remove")), "'remove' is only valid in a file that "
                                        "extends another", "add `extends:` naming the base that defines the task, "
                                        "or delete the task"))
            elif isinstance(task, dict) and "remove" in task:
                self.remove(child, cp + (j,), task, index, removed, base.file)
            elif isinstance(name, str) and name in index and index[name] not in removed | set(overrides):
                overrides[index[name]] = j
            else:
                added.append(j)  # new (or a second entry of a name: lint reports the duplicate)
        self.meta(child, cp, op)
        out: list[Any] = []
        for i, task in enumerate(b):
            if i in removed:
                continue
            k = len(out)
            if i in overrides:
                j = overrides[i]
                out.append(self.merge(base, bp + (i,), task, child, cp + (j,), c[j], op + (k,)))
            else:
                out.append(self.copy(base, bp + (i,), task, op + (k,)))
        for j in added:
            out.append(self.copy(child, cp + (j,), c[j], op + (len(out),)))
        return out

    def remove(self, child: Located, path: JsonPath, task: dict[str, Any], index: dict[str, int],
               removed: set[int], base_file: str) -> None:
        name = task.get("name")
        others = [k for k in task if k not in ("name", "remove")]
        if task["remove"] is not True:
            self.diags.append(error(child.pos(path + ("remove",)), "'remove' must be true",
                                    "to keep the base's task, leave 'remove' out"))
        elif others:
            self.diags.append(error(child.key_pos(path + (others[0],)),
                                    f"a task with 'remove: true' takes no other keys (found '{others[0]}')",
                                    "to replace the task, remove it here and add a task under another name"))
        elif not isinstance(name, str):
            self.diags.append(error(child.pos(path), "'remove: true' needs the 'name' of the base's task to remove"))
        elif name not in index:
            known = ", ".join(index) or "none"
            self.diags.append(error(child.pos(path + ("name",)),
                                    f"cannot remove task '{name}': the base ({base_file}) has no such task",
                                    f"the base's tasks: {known}"))
        elif index[name] in removed:
            self.diags.append(error(child.pos(path + ("name",)), f"task '{name}' is removed twice"))
        else:
            removed.add(index[name])


def merge(base: Located, child: Located) -> tuple[Located, list[Diagnostic]]:
    """`child` over `base` (whose own `extends` is resolved already): the merged document, named
    after the child, each value at the position of the file it came from."""
    m = _Merger(child.file)
    m.out.data = m.merge(base, (), base.data, child, (), child.data, ())
    return m.out, m.diags


def unextended(doc: Located) -> tuple[Located, list[Diagnostic]]:
    """A file that extends nothing: itself, but an error for (and without) each task with `remove:`."""
    tasks = _get(doc.data, TASKS)
    if not any(isinstance(task, dict) and "remove" in task for task in (tasks if isinstance(tasks, list) else [])):
        return doc, []
    m = _Merger(doc.file, extending=False)
    m.out.data = m.merge(Located(doc.file, {}), (), {}, doc, (), doc.data, ())
    return m.out, m.diags


# -- reading the chain -----------------------------------------------------------------------------


def _get(data: Any, path: JsonPath) -> Any:
    for part in path:
        if isinstance(data, dict) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def extends_of(doc: Located) -> tuple[FileRef | None, list[Diagnostic]]:
    """The base `doc` names (None: none), or the errors of an `extends` of the wrong shape."""
    wf = doc.data.get("workflow") if isinstance(doc.data, dict) else None
    if not isinstance(wf, dict) or "extends" not in wf:
        return None, []
    value, pos = wf["extends"], doc.pos(EXTENDS)
    if isinstance(value, str) and value.strip():
        return FileRef(value.strip()), []
    if not isinstance(value, dict):
        return None, [error(pos, "'extends': expected a file (base.yaml, or a path from the repository root) "
                                 "or {repo, ref, path}", "e.g. extends: {repo: acme/ci-templates, ref: v2, path: python.yaml}")]
    diags = [error(doc.key_pos(EXTENDS + (k,)), f"unknown key '{k}' in 'extends'", "allowed keys: repo, ref, path")
             for k in value if k not in _REF_KEYS]
    for key in _REF_KEYS:
        if key in value and not (isinstance(value[key], str) and value[key].strip()):
            diags.append(error(doc.pos(EXTENDS + (key,)), f"'extends': '{key}' must be a non-empty string"))
    if "path" not in value:
        diags.append(error(pos, "'extends' needs a 'path'", "the base's file in that repository, e.g. path: python.yaml"))
    if "repo" in value and "ref" not in value:
        diags.append(error(pos, "'extends' names a repository without a 'ref'",
                           "pin a tag, branch or commit: ref: v2 (a base of another repository is read at that ref)"))
    if "ref" in value and "repo" not in value:
        diags.append(error(doc.key_pos(EXTENDS + ("ref",)), "'ref' needs 'repo' in 'extends'",
                           "a base in this repository is read at the same commit; name the repository to pin another"))
    if diags:
        return None, diags
    return FileRef(value["path"].strip(), value.get("repo"), value.get("ref")), []


def _identity(loaded: Loaded | None, doc: Located) -> tuple[str | None, str | None, str]:
    if loaded is None:
        return None, None, doc.file
    return loaded.repo, loaded.commit, loaded.ref.repo_path.removeprefix("./")


def _cannot_read_here(pos: Pos, ref: FileRef) -> Diagnostic:
    return error(pos, f"the base {ref.shown()} cannot be read here: no repository to read it from",
                 "lint the file inside its git repository (clarity lint, clarity run), or on the controller")


def resolve(doc: Located, sources: Sources | None, loaded: Loaded | None = None) -> tuple[Resolved | None, list[Diagnostic]]:
    """The workflow of `doc` after inheritance (None when a base cannot be had), and the problems
    of its chain. `loaded` is `doc`'s own file as read (relative bases are read next to it)."""
    ref, diags = extends_of(doc)
    if diags:
        return None, diags
    if ref is None:
        plain, problems = unextended(doc)
        return _wrap(plain, (), None), problems
    root_pos = doc.pos(EXTENDS)
    if sources is None:
        return None, [_cannot_read_here(root_pos, ref)]
    chain: list[tuple[Located, Loaded | None]] = [(doc, loaded)]
    seen = {_identity(loaded, doc): 0}
    while ref is not None:
        here_doc, here_loaded = chain[-1]
        here_pos = here_doc.pos(EXTENDS)
        via = "" if len(chain) == 1 else f" (the base {here_doc.file} extends {ref.shown()} at {here_pos})"
        if len(chain) > MAX_DEPTH:
            path = " -> ".join(d.file for d, _ in chain) + f" -> {ref.shown()}"
            return None, [error(root_pos, f"more than {MAX_DEPTH} bases: {path}{via}",
                                f"a chain of extends may have at most {MAX_DEPTH} bases")]
        try:
            base_loaded = sources.read(ref, relative_to=here_loaded)
        except SourceError as exc:
            return None, [error(root_pos, f"cannot read the base {ref.shown()}: {exc}{via}", read_hint(ref, exc))]
        key = _identity(base_loaded, here_doc)
        if key in seen:
            path = " -> ".join(d.file for d, _ in chain) + f" -> {base_loaded.file}"
            return None, [error(root_pos, f"extends makes a cycle: {path}{via}",
                                "a base cannot extend a file that extends it")]
        seen[key] = len(chain)
        base, problems = load(base_loaded.text, base_loaded.file)
        if base is None or any(d.is_error for d in problems):
            return None, problems + [error(root_pos, f"the base {base_loaded.file} is not valid YAML{via}")]
        chain.append((base, base_loaded))
        ref, problems = extends_of(base)
        if problems:
            return None, problems
    merged, found = unextended(chain[-1][0])
    for child, _ in reversed(chain[:-1]):
        merged, problems = merge(merged, child)
        found.extend(problems)
    bases = tuple(base for _, base in chain[1:] if base is not None)
    return _wrap(merged, bases, dump(merged.data)), found


def _wrap(doc: Located, bases: tuple[Loaded, ...], text: str | None) -> Resolved:
    return Resolved(file=doc.file, data=doc.data, positions=doc.positions, key_positions=doc.key_positions,
                    scalars=doc.scalars, bases=bases, text=text)


# -- what a run keeps ------------------------------------------------------------------------------


def workflow_text(wf: Workflow, own_text: str) -> str:
    """What a run stores as its workflow: the resolved workflow when the file extends another
    (re-linted later without any source), else the file's own text."""
    source = wf.source
    text = source.text if isinstance(source, Resolved) else None
    return text if text is not None else own_text


def bases(wf: Workflow) -> tuple[Loaded, ...]:
    """The bases `wf` was resolved with, nearest first."""
    return wf.source.bases if isinstance(wf.source, Resolved) else ()


def files(wf: Workflow, own: Loaded | None) -> tuple[dict[str, Any], ...]:
    """What a run records of every file that went into `wf` (`Loaded.record`): `own` (the file
    itself, as read), then its bases."""
    return tuple(f.record() for f in ((own,) if own is not None else ()) + bases(wf))


# -- showing it ------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump(data: Any) -> str:
    """The resolved document as YAML (loads back to the same data)."""
    header = "# the workflow as resolved: the file merged over its bases\n"
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 16)


def _scalar(value: Any) -> str:
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        return json.dumps(value, ensure_ascii=False)  # a double-quoted YAML string
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1 << 16)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def explain(doc: Located) -> str:
    """The resolved workflow as YAML, each line ending with where its value came from
    (`# .clarity/base.yaml:12`, `# acme/ci-templates@v2:.clarity/python.yaml:7`)."""
    lines: list[str] = []

    def where(path: JsonPath, key: bool) -> str:
        pos = doc.key_positions.get(path) if key else None
        pos = pos or doc.positions.get(path) or doc.pos(path)
        return f"  # {pos.file}:{pos.line}"

    def node(value: Any, path: JsonPath, indent: str, lead: str) -> None:
        """`lead`: what starts the first line ('key: ' or '- ')."""
        if isinstance(value, dict) and value:
            first = True
            for k, v in value.items():
                prefix = lead if first else indent
                first = False
                p = path + (k,)
                key = _scalar(k) + ":"
                if isinstance(v, (dict, list)) and v:
                    lines.append(f"{prefix}{key}{where(p, True)}")
                    node(v, p, indent + "  ", indent + "  ")
                else:
                    lines.append(f"{prefix}{key} {_scalar(v)}{where(p, False)}")
        elif isinstance(value, list) and value:
            for i, item in enumerate(value):
                p = path + (i,)
                if isinstance(item, dict) and item:
                    node(item, p, indent + "  ", (lead if i == 0 else indent) + "- ")
                elif isinstance(item, list) and item:
                    lines.append(f"{lead if i == 0 else indent}-{where(p, False)}")
                    node(item, p, indent + "  ", indent + "  ")
                else:
                    lines.append(f"{lead if i == 0 else indent}- {_scalar(item)}{where(p, False)}")
        else:
            lines.append(f"{lead}{_scalar(value)}{where(path, False)}")

    node(doc.data, (), "", "")
    return "\n".join(lines) + "\n"
