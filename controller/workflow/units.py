"""Durations and sizes as written in workflow files.

The regular expressions are shared with the JSON Schema (ECMA-262 compatible),
so an editor and the linter accept exactly the same spellings.
"""

from __future__ import annotations

import re

DURATION_PATTERN = r"^(?=[0-9])([0-9]+(\.[0-9]+)?|([0-9]+(\.[0-9]+)?h)?([0-9]+(\.[0-9]+)?m)?([0-9]+(\.[0-9]+)?s)?)$"
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?([kKmMgGtT]([iI]?[bB])?|[bB])?$"

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([hms])")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
# Binary multiples for every spelling, as Docker does ("512m" == "512MiB" == "512MB").
_BYTES = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_duration(value: str | int | float) -> float:
    """'30s', '5m', '1h30m', '1.5h', '90' or 90 -> seconds (> 0). Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"a duration must be a string or a number of seconds, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text or not re.fullmatch(DURATION_PATTERN, text):
            raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 5m, 1h30m or a number of seconds")
        if re.fullmatch(r"[0-9.]+", text):
            seconds = float(text)
        else:
            seconds = sum(float(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    else:
        seconds = float(value)
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def parse_size(value: str | int) -> int:
    """'512m', '1g', '256MiB', '1024' or 1024 -> bytes (> 0). Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"a size must be a string like 512m or a number of bytes, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        text = value.strip()
        if not re.fullmatch(SIZE_PATTERN, text):
            raise ValueError(f"invalid size {value!r}: use e.g. 512m, 1g, 256MiB or a number of bytes")
        match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
        assert match is not None
        number, unit = match.groups()
        size = int(float(number) * _BYTES[unit[:1].lower()])
    if size <= 0:
        raise ValueError(f"a size must be positive, got {value!r}")
    return size
