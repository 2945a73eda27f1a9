"""Positions and diagnostics: what every check of a workflow file reports."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Pos:
    """A place in a source file; line and col are 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    pos: Pos
    message: str
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def format(self) -> str:
        text = f"{self.pos}: {self.severity}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def sort_key(self) -> tuple[str, int, int, int, str]:
        # errors before warnings at the same place; stable by message otherwise
        return (self.pos.file, self.pos.line, self.pos.col, 0 if self.is_error else 1, self.message)


def error(pos: Pos, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic("error", pos, message, hint)


def warning(pos: Pos, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic("warning", pos, message, hint)


def sort(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Sorted by position, duplicates (same place, same message) dropped."""
    seen: set[tuple[Severity, Pos, str]] = set()
    out: list[Diagnostic] = []
    for d in sorted(diagnostics, key=Diagnostic.sort_key):
        if (d.severity, d.pos, d.message) not in seen:
            seen.add((d.severity, d.pos, d.message))
            out.append(d)
    return out


def errors(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.is_error]


def warnings(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if not d.is_error]


def suggest(word: str, choices: Iterable[Any], cutoff: float = 0.6) -> str | None:
    """`did you mean 'X'?` for the choice closest to a mistyped word, if one is close enough."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=cutoff)
    return f"did you mean '{close[0]}'?" if close else None
