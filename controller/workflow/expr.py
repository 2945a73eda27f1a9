"""`${root.path}` expressions: finding, checking and rendering them. No code runs.

Grammar: `${` root (`.` part)+ `}` with parts of letters, digits, `_` and `-`
(so `tasks.validate-input.output` works; dots only separate parts). `$${` is a
literal `${`. A `${NAME}` without a dot (shell `${HOME}`) is not ours and is
left alone, as is anything whose first word is not followed by a dot-path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

ROOTS = ("tasks", "workflow", "git", "trigger", "inputs", "secrets", "env")
WORKFLOW_FIELDS = ("id", "name", "version", "file")
GIT_FIELDS = ("sha", "short_sha", "ref", "branch", "tag", "message", "author", "repo")
TASK_FIELDS = ("output", "outputs", "outcome")

_EXPR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_-]*)((?:\.[A-Za-z0-9_-]+)+)\s*")
_ROOT_DOT = re.compile(r"\s*(?:%s)\s*\." % "|".join(ROOTS))


class ExprError(ValueError):
    """A malformed expression; `offset` is where it starts in the text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Ref:
    root: str
    parts: tuple[str, ...]
    start: int  # offset of "${" in the text
    end: int  # offset just past "}"
    raw: str  # the "${...}" as written

    @property
    def path(self) -> str:
        return ".".join((self.root, *self.parts))

    @property
    def task(self) -> str | None:
        return self.parts[0] if self.root == "tasks" else None


def _tokens(text: str) -> Iterator[tuple[int, int, Ref | ExprError | None]]:
    """Yield (start, end, token) for each expression: a Ref, an ExprError for a malformed one
    (scanning goes on after its `}`: one mistake hides nothing else), None for a `$${` escape."""
    i = 0
    while (j := text.find("${", i)) != -1:
        if j > 0 and text[j - 1] == "$":
            yield j - 1, j + 2, None
            i = j + 2
            continue
        k = text.find("}", j + 2)
        content = text[j + 2:] if k == -1 else text[j + 2:k]
        match = _EXPR.fullmatch(content) if k != -1 else None
        if match:
            parts = tuple(match.group(2)[1:].split("."))
            yield j, k + 1, Ref(match.group(1), parts, j, k + 1, text[j:k + 1])
            i = k + 1
        elif _ROOT_DOT.match(content):  # meant as ours, but not well formed
            shown = text[j:k + 1] if k != -1 else text[j:j + 40]
            reason = "unterminated expression" if k == -1 else "malformed expression"
            yield j, len(text) if k == -1 else k + 1, ExprError(
                f"{reason} {shown!r}: expected ${{root.name}} with parts of letters, digits, '_', '-'", j)
            if k == -1:
                return
            i = k + 1
        else:
            i = j + 2


def _scan(text: str) -> Iterator[tuple[int, int, Ref | None]]:
    """Yield (start, end, ref) for each expression, ref None for a `$${` escape; raise the first
    ExprError."""
    for start, end, token in _tokens(text):
        if isinstance(token, ExprError):
            raise token
        yield start, end, token


def find(text: str) -> list[Ref]:
    """All expressions in `text`, in order. Raises ExprError for a malformed one."""
    return [ref for _, _, ref in _scan(text) if ref is not None]


def find_all(text: str) -> tuple[list[Ref], list[ExprError]]:
    """The well-formed expressions of `text` and the malformed ones, each in order (for lint,
    which reports them all)."""
    tokens = [token for _, _, token in _tokens(text) if token is not None]
    return [t for t in tokens if isinstance(t, Ref)], [t for t in tokens if isinstance(t, ExprError)]


def render(text: str, lookup: Callable[[Ref], str]) -> str:
    """`text` with every expression replaced by `lookup(ref)` and `$${` turned into `${`."""
    out: list[str] = []
    i = 0
    for start, end, ref in _scan(text):
        out.append(text[i:start])
        out.append("${" if ref is None else lookup(ref))
        i = end
    out.append(text[i:])
    return "".join(out)


def malformed_hint(error: ExprError) -> str:
    """How to write what a malformed expression seems to mean."""
    if "|" in error.message or "(" in error.message:
        return ("an expression only names a value: no filters, operators or calls; change the value in the "
                "command instead (e.g. \"$(echo \"$X\" | tr a-z A-Z)\")")
    if error.message.startswith("unterminated"):
        return "close it with '}'; a literal ${ is written $${"
    return "e.g. ${git.sha} or ${tasks.build.outputs.file}; a literal ${ is written $${"


def problem(ref: Ref) -> str | None:
    """Why `ref` cannot be resolved by shape alone (roots and fields), or None."""
    if ref.root not in ROOTS:
        return f"unknown expression root '{ref.root}' in {ref.raw}; known roots: {', '.join(ROOTS)}"
    p = ref.parts
    if ref.root == "tasks":
        if len(p) == 2 and p[1] in ("output", "outcome") or len(p) == 3 and p[1] == "outputs":
            return None
        return f"{ref.raw}: use tasks.NAME.output, tasks.NAME.outputs.KEY or tasks.NAME.outcome"
    if ref.root == "workflow" and (len(p) != 1 or p[0] not in WORKFLOW_FIELDS):
        return f"{ref.raw}: workflow has {', '.join(WORKFLOW_FIELDS)}"
    if ref.root == "git" and (len(p) != 1 or p[0] not in GIT_FIELDS):
        return f"{ref.raw}: git has {', '.join(GIT_FIELDS)}"
    if ref.root in ("inputs", "secrets", "env") and len(p) != 1:
        return f"{ref.raw}: use {ref.root}.NAME"
    return None


def strings(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string in nested dicts/lists, with its path (mapping keys are not values)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, path + (index,))


def references_tasks(value: Any) -> set[str]:
    """Names of the tasks referenced by `${tasks.NAME...}` anywhere in `value`."""
    names: set[str] = set()
    for _, text in strings(value):
        refs, _malformed = find_all(text)  # lint reports those; a dependency is not made of them
        names.update(ref.parts[0] for ref in refs if ref.root == "tasks")
    return names
