"""The storage task, in its container: store `data` or `files` at `destination`.

    python3 -m plugins.storage.src.run

Output: {"destination", "kind": filesystem|database|s3, "written": [paths, keys or the table],
"rows" (database)}.
"""

from __future__ import annotations

from typing import Any, Mapping

from plugins.sdk.runtime import PluginError, load_data, main

from . import common

_KEYS = {"data", "files", "destination", "filename", "format"}


def work(config: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise PluginError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(_KEYS))}")
    if ("data" in config) == ("files" in config):
        raise PluginError("give exactly one of data (a value, a workspace file or an upstream output to store) "
                          "and files (workspace globs to copy)")
    destination = config.get("destination")
    if destination is None or destination == "":
        raise PluginError("give a destination: a directory under the storage root (backups/${workflow.id}), "
                          "{database: URL, table: NAME} or {s3: {bucket: NAME, prefix: PATH}}")

    if "files" in config:
        for key in ("filename", "format"):
            if key in config:
                raise PluginError(f"{key} applies to data; files are copied as they are, keeping their paths")
        files = common.workspace_files(config["files"])
        return _dispatch(destination, files=files)

    data = load_data(config["data"], "data")
    return _dispatch(destination, data=data, filename=config.get("filename"), fmt=config.get("format"))


def _dispatch(destination: Any, *, files: list[common.SourceFile] | None = None, data: Any = None,
              filename: Any = None, fmt: Any = None) -> dict[str, Any]:
    if isinstance(destination, Mapping) and "database" in destination:
        from . import database

        extra = sorted(set(destination) - {"database", "table", "mode"})
        if extra:
            raise PluginError(f"destination: unknown key {', '.join(extra)} for a database (database, table, mode)")
        if files is not None:
            raise PluginError("files cannot go into a database; store them in a directory or an S3 bucket, "
                              "or give data (rows) instead")
        if filename is not None or fmt is not None:
            raise PluginError("filename and format do not apply to a database destination (rows go in columns)")
        return database.store(destination, data)

    name = common.check_filename(filename)
    s3_spec = destination.get("s3") if isinstance(destination, Mapping) and "s3" in destination else None
    s3_key = s3_spec.get("key") if isinstance(s3_spec, Mapping) else None
    body, content_type = None, None
    if files is None:
        if s3_key and filename is not None:
            raise PluginError("destination s3: the key names the object; filename applies with a prefix")
        # the format, unless given, comes from the name the data is stored under
        stored_as = str(s3_key).rsplit("/", 1)[-1] if s3_key else name
        kind = common.data_format(stored_as, fmt, data)
        body, content_type = common.encode(data, kind), common.CONTENT_TYPES[kind]

    if isinstance(destination, Mapping) and "s3" in destination:
        from . import s3

        extra = sorted(set(destination) - {"s3"})
        if extra:
            raise PluginError(f"destination: unknown key {', '.join(extra)} beside s3")
        return s3.store(s3_spec or {}, data=body, filename=name, content_type=content_type, files=files)

    if isinstance(destination, str):
        from . import filesystem

        return filesystem.store(destination, data=body, filename=name, files=files)

    raise PluginError("destination must be a directory under the storage root (backups/${workflow.id}), "
                      "{database: URL, table: NAME} or {s3: {bucket: NAME, prefix: PATH}}")


if __name__ == "__main__":
    main(work)
