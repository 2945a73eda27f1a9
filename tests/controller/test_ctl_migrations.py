"""The frozen migrations and the current table definitions must describe one schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from controller.store import tables
from controller.store.migrations import MIGRATIONS, current_version, migrate


def _schema(engine: sa.Engine) -> dict[str, set[str]]:
    inspector = sa.inspect(engine)
    return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}


def test_migrated_schema_matches_the_table_definitions(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert migrate(engine) == MIGRATIONS[-1][0]
    expected = {name: {c.name for c in table.columns} for name, table in tables.metadata.tables.items()}
    assert _schema(engine) == expected


def test_each_version_upgrades_to_the_same_schema(tmp_path: Path) -> None:
    fresh = sa.create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    migrate(fresh)
    for stop in range(1, len(MIGRATIONS)):
        old = sa.create_engine(f"sqlite:///{tmp_path / f'v{stop}.db'}")
        with old.begin() as conn:  # a database made by the release at version `stop`
            current_version(conn)
            for number, step in MIGRATIONS[:stop]:
                step(conn)
                conn.execute(tables.schema_version.insert().values(version=number, applied_at=0))
        with old.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO runs (repo, workflow, workflow_file, event, dirty, state, created_at) "
                "VALUES ('r', 'w', 'f', 'push', 0, 'succeeded', 1)"))
        migrate(old)
        assert _schema(old) == _schema(fresh)
        with old.connect() as conn:
            assert conn.execute(sa.text("SELECT workflow, state FROM runs")).all() == [("w", "succeeded")]
