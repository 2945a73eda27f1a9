"""Safe YAML loading that remembers where every value came from.

PyYAML's constructors drop positions and silently apply YAML 1.1 rules
(`on:` becomes the key True, a repeated key wins over the first). We compose
the node tree with the SafeLoader and build plain JSON-like values ourselves,
recording a `Pos` per path and the source text of every scalar, so later
checks can point at the exact place and say what YAML did to the text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .diagnostics import Diagnostic, Pos, error

PathKey = Union[str, int]
JsonPath = tuple[PathKey, ...]

_TAG = "tag:yaml.org,2002:"
_MAX_NODES = 200_000  # alias expansion guard ("billion laughs")


@dataclass(frozen=True)
class Scalar:
    """A scalar as written: its text (without quotes), whether it was unquoted, its YAML tag."""

    text: str
    plain: bool
    tag: str  # short form: str, int, float, bool, null, timestamp, ...
    style: str | None = None  # None (plain), "'", '"', "|" or ">"


@dataclass
class Located:
    """A loaded document: plain data plus the source position of every value and key."""

    file: str
    data: Any = None
    positions: dict[JsonPath, Pos] = field(default_factory=dict)
    key_positions: dict[JsonPath, Pos] = field(default_factory=dict)
    scalars: dict[JsonPath, Scalar] = field(default_factory=dict)

    def pos(self, path: JsonPath = ()) -> Pos:
        """Position of the value at `path`, or of its nearest recorded ancestor."""
        for i in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:i]))
            if found is not None:
                return found
        return Pos(self.file, 1, 1)

    def key_pos(self, path: JsonPath) -> Pos:
        """Position of the mapping key that ends `path` (falls back to the value)."""
        return self.key_positions.get(tuple(path)) or self.pos(path)

    def scalar(self, path: JsonPath) -> Scalar | None:
        return self.scalars.get(tuple(path))

    def at(self, path: JsonPath, offset: int) -> Pos:
        """The position of character `offset` of the string at `path`, when the source allows it
        (else of the string): an expression inside a command, a field of a cron expression."""
        pos, s = self.pos(path), self.scalar(path)
        if s is None or s.style not in (None, "'", '"') or "\n" in s.text or "\\" in s.text or "''" in s.text:
            return pos  # escapes or folding: offsets in the value are not columns in the file
        return Pos(pos.file, pos.line, pos.col + offset + (0 if s.style is None else 1))

    def get(self, path: JsonPath) -> Any:
        value = self.data
        for part in path:
            value = value[part]
        return value


def _pos(file: str, node: Node) -> Pos:
    return Pos(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _short(tag: str) -> str:
    return tag[len(_TAG):] if tag.startswith(_TAG) else tag


def _shown(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


class _Builder:
    def __init__(self, file: str) -> None:
        self.doc = Located(file)
        self.diags: list[Diagnostic] = []
        self._constructor = SafeConstructor()
        self._active: set[int] = set()
        self._count = 0

    def build(self, node: Node, path: JsonPath) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise _TooLarge()
        self.doc.positions.setdefault(path, _pos(self.doc.file, node))
        if id(node) in self._active:
            self.diags.append(error(_pos(self.doc.file, node), "recursive YAML alias"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, ScalarNode):
                return self._scalar(node, path)
            if isinstance(node, SequenceNode):
                self._check_tag(node, "seq")
                return [self.build(child, path + (i,)) for i, child in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            self._check_tag(node, "map")
            return self._mapping(node, path)
        finally:
            self._active.discard(id(node))

    def _check_tag(self, node: Node, expected: str) -> None:
        if _short(node.tag) != expected:
            self.diags.append(error(_pos(self.doc.file, node), f"unsupported YAML tag '{_shown(node.tag)}'"))

    def _scalar(self, node: ScalarNode, path: JsonPath) -> Any:
        tag = _short(node.tag)
        self.doc.scalars[path] = Scalar(node.value, node.style is None, tag, node.style)
        c = self._constructor
        if tag == "str" or tag == "timestamp":  # a date stays the text that was written
            return node.value
        if tag == "null":
            return None
        if tag == "bool":
            return c.construct_yaml_bool(node)
        if tag == "int":
            return c.construct_yaml_int(node)
        if tag == "float":
            return c.construct_yaml_float(node)
        self.diags.append(error(_pos(self.doc.file, node), f"unsupported YAML tag '{_shown(node.tag)}'"))
        return node.value

    def _mapping(self, node: MappingNode, path: JsonPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_seen: dict[str, Pos] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            kpos = _pos(self.doc.file, key_node)
            if _short(key_node.tag) == "merge":
                merges.append(value_node)
                continue
            key = self._key(key_node, kpos)
            if key is None:
                continue
            if key in first_seen:
                self.diags.append(error(kpos, f"duplicate key '{key}' (first defined at {first_seen[key]})",
                                        "YAML keeps only the last one; remove or rename one of them"))
                continue
            first_seen[key] = kpos
            self.doc.key_positions[path + (key,)] = kpos
            out[key] = self.build(value_node, path + (key,))
        for merge in merges:  # `<<: *base`: explicit keys win, earlier merges win
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.diags.append(error(_pos(self.doc.file, source), "'<<' must merge a mapping"))
                    continue
                merged = self.build(source, path + ("<<",))
                for key, value in merged.items():
                    out.setdefault(key, value)
        return out

    def _key(self, node: Node, kpos: Pos) -> str | None:
        if not isinstance(node, ScalarNode):
            self.diags.append(error(kpos, "a mapping key must be a plain string"))
            return None
        tag = _short(node.tag)
        if tag == "bool":
            value = self._constructor.construct_yaml_bool(node)
            self.diags.append(error(kpos, f"key '{node.value}' is read by YAML as the boolean {str(value).lower()}",
                                    f'quote it: "{node.value}"'))
        elif tag == "null":
            self.diags.append(error(kpos, f"key '{node.value}' is read by YAML as null", f'quote it: "{node.value}"'))
        elif tag not in ("str", "int", "float", "timestamp"):
            self.diags.append(error(kpos, f"unsupported YAML tag '{_shown(node.tag)}' on a key"))
        return str(node.value)  # numbers as keys: keep the text as written


class _TooLarge(Exception):
    pass


def _syntax_error(file: str, exc: yaml.YAMLError) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    pos = Pos(file, mark.line + 1, mark.column + 1) if mark is not None else Pos(file, 1, 1)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if "'\\t'" in problem:
        return error(pos, "tab character in indentation", "YAML indentation must use spaces, not tabs")
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    return error(pos, message)


def load(text: str, file: str) -> tuple[Located | None, list[Diagnostic]]:
    """Parse `text`; never raises for bad input: problems come back as diagnostics."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        return None, [_syntax_error(file, exc)]
    start = Pos(file, 1, 1)
    if root is None:
        return None, [error(start, "the file is empty", "a workflow file starts with 'workflow:'")]
    builder = _Builder(file)
    try:
        builder.doc.data = builder.build(root, ())
    except _TooLarge:
        return None, [error(start, "the document is too large (alias expansion?)")]
    if not isinstance(builder.doc.data, dict):
        kind = "a list" if isinstance(builder.doc.data, list) else "a single value"
        builder.diags.append(error(_pos(file, root), f"the top level must be a mapping, got {kind}",
                                   "a workflow file starts with 'workflow:'"))
        return None, builder.diags
    return builder.doc, builder.diags
