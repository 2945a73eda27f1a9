"""Secret masking of log streams, done on the runner before a line leaves the machine.

Rules (`Masker`):
- Every occurrence of every secret becomes `********`.
- A multi-line secret (a PEM key, a JSON credential) is also masked line by line, each line
  stripped of surrounding whitespace, because logs are masked one line at a time and a tool may
  print it re-indented.
- Needles shorter than MIN_LEN (3) characters are ignored, whole secrets and secret lines alike:
  masking `}` or `ab` everywhere would shred every log while hiding nothing worth hiding.
  Empty and whitespace-only lines of a secret are skipped for the same reason.
- Overlapping and adjacent occurrences (of one secret or of several) are merged and masked as one
  span, so no fragment of either secret survives.

`LineSplitter` turns raw byte chunks into complete lines before masking, so a secret split across
two chunks is still seen whole.
"""

from __future__ import annotations

from typing import Any, Iterable

MASK = "********"
MIN_LEN = 3
MAX_LINE_BYTES = 1 << 20
"""A "line" longer than this is emitted in pieces (memory bound); a secret straddling such a
forced break could escape, which is accepted for 1 MiB lines."""


class Masker:
    def __init__(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_LEN:
                needles.add(secret)
            if "\n" in secret or "\r" in secret:
                needles.update(ln.strip() for ln in secret.splitlines() if len(ln.strip()) >= MIN_LEN)
        # Longest first: a long secret's span is found before the shorter ones inside it.
        self._needles = sorted(needles, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._needles)

    def mask(self, text: str) -> str:
        if not self._needles:
            return text
        spans: list[tuple[int, int]] = []
        for needle in self._needles:
            start = text.find(needle)
            while start != -1:
                spans.append((start, start + len(needle)))
                start = text.find(needle, start + 1)
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        pos = 0
        cur_start, cur_end = spans[0]
        for s, e in spans[1:]:
            if s <= cur_end:  # overlapping or adjacent: one span
                cur_end = max(cur_end, e)
                continue
            out += [text[pos:cur_start], MASK]
            pos = cur_end
            cur_start, cur_end = s, e
        out += [text[pos:cur_start], MASK, text[cur_end:]]
        return "".join(out)


    def mask_value(self, value: Any) -> Any:
        """A JSON value with every string in it (keys too) masked."""
        if not self._needles:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, list):
            return [self.mask_value(v) for v in value]
        if isinstance(value, dict):
            return {self.mask(k): self.mask_value(v) for k, v in value.items()}
        return value


class LineSplitter:
    """Raw byte chunks in, complete decoded lines out (without their line ending).

    Decoding is per complete line (utf-8, errors=replace), so a multi-byte character split
    across chunks decodes correctly. `\\r\\n` is treated as `\\n`. Call `flush()` at the end
    of the stream for a final line without a newline.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += chunk
        lines: list[str] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl == -1:
                break
            lines.append(_decode(self._buf[:nl]))
            del self._buf[: nl + 1]
        while len(self._buf) > MAX_LINE_BYTES:
            lines.append(_decode(self._buf[:MAX_LINE_BYTES]))
            del self._buf[:MAX_LINE_BYTES]
        return lines

    def flush(self) -> list[str]:
        if not self._buf:
            return []
        line = _decode(self._buf)
        self._buf.clear()
        return [line]


def _decode(raw: bytes | bytearray) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return bytes(raw).decode("utf-8", errors="replace")
