"""The `transformation` plugin: reshape JSON, YAML or CSV data with declarative rules.

Rules are steps (select, filter, rename, compute, map, drop, sort, limit) with JMESPath
expressions; the task's output is the result, optionally also written to a workspace file.
The work runs in the plugin's container: `python3 -m plugins.transformation.src.run` (src/run.py).
See docs/README.md and docs/api.md.
"""
