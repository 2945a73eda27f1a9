"""Glob patterns of branches, tags and paths, as the format documents them: `*` and `?` stay
within a path segment, `**` crosses segments (`**/` also matches no directory at all), `[...]`
is a character class. `fnmatch` alone lets `*` cross `/`, so `release/*` would match
`release/1.0/hotfix`."""

from __future__ import annotations

import functools
import re


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)) != -1:
            body = pattern[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def match(value: str, pattern: str) -> bool:
    """Does the whole of `value` match `pattern`?"""
    return _compile(pattern).fullmatch(value) is not None
