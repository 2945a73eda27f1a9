"""The `validation` plugin: check data against a JSON Schema (Draft 2020-12) before using it.

The data is a workspace file (JSON, YAML or CSV), an inline value, an upstream task's output or the
trigger's payload; on success the task's output is the data itself, for the next task to use.
The work runs in the plugin's container: `python3 -m plugins.validation.src.run` (src/run.py).
See docs/README.md and docs/api.md.
"""
