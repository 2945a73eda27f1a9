"""The plugin SDK: what a plugin needs from Clarity, on both sides of the container.

- `plugins.sdk.runtime`: inside the container (stdlib and PyYAML only): the task's config, its
  context, workspace files, data sources, the output, clear errors.
"""
