"""Versioned schema migrations: an ordered list, each applied once, in its own transaction.

A new migration is appended, never edited: databases in the field have run the old ones.
"""

from __future__ import annotations

import time
from typing import Callable

import sqlalchemy as sa

from controller.store import tables

Migration = Callable[[sa.Connection], None]


def _v1_initial(conn: sa.Connection) -> None:
    for table in (tables.runs, tables.tasks, tables.logs):
        table.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _v1_initial),
]


def current_version(conn: sa.Connection) -> int:
    tables.schema_version.create(conn, checkfirst=True)
    found = conn.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar()
    return int(found or 0)


def migrate(engine: sa.Engine) -> int:
    """Bring the database to the newest version; return it."""
    with engine.begin() as conn:
        version = current_version(conn)
    latest = MIGRATIONS[-1][0]
    if version > latest:
        raise RuntimeError(
            f"the database is at schema version {version}, newer than this Clarity ({latest}): "
            "upgrade Clarity"
        )
    for number, step in MIGRATIONS:
        if number <= version:
            continue
        with engine.begin() as conn:
            step(conn)
            conn.execute(tables.schema_version.insert().values(version=number, applied_at=time.time()))
    return latest
