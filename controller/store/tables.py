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

repos = sa.Table(
    "repos",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),  # the forge's owner/repo
    sa.Column("url", sa.Text, nullable=False),  # any git URL: https, ssh, file
    sa.Column("forge", sa.Text, nullable=False),  # github | gitlab | gitea | generic
    sa.Column("webhook_secret", sa.Text),  # HMAC key / token the forge signs deliveries with
    sa.Column("poll_interval_s", sa.Float),  # NULL: no polling
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("polled_at", sa.Float),
    # v3: results back to the forge
    sa.Column("forge_url", sa.Text),  # the forge's API base URL; NULL: the forge's default for `url`
    sa.Column("forge_token", sa.Text),  # sealed (controller.secretbox), never in clear
    sa.Column("forge_token_file", sa.Text),  # or a file holding the token, read when sending
    sa.Column("github_app_id", sa.Integer),  # check runs as a GitHub App ...
    sa.Column("github_app_key_file", sa.Text),  # ... with its private key (PEM) in this file
    sa.Column("github_installation_id", sa.Integer),  # NULL: looked up
    sa.Column("status_context", sa.Text),  # NULL: clarity/{workflow}
    sa.Column("notes", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    # v7: the repository's own plugin grants, {plugin: [permission, ...]}, which replace the
    # controller's setting plugin_permissions for it; NULL: the setting applies
    sa.Column("plugin_permissions", sa.JSON(none_as_null=True)),
)

repo_refs = sa.Table(
    "repo_refs",  # the last sha seen per ref: what polling compares against
    metadata,
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("ref", sa.Text, primary_key=True),
    sa.Column("sha", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

deliveries = sa.Table(
    "deliveries",  # every verified webhook delivery, stored before it is answered
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("forge", sa.Text, nullable=False),
    sa.Column("delivery_id", sa.Text, nullable=False),  # the forge's id; a repeat makes no new run
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE")),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # received | processed | ignored | failed
    sa.Column("error", sa.Text),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("processed_at", sa.Float),
    sa.UniqueConstraint("forge", "delivery_id", name="uq_deliveries_forge_id"),
    sa.Index("ix_deliveries_state", "state", "id"),  # the intake worker's claim: not a scan of payloads
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False, unique=True),  # shown, and used to find the key
    sa.Column("hash", sa.Text, nullable=False),  # sha256 of the whole key; the key itself is never stored
    sa.Column("role", sa.Text, nullable=False),  # admin | read
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
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
    # v2
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="SET NULL")),
    sa.Column("dedupe_key", sa.Text, unique=True),  # one run per (repo, event, ref, commit, file)
    sa.Column("context", sa.JSON),  # git info, trigger payload, inputs, changed files: to resume
    sa.Column("workflow_text", sa.Text),  # the file at the commit (or its lint messages' source)
    sa.Column("rerun_of", sa.Integer),
    sa.Column("message", sa.Text),  # why a run failed before any task ran (e.g. lint errors)
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    # v8: composition (controller.workflow.compose)
    sa.Column("outputs", sa.JSON(none_as_null=True)),  # the workflow's declared outputs, when it succeeded
    sa.Column("parent_run", sa.Integer),  # a sub-run: the run whose `type: workflow` task started it ...
    sa.Column("parent_task", sa.Text),  # ... and that task
    sa.Index("ix_runs_parent", "parent_run"),
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

queue = sa.Table(
    "queue",  # the database is the queue: one row per task attempt
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),  # runner.spec.TaskSpec.to_json()
    sa.Column("labels", sa.JSON, nullable=False),  # what a runner must have
    sa.Column("state", sa.Text, nullable=False),  # queued | leased | done | canceled
    sa.Column("queued_at", sa.Float, nullable=False),
    sa.Column("lease_id", sa.Text, unique=True),
    sa.Column("lease_owner", sa.Text),  # the runner
    sa.Column("leased_at", sa.Float),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("log_offset", sa.Integer, nullable=False),  # lines stored before this attempt: runner seq 1 is offset+1
    sa.Column("result", sa.JSON),  # runner.spec.TaskResult.to_json()
    sa.Column("finished_at", sa.Float),
    sa.Index("ix_queue_state_queued", "state", "queued_at"),
)

runner_tokens = sa.Table(
    "runner_tokens",  # one-time registration tokens: `clarity runner --token` trades one for a credential
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prefix", sa.Text, nullable=False, unique=True),  # shown, and used to find the token
    sa.Column("hash", sa.Text, nullable=False),  # sha256 of the whole token; the token itself is never stored
    sa.Column("labels", sa.JSON),  # the runner's labels when it registers with none of its own
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float),  # set once, when a runner registers with it
    sa.Column("used_by", sa.Text),  # the runner that did
    sa.Column("revoked_at", sa.Float),
)

