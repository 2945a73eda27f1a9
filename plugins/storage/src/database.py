"""The database destination: rows into a table (SQLite under the storage root, or PostgreSQL)."""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

from plugins.sdk.runtime import PluginError

from .common import storage_root, under_root

TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
MODES = ("append", "replace")


def store(dest: Mapping[str, Any], data: Any) -> dict[str, Any]:
    import sqlalchemy as sa

    table_name, mode = dest.get("table"), dest.get("mode", "append")
    if not isinstance(table_name, str) or not TABLE.fullmatch(table_name):
        raise PluginError(f"destination table '{table_name}' is not a table name: letters, digits and _ only, "
                          "starting with a letter or _, at most 63 characters (like build_results)")
    if mode not in MODES:
        raise PluginError(f"destination mode '{mode}' is not one of {', '.join(MODES)}")
    url = _url(dest.get("database"))
    shown = sa.engine.make_url(str(dest["database"]).strip()).render_as_string(hide_password=True)  # as given
    rows = _rows(data)

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:  # every row, the delete and the create: one transaction
            inspector = sa.inspect(conn)
            if inspector.has_table(table_name):
                table = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
                new = sorted({k for row in rows for k in row} - set(table.c.keys()))
                if new:
                    raise PluginError(
                        f"table {table_name} has no column{'s' if len(new) > 1 else ''} "
                        f"{', '.join(repr(k) for k in new)} (its columns: {', '.join(table.c.keys())}); "
                        "add the columns to the table, leave the keys out of the data, or use another table")
                created = False
            elif rows:
                table = sa.Table(table_name, sa.MetaData(), *_columns(rows))
                table.create(conn)
                created = True
            else:
                table, created = None, False
            if table is not None and mode == "replace":
                deleted = conn.execute(table.delete()).rowcount
                print(f"deleted {deleted} row{'s' if deleted != 1 else ''} of {table_name} (mode replace)", flush=True)
            if table is not None and rows:
                keys = list(dict.fromkeys(k for row in rows for k in row))  # a row without a key: NULL
                conn.execute(table.insert(), [_values(table, row, keys) for row in rows])
    except PluginError:
        raise
    except sa.exc.DBAPIError as e:
        raise PluginError(f"database {shown}: {_db_message(e)}") from None
    except sa.exc.SQLAlchemyError as e:
        raise PluginError(f"database {shown}: {e}") from None
    finally:
        engine.dispose()

    if created:
        print(f"created table {table_name} ({', '.join(c.name for c in table.c)})", flush=True)  # type: ignore[union-attr]
    print(f"wrote {len(rows)} row{'s' if len(rows) != 1 else ''} to {table_name}", flush=True)
    print(f"stored {len(rows)} row{'s' if len(rows) != 1 else ''} in table {table_name} of {shown} "
          f"(mode {mode})", flush=True)
    return {"destination": shown, "kind": "database", "table": table_name, "written": [table_name],
            "rows": len(rows)}


def _url(value: Any) -> Any:
    import sqlalchemy as sa

    if not isinstance(value, str) or not value.strip():
        raise PluginError("destination database: give a SQLAlchemy URL, like sqlite:///results/runs.db or "
                          "postgresql+psycopg://user:password@host/name")
    try:
        url = sa.engine.make_url(value.strip())
    except (sa.exc.ArgumentError, ValueError) as e:
        raise PluginError(f"destination database: not a database URL ({e}); like sqlite:///results/runs.db "
                          "or postgresql+psycopg://user:password@host/name") from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite":
        if driver and driver != "pysqlite":
            raise PluginError(f"destination database: the driver {url.drivername} is not in the plugin's image; "
                              "use sqlite:///PATH")
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            raise PluginError("destination database: give the SQLite file's path under the storage root, like "
                              "sqlite:///results/runs.db (an in-memory database keeps nothing)")
        if "uri" in url.query:
            raise PluginError("destination database: the `uri` option is not allowed; give a path, like "
                              "sqlite:///results/runs.db")
        root = storage_root(f"the SQLite database {url.database}")
        # An absolute path must be inside the root too: checked as the path relative to the root.
        relative = os.path.relpath(url.database, root) if os.path.isabs(url.database) else url.database
        path = under_root(root, relative, "the SQLite database", "sqlite:///results/runs.db", shown=url.database)
        if path.is_dir():
            raise PluginError(f"destination database: {path.relative_to(root)} is a directory, not a SQLite file")
        path.parent.mkdir(parents=True, exist_ok=True)
        return url.set(drivername="sqlite", database=str(path))
    if backend in ("postgresql", "postgres"):
        if driver and driver != "psycopg":
            raise PluginError(f"destination database: the driver {driver} is not in the plugin's image; use "
                              "postgresql+psycopg://...")
        return url.set(drivername="postgresql+psycopg")
    raise PluginError(f"destination database: {backend} databases are not supported; use sqlite:///PATH or "
                      "postgresql+psycopg://user:password@host/name")


def _rows(data: Any) -> list[dict[str, Any]]:
    rows = [data] if isinstance(data, Mapping) else data
    if not isinstance(rows, list):
        raise PluginError(f"a database destination needs a list of objects (one per row) or one object; "
                          f"the data is {_kind(data)}")
    for i, row in enumerate(rows, 1):
        if not isinstance(row, Mapping):
            raise PluginError(f"a database destination needs a list of objects (one per row); row {i} is {_kind(row)}")
        if not row:
            raise PluginError(f"row {i} is an empty object: a row needs at least one key")
        for key in row:
            if not isinstance(key, str) or not key or len(key) > 63 or "\x00" in key:
                raise PluginError(f"row {i}: the key {key!r} cannot be a column name (1 to 63 characters)")
    return [dict(r) for r in rows]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _columns(rows: list[dict[str, Any]]) -> list[Any]:
    """A column per key, in first-seen order, typed by its values (null ignored): BOOLEAN, INTEGER
    (BIGINT on PostgreSQL), FLOAT (ints and floats mixed), else TEXT (objects and lists as JSON)."""
    import sqlalchemy as sa

    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    columns = []
    for key in keys:
        kinds = {type(row[key]) for row in rows if row.get(key) is not None}
        if kinds == {bool}:
            kind: Any = sa.Boolean()
        elif kinds == {int}:
            kind = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
        elif kinds and kinds <= {int, float}:
            kind = sa.Float()
        else:
            kind = sa.Text()
        columns.append(sa.Column(key, kind, nullable=True))
    return columns


def _values(table: Any, row: Mapping[str, Any], keys: list[str]) -> dict[str, Any]:
    import sqlalchemy as sa

    out = {}
    for key in keys:
        value, column = row.get(key), table.c[key]
        if isinstance(column.type, sa.JSON):
            pass  # a JSON column (made by someone else) takes the value itself
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        elif value is not None and not isinstance(value, str) and isinstance(column.type, sa.String):
            value = json.dumps(value)  # 3 -> "3", true -> "true" in a TEXT column
        out[key] = value
    return out


def _db_message(e: Any) -> str:
    orig = getattr(e, "orig", None)
    text = str(orig) if orig is not None else str(e)
    return " ".join(text.split())[:500] or type(e).__name__
