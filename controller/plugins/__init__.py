"""Plugins: task types and trigger types from `clarity.plugins` entry points (see docs/plugins.md)."""

from __future__ import annotations

import functools

from controller.plugins.registry import LoadedPlugin, Problem, Registry, discover

__all__ = ["LoadedPlugin", "Problem", "Registry", "discover", "installed"]


@functools.lru_cache(maxsize=1)
def installed() -> Registry:
    """The plugins installed in this Python environment, found once per process."""
    return discover()