runners = sa.Table(
    "runners",  # registered remote runner agents
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),  # also the queue's lease_owner
    sa.Column("prefix", sa.Text, nullable=False, unique=True),  # of the credential: shown, used to find it
    sa.Column("hash", sa.Text, nullable=False),  # sha256 of the credential; never the credential
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("version", sa.Text),  # the runner's Clarity version, as it said at registration
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float),
    sa.Column("last_ip", sa.Text),
    sa.Column("disabled", sa.Boolean, nullable=False),
)

outbox = sa.Table(
    "outbox",  # what is to be sent to a forge, durably: a commit status or a git note (controller.report)
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.Text, nullable=False),  # status | note
    sa.Column("key", sa.Text, nullable=False, unique=True),  # status:<repo>:<sha>:<context> | note:<run>
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL")),
    sa.Column("payload", sa.JSON, nullable=False),  # the newest state to send: it replaces an unsent older one
    sa.Column("version", sa.Integer, nullable=False),  # bumped by each new payload
    sa.Column("sent_version", sa.Integer, nullable=False),  # the version last sent (or given up on)
    sa.Column("handle", sa.Text),  # the forge's id of what was sent (a GitHub check run), to update it
    sa.Column("attempts", sa.Integer, nullable=False),  # failed attempts at the current version
    sa.Column("next_at", sa.Float, nullable=False),  # not before (backoff, Retry-After)
    sa.Column("claimed_until", sa.Float),  # a sender is at it until then (several controllers)
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float),
    sa.Index("ix_outbox_next_at", "next_at"),
)

triggers = sa.Table(
    "triggers",  # triggers declared in workflow files, as of each repository's default branch head
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.Text, nullable=False, unique=True),  # repo, file, position, type, config digest
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column("workflow_file", sa.Text, nullable=False),
    sa.Column("workflow", sa.Text, nullable=False),  # its name
    sa.Column("type", sa.Text, nullable=False),  # schedule | webhook | event | file_watch
    sa.Column("config", sa.JSON, nullable=False),  # the trigger as declared (defaults filled in)
    sa.Column("ref", sa.Text, nullable=False),  # the branch it was read from (refs/heads/...)
    sa.Column("commit_sha", sa.Text, nullable=False),  # ... at this commit
    sa.Column("blob_sha", sa.Text, nullable=False),  # ... in this version of the file
    sa.Column("last_tick", sa.Float),  # schedule: the newest tick handled (fired or let go); NULL: new
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_triggers_type", "type"),
)

schedule_ticks = sa.Table(
    "schedule_ticks",  # a tick fired: the primary key makes it fire once, whichever controller gets there
    metadata,
    sa.Column("trigger_key", sa.Text, primary_key=True),
    sa.Column("tick_at", sa.Float, primary_key=True),  # epoch seconds of the tick
    sa.Column("backfill_id", sa.Integer),  # fired by a backfill
    sa.Column("run_id", sa.Integer),
    sa.Column("fired_at", sa.Float, nullable=False),
)

backfills = sa.Table(
    "backfills",  # a schedule's ticks over a past window, fired on request
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trigger_key", sa.Text, nullable=False),
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column("workflow_file", sa.Text, nullable=False),
    sa.Column("start_at", sa.Float, nullable=False),
    sa.Column("end_at", sa.Float, nullable=False),
    sa.Column("cursor", sa.Float, nullable=False),  # ticks up to here are done
    sa.Column("state", sa.Text, nullable=False),  # running | paused | canceled | done
    sa.Column("fired", sa.Integer, nullable=False),
    sa.Column("created_by", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

webhook_keys = sa.Table(
    "webhook_keys",  # v5: the keys that start a workflow file's webhook triggers (controller.store.webhook_keys)
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prefix", sa.Text, nullable=False, unique=True),  # shown, and used to find the key
    sa.Column("sealed", sa.Text, nullable=False),  # the key, sealed (controller.secretbox): HMAC signatures need it
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column("workflow_file", sa.Text, nullable=False),  # .clarity/....yaml: the only file the key starts
    sa.Column("name", sa.Text, nullable=False),  # who uses it; runs say `webhook-key:<name>`
    sa.Column("created_by", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
    sa.Index("ix_webhook_keys_repo", "repo_id"),
)

repo_secrets = sa.Table(
    "repo_secrets",  # v9: a repository's secrets for its runs on a controller (controller.store.repo_secrets)
    metadata,
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),  # as a workflow names it: [A-Z_][A-Z0-9_]*
    sa.Column("sealed", sa.Text, nullable=False),  # the value, sealed (controller.secretbox)
    sa.Column("updated_by", sa.Text),
    sa.Column("updated_at", sa.Float, nullable=False),
)

plugin_trigger_state = sa.Table(
    "plugin_trigger_state",  # v6: what a plugin trigger's last poll returned (controller.plugin_triggers)
    metadata,
    sa.Column("trigger_key", sa.Text, primary_key=True),  # triggers.key
    sa.Column("state", sa.JSON),  # the state the last good poll returned: given to the next; NULL: never polled
    sa.Column("polled_at", sa.Float),  # the last poll, good or not
    sa.Column("error", sa.Text),  # why the last poll failed; NULL: it did not
)
