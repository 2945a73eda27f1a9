"""The database tables, in SQLAlchemy Core: the same schema on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("repo", sa.Text, nullable=False),
    sa.Column("workflow", sa.Text, nullable=False),  # the workflow's name
    sa.Column("workflow_file", sa.Text, nullable=False),  # path inside the repository
    sa.Column("blob_sha", sa.Text),  # the workflow file's blob at the commit; NULL for --dirty
    sa.Column("commit_sha", sa.Text),
    sa.Column("ref", sa.Text),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("dirty", sa.Boolean, nullable=False, default=False),
    sa.Column("state", sa.Text, nullable=False),  # queued, running, or a final Outcome value
    sa.Column("trigger", sa.JSON),  # who and what started it
    sa.Column("owner", sa.Text),  # the process executing it (runner.owner): host:pid:start
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # pending, running, or a final Outcome value
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

logs = sa.Table(
    "logs",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("line", sa.Text, nullable=False),  # always masked before it reaches here
    sa.PrimaryKeyConstraint("run_id", "task", "seq"),
)
