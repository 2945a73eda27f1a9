"""The `storage` plugin: store a task's data, or workspace files, somewhere that outlives the run.

Destinations: a directory under the controller's storage root (`backups/${workflow.id}`), a
database table (SQLite under the storage root, or PostgreSQL), an S3 (or S3-compatible) bucket.
The work runs in the plugin's container: `python3 -m plugins.storage.src.run` (src/run.py).
See docs/README.md and docs/api.md.
"""
