"""Versioned schema migrations: an ordered list, each applied once, in its own transaction.

Each migration is frozen: it spells out the tables as they were at its version (not the current
`tables` module, which describes the newest schema), so a database made by any release reaches
the same schema. A new migration is appended, never edited: databases in the field ran the old.
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import sqlalchemy as sa

from controller.store import tables

Migration = Callable[[sa.Connection], None]


def _v1_initial(conn: sa.Connection) -> None:
    m = sa.MetaData()
    sa.Table(
        "runs", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("repo", sa.Text, nullable=False),
        sa.Column("workflow", sa.Text, nullable=False),
        sa.Column("workflow_file", sa.Text, nullable=False),
        sa.Column("blob_sha", sa.Text),
        sa.Column("commit_sha", sa.Text),
        sa.Column("ref", sa.Text),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("dirty", sa.Boolean, nullable=False, default=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("trigger", sa.JSON),
        sa.Column("owner", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
    )
    sa.Table(
        "tasks", m,
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, default=0),
        sa.Column("image", sa.Text),
        sa.Column("exit_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("output", sa.JSON),
        sa.Column("outputs", sa.JSON),
        sa.Column("artifacts_dir", sa.Text),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
    )
    sa.Table(
        "logs", m,
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "task", "seq"),
    )
    m.create_all(conn)


def _v2_controller(conn: sa.Connection) -> None:
    """Repositories, webhook deliveries, API keys, the task queue and remote runners (the controller
    service)."""
    m = sa.MetaData()
    sa.Table("runs", m, sa.Column("id", sa.Integer, primary_key=True))  # for the foreign keys
    sa.Table(
        "repos", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("forge", sa.Text, nullable=False),
        sa.Column("webhook_secret", sa.Text),
        sa.Column("poll_interval_s", sa.Float),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("polled_at", sa.Float),
    )
    sa.Table(
        "repo_refs", m,
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("ref", sa.Text, primary_key=True),
        sa.Column("sha", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    sa.Table(
        "deliveries", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("forge", sa.Text, nullable=False),
        sa.Column("delivery_id", sa.Text, nullable=False),
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE")),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("processed_at", sa.Float),
        sa.UniqueConstraint("forge", "delivery_id", name="uq_deliveries_forge_id"),
        sa.Index("ix_deliveries_state", "state", "id"),
    )
    sa.Table(
        "api_keys", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False, unique=True),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
    )
    sa.Table(
        "queue", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("queued_at", sa.Float, nullable=False),
        sa.Column("lease_id", sa.Text, unique=True),
        sa.Column("lease_owner", sa.Text),
        sa.Column("leased_at", sa.Float),
        sa.Column("lease_expires_at", sa.Float),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("log_offset", sa.Integer, nullable=False),
        sa.Column("result", sa.JSON),
        sa.Column("finished_at", sa.Float),
        sa.Index("ix_queue_state_queued", "state", "queued_at"),
    )
    sa.Table(
        "runner_tokens", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prefix", sa.Text, nullable=False, unique=True),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("labels", sa.JSON),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float),
        sa.Column("used_by", sa.Text),
        sa.Column("revoked_at", sa.Float),
    )
    sa.Table(
        "runners", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("prefix", sa.Text, nullable=False, unique=True),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("version", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_seen_at", sa.Float),
        sa.Column("last_ip", sa.Text),
        sa.Column("disabled", sa.Boolean, nullable=False),
    )
    for name in ("repos", "repo_refs", "deliveries", "api_keys", "queue", "runner_tokens", "runners"):
        m.tables[name].create(conn)
    json = sa.JSON().compile(dialect=conn.dialect)
    for column, kind in (("repo_id", "INTEGER REFERENCES repos(id) ON DELETE SET NULL"),
                         ("dedupe_key", "TEXT"), ("context", json), ("workflow_text", "TEXT"),
                         ("rerun_of", "INTEGER"), ("message", "TEXT")):
        conn.execute(sa.text(f"ALTER TABLE runs ADD COLUMN {column} {kind}"))
    conn.execute(sa.text("CREATE UNIQUE INDEX ix_runs_dedupe_key ON runs (dedupe_key)"))


def _v3_reporting(conn: sa.Connection) -> None:
    """Results back to the forge: per-repository forge API settings, git notes, and the outbox of
    statuses and notes to send."""
    m = sa.MetaData()
    sa.Table("repos", m, sa.Column("id", sa.Integer, primary_key=True))  # for the foreign keys
    sa.Table("runs", m, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "outbox", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sent_version", sa.Integer, nullable=False),
        sa.Column("handle", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("claimed_until", sa.Float),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float),
        sa.Index("ix_outbox_next_at", "next_at"),
    )
    m.tables["outbox"].create(conn)
    for column, kind in (("forge_url", "TEXT"), ("forge_token", "TEXT"), ("forge_token_file", "TEXT"),
                         ("github_app_id", "INTEGER"), ("github_app_key_file", "TEXT"),
                         ("github_installation_id", "INTEGER"), ("status_context", "TEXT"),
                         ("notes", "BOOLEAN NOT NULL DEFAULT FALSE")):
        conn.execute(sa.text(f"ALTER TABLE repos ADD COLUMN {column} {kind}"))


def _v4_triggers(conn: sa.Connection) -> None:
    """Triggers declared in workflow files (read from each repository's default branch), the
    schedule ticks fired (once across controllers), and backfills."""
    m = sa.MetaData()
    sa.Table("repos", m, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "triggers", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("workflow_file", sa.Text, nullable=False),
        sa.Column("workflow", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("ref", sa.Text, nullable=False),
        sa.Column("commit_sha", sa.Text, nullable=False),
        sa.Column("blob_sha", sa.Text, nullable=False),
        sa.Column("last_tick", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Index("ix_triggers_type", "type"),
    )
    sa.Table(
        "schedule_ticks", m,
        sa.Column("trigger_key", sa.Text, primary_key=True),
        sa.Column("tick_at", sa.Float, primary_key=True),
        sa.Column("backfill_id", sa.Integer),
        sa.Column("run_id", sa.Integer),
        sa.Column("fired_at", sa.Float, nullable=False),
    )
    sa.Table(
        "backfills", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trigger_key", sa.Text, nullable=False),
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("workflow_file", sa.Text, nullable=False),
        sa.Column("start_at", sa.Float, nullable=False),
        sa.Column("end_at", sa.Float, nullable=False),
        sa.Column("cursor", sa.Float, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("fired", sa.Integer, nullable=False),
        sa.Column("created_by", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    for name in ("triggers", "schedule_ticks", "backfills"):
        m.tables[name].create(conn)


def _v5_webhook_keys(conn: sa.Connection) -> None:
    """The keys of `webhook` triggers: one per (repository, workflow file), sealed, not hashed (an
    HMAC signature is checked with the key itself)."""
    m = sa.MetaData()
    sa.Table("repos", m, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "webhook_keys", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prefix", sa.Text, nullable=False, unique=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("workflow_file", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
        sa.Index("ix_webhook_keys_repo", "repo_id"),
    )
    m.tables["webhook_keys"].create(conn)


def _v6_plugin_trigger_state(conn: sa.Connection) -> None:
    """The state of each plugin trigger (controller.plugin_triggers): what its last poll returned,
    given to the next, and the last poll's error."""
    m = sa.MetaData()
    sa.Table(
        "plugin_trigger_state", m,
        sa.Column("trigger_key", sa.Text, primary_key=True),
        sa.Column("state", sa.JSON),
        sa.Column("polled_at", sa.Float),
        sa.Column("error", sa.Text),
    )
    m.tables["plugin_trigger_state"].create(conn)


def _v7_repo_plugin_permissions(conn: sa.Connection) -> None:
    """Per-repository plugin grants: {plugin: [permission, ...]} (JSON), replacing the controller's
    setting plugin_permissions for that repository; NULL (every existing row): the setting applies."""
    conn.execute(sa.text("ALTER TABLE repos ADD COLUMN plugin_permissions JSON"))


def _v8_composition(conn: sa.Connection) -> None:
    """Workflow outputs on runs, and a sub-run's parent (run and `type: workflow` task); NULL for
    every existing run."""
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN outputs JSON"))
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN parent_run INTEGER"))
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN parent_task TEXT"))
    conn.execute(sa.text("CREATE INDEX ix_runs_parent ON runs (parent_run)"))


def _v9_repo_secrets(conn: sa.Connection) -> None:
    """Each repository's secrets (sealed), given to the tasks of its runs that ask for them."""
    m = sa.MetaData()
    sa.Table("repos", m, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "repo_secrets", m,
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("updated_by", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    m.tables["repo_secrets"].create(conn)


MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _v1_initial),
    (2, _v2_controller),
    (3, _v3_reporting),
    (4, _v4_triggers),
    (5, _v5_webhook_keys),
    (6, _v6_plugin_trigger_state),
    (7, _v7_repo_plugin_permissions),
    (8, _v8_composition),
    (9, _v9_repo_secrets),
]


def current_version(conn: sa.Connection) -> int:
    tables.schema_version.create(conn, checkfirst=True)
    found = conn.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar()
    return int(found or 0)


MIGRATION_LOCK = 0x436C61726974  # any fixed number: the PostgreSQL advisory lock of migrations


@contextmanager
def _exclusive(engine: sa.Engine) -> Iterator[None]:
    """One process migrates at a time (several controllers or `clarity run`s starting at once)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                conn.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with open(f"{engine.url.database}.migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    else:
        yield


def migrate(engine: sa.Engine) -> int:
    """Bring the database to the newest version; return it."""
    with _exclusive(engine):
        return _migrate(engine)


def _migrate(engine: sa.Engine) -> int:
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
