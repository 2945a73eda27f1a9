"""What the destinations share: the storage root, the workspace files to copy, data as bytes."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from plugins.sdk.runtime import PluginError, dump, inside, workspace

ROOT_ENV = "CLARITY_STORAGE_ROOT"
DEFAULT_FILENAME = "data.json"
FORMATS = ("json", "yaml", "csv", "text")
_BY_EXTENSION = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".csv": "csv"}
CONTENT_TYPES = {"json": "application/json", "yaml": "application/yaml", "csv": "text/csv",
                 "text": "text/plain; charset=utf-8"}


def storage_root(why: str) -> Path:
    """The storage root mounted in the container ($CLARITY_STORAGE_ROOT), resolved."""
    value = os.environ.get(ROOT_ENV, "").strip()
    if not value:
        raise PluginError(
            f"{why} needs the storage root, but the controller has no storage root configured "
            "(setting `storage_root`), or the repository does not grant this plugin `host_paths`; "
            "ask the administrator to set it, or store into a PostgreSQL database or an S3 bucket")
    root = Path(value).resolve()
    if not root.is_dir():
        raise PluginError(f"the storage root {value} is not a directory in the container (is it mounted?)")
    return root


def under_root(root: Path, relative: str, what: str, example: str, shown: str | None = None) -> Path:
    """`relative` resolved under the storage root; `..`, an absolute path or a symlink that
    leads out is refused with a message that says what to give instead."""
    refusal = (f"{what} '{shown if shown is not None else relative}' is outside the storage root; "
               f"give a path inside it, like {example}")
    if "\x00" in relative or os.path.isabs(relative) or relative.startswith("~"):
        raise PluginError(refusal)
    try:
        return inside(root, relative, what)
    except PluginError:
        raise PluginError(refusal) from None


@dataclass(frozen=True)
class SourceFile:
    path: Path  # the file in the workspace (resolved)
    relative: str  # its path relative to the workspace root, kept at the destination


def workspace_files(patterns: Any) -> list[SourceFile]:
    """The workspace files the globs name (a directory: the files under it, .git left out), each
    once, sorted. A glob that leaves the workspace, or a match that is a symlink leading out of
    it, is refused; a glob that matches nothing too."""
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise PluginError('files: give a list of globs relative to the repository root, like ["dist/*.whl"]')
    ws = workspace().resolve()
    found: dict[str, SourceFile] = {}
    for pattern in patterns:
        if os.path.isabs(pattern) or ".." in PurePosixPath(pattern).parts or "\x00" in pattern:
            raise PluginError(f"files: '{pattern}' is outside the workspace; give a glob relative to the "
                              "repository root, like dist/*.whl")
        hits = 0
        for match in sorted(glob.glob(pattern, root_dir=ws, recursive=True)):
            resolved = inside(ws, match, "files")
            candidates = [match]
            if resolved.is_dir():
                candidates = []
                for dirpath, dirnames, filenames in os.walk(ws / match):
                    dirnames[:] = sorted(d for d in dirnames if d != ".git")
                    base = Path(dirpath).relative_to(ws)
                    candidates += [(base / f).as_posix() for f in sorted(filenames)]
            for rel in candidates:
                rel = PurePosixPath(rel).as_posix()
                source = inside(ws, rel, "files")
                if source.is_file():
                    found.setdefault(rel, SourceFile(source, rel))
                    hits += 1
        if not hits:
            raise PluginError(f"files: '{pattern}' matches no file in the workspace (globs are relative to the "
                              "repository root; a file an earlier task makes must exist before this task runs)")
    return [found[k] for k in sorted(found)]


def data_format(filename: str, fmt: Any, data: Any) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise PluginError(f"format '{fmt}' is not one of {', '.join(FORMATS)}")
        return str(fmt)
    by_ext = _BY_EXTENSION.get(PurePosixPath(filename).suffix.lower())
    if by_ext:
        return by_ext
    if isinstance(data, str):
        return "text"
    raise PluginError(f"cannot tell the format from the name '{filename}'; set format: json, yaml or csv "
                      "(or name the file .json, .yaml or .csv)")


def encode(data: Any, fmt: str) -> bytes:
    """`data` as the bytes of a file of format `fmt`."""
    if fmt == "text":
        if not isinstance(data, str):
            raise PluginError(f"format text needs the data to be a string, not {type(data).__name__}; "
                              "use json, yaml or csv")
        return data.encode("utf-8")
    try:
        return dump(data, fmt).encode("utf-8")
    except PluginError as e:
        raise PluginError(f"data as {fmt}: {e}") from None


def check_filename(value: Any) -> str:
    name = DEFAULT_FILENAME if value is None else value
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\x00" in name):
        raise PluginError(f"filename '{value}' must be a file name without a directory, like data.json")
    return name
