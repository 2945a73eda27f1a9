"""The frozen migrations and the current table definitions must describe one schema."""

from __future__ import annotations

import sqlalchemy as sa

from controller.store import tables
from controller.store.migrations import MIGRATIONS, current_version, migrate
from controller.store.runs import open_engine


def _schema(engine: sa.Engine) -> dict[str, set[str]]:
    inspector = sa.inspect(engine)
    return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}


def _drop_everything(engine: sa.Engine) -> None:
    """Back to an empty database (one database per test: the old versions are built in turn)."""
    m = sa.MetaData()
    with engine.begin() as conn:
        m.reflect(conn)
        m.drop_all(conn)
    assert _schema(engine) == {}


def test_migrated_schema_matches_the_table_definitions(database_url: str) -> None:
    engine = open_engine(database_url)
    assert migrate(engine) == MIGRATIONS[-1][0]
    expected = {name: {c.name for c in table.columns} for name, table in tables.metadata.tables.items()}
    assert _schema(engine) == expected
    engine.dispose()


def test_each_version_upgrades_to_the_same_schema(database_url: str) -> None:
    engine = open_engine(database_url)
    migrate(engine)
    fresh = _schema(engine)
    for stop in range(1, len(MIGRATIONS)):
        _drop_everything(engine)
        with engine.begin() as conn:  # a database made by the release at version `stop`
            current_version(conn)
            for number, step in MIGRATIONS[:stop]:
                step(conn)
                conn.execute(tables.schema_version.insert().values(version=number, applied_at=0))
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO runs (repo, workflow, workflow_file, event, dirty, state, created_at) "
                "VALUES ('r', 'w', 'f', 'push', :dirty, 'succeeded', 1)"), {"dirty": False})
        migrate(engine)
        assert _schema(engine) == fresh
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT workflow, state FROM runs")).all() == [("w", "succeeded")]
            assert conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar() == MIGRATIONS[-1][0]
    engine.dispose()
