from __future__ import annotations

import pytest

from runner.masking import MASK, LineSplitter, Masker


@pytest.mark.parametrize(
    "secrets,line,expected",
    [
        (["hunter22"], "password is hunter22!", f"password is {MASK}!"),
        (["hunter22"], "hunter22hunter22 and hunter22", f"{MASK} and {MASK}"),
        (["abc123", "123xyz"], "token abc123xyz end", f"token {MASK} end"),  # overlapping secrets
        (["secret", "secretive"], "a secretive secret", f"a {MASK} {MASK}"),  # nested: longest wins
        (["ab", "x", ""], "ab x", "ab x"),  # too short to mask: documented
        (["abc"], "abc", MASK),
        ([], "nothing to hide", "nothing to hide"),
        (["a.b*c"], "regex a.b*c chars", f"regex {MASK} chars"),  # literal, not a pattern
    ],
)
def test_mask(secrets: list[str], line: str, expected: str) -> None:
    assert Masker(secrets).mask(line) == expected


def test_multiline_secret_each_line_masked() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkq\n  hkiG9w0BAQEFAASC  \n\n}\n-----END KEY-----\n"
    m = Masker([key])
    assert m.mask("MIIEvQIBADANBgkq") == MASK
    assert m.mask("    hkiG9w0BAQEFAASC") == f"    {MASK}"  # re-indented line
    assert m.mask("-----END KEY-----") == MASK
    assert m.mask("}") == "}"  # short lines of a secret are not masked everywhere
    assert m.mask(key) .count("MIIE") == 0  # whole value (e.g. an output) masked too


def test_splitter_lines_and_partial() -> None:
    s = LineSplitter()
    assert s.feed(b"one\r\ntw") == ["one"]
    assert s.feed(b"o\n\nthr") == ["two", ""]
    assert s.feed(b"ee") == []
    assert s.flush() == ["three"]
    assert s.flush() == []


def test_splitter_multibyte_split_across_chunks() -> None:
    s = LineSplitter()
    data = "héllo €\n".encode()
    assert s.feed(data[:2]) == []
    assert s.feed(data[2:]) == ["héllo €"]
    assert LineSplitter().feed(b"bad \xff byte\n") == ["bad \ufffd byte"]


def test_secret_split_across_chunks_is_masked() -> None:
    m, s = Masker(["s3cr3t-value"]), LineSplitter()
    out = [m.mask(line) for chunk in (b"token=s3c", b"r3t-va", b"lue\nnext\n") for line in s.feed(chunk)]
    assert out == [f"token={MASK}", "next"]
