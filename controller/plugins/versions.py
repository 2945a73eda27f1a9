"""Version ranges of `type: NAME@RANGE` (npm/Cargo style, over PEP 440 versions).

- `^1`, `^1.2`, `^1.2.3`: compatible with (same major; for 0.x the same minor);
- `~1.2`, `~1.2.3`: same major and minor;
- `1.2.3` or `=1.2.3`: exactly; `1` / `1.2`: any 1.x / 1.2.x;
- PEP 440 specifiers as they are: `>=1.1,<2`.
"""

from __future__ import annotations

import re

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

_NUM = re.compile(r"\d+(\.\d+){0,2}")


class RangeError(ValueError):
    pass


def parse(text: str) -> SpecifierSet:
    raw = text.strip()
    try:
        if raw.startswith(("^", "~")) and _NUM.fullmatch(raw[1:]):
            parts = [int(x) for x in raw[1:].split(".")]
            low = ".".join(map(str, parts))
            high: list[int]
            if raw[0] == "~":
                high = [parts[0], (parts[1] if len(parts) > 1 else 0) + 1] if len(parts) > 1 else [parts[0] + 1]
            elif parts[0] > 0 or len(parts) == 1:
                high = [parts[0] + 1]
            elif len(parts) > 1 and parts[1] > 0 or len(parts) == 2:
                high = [0, parts[1] + 1]
            else:
                high = [0, 0, parts[2] + 1]
            return SpecifierSet(f">={low},<{'.'.join(map(str, high))}")
        bare = raw[1:] if raw.startswith("=") and not raw.startswith("==") else raw
        if _NUM.fullmatch(bare):
            return SpecifierSet(f"=={bare}" if bare.count(".") == 2 else f"=={bare}.*")
        return SpecifierSet(raw)
    except InvalidSpecifier:
        pass
    raise RangeError(f"'{text}' is not a version range; write ^1, ~1.2, 1.2.3 or >=1.1,<2")


def matches(version: str, text: str) -> bool:
    try:
        return parse(text).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False
