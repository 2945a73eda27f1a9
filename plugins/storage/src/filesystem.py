"""The file-system destination: a directory under the storage root."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from plugins.sdk.runtime import PluginError

from .common import SourceFile, storage_root, under_root

EXAMPLE = "backups/${workflow.id}"


def store(destination: str, *, data: bytes | None = None, filename: str | None = None,
          files: list[SourceFile] | None = None) -> dict[str, Any]:
    root = storage_root(f"destination '{destination}' (a directory)")
    directory = under_root(root, destination, "destination", EXAMPLE)
    # Every target is checked before anything is written: a refusal writes nothing.
    if files is None:
        assert data is not None and filename is not None
        plan: list[tuple[Path, Callable[[Any], None]]] = [
            (_target(root, destination, filename), lambda out: out.write(data))]
    else:
        plan = [(_target(root, destination, f.relative), _copier(f.path)) for f in files]
    if directory.exists() and not directory.is_dir():
        raise PluginError(f"destination '{destination}' is a file in the storage root, not a directory")
    for target, _ in plan:
        for parent in target.parents:
            if parent == root:
                break
            if parent.exists() and not parent.is_dir():
                raise PluginError(f"cannot write {target.relative_to(root)}: "
                                  f"{parent.relative_to(root)} is a file, not a directory")
        if target.is_dir():
            raise PluginError(f"cannot write {target.relative_to(root)}: it is a directory")
    written: list[str] = []
    for target, write in plan:
        shown = target.relative_to(root).as_posix()
        try:
            size = _write_atomically(target, write)
        except OSError as e:
            raise PluginError(f"could not write {shown} in the storage root: {e.strerror or e}"
                              + (f" (after writing {', '.join(written)})" if written else "")) from None
        print(f"wrote {shown} ({size} bytes)", flush=True)
        written.append(shown)
    what = "file" if len(written) == 1 else "files"
    print(f"stored {len(written)} {what} in {destination} (storage root)", flush=True)
    return {"destination": destination, "kind": "filesystem", "written": written}


def _target(root: Path, destination: str, relative: str) -> Path:
    return under_root(root, f"{destination.rstrip('/')}/{relative}", "destination", EXAMPLE)


def _copier(source: Path) -> Callable[[Any], None]:
    def copy(out: Any) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(out.name, source.stat().st_mode & 0o777)
    return copy


def _write_atomically(target: Path, write: Callable[[Any], None]) -> int:
    """Written to a temporary file beside `target`, then renamed over it: a reader sees the old
    file or the new one, never half of one (a symlink at `target` is replaced, not followed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target.stat().st_size
