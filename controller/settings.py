"""Settings, read once from `CLARITY_*` environment variables into a frozen value.

Nothing reads the environment after start-up: the value is passed in explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


def _default_home(env: Mapping[str, str]) -> Path:
    if env.get("CLARITY_HOME"):
        return Path(env["CLARITY_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "clarity"


class SettingsError(ValueError):
    """A setting has a value Clarity cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    home: Path
    """State directory: the embedded database, mirror cache, artifacts, task scratch space."""
    database_url: str
    parallel: int
    pull: bool = True
    """Pull an image that is not present locally (CLARITY_PULL=missing, the default) or not (never)."""

    @property
    def cache(self) -> Path:
        """Mirror cache root (WorkspaceCache keeps `mirrors/` under it)."""
        return self.home

    @property
    def work_root(self) -> Path:
        return self.home / "work"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = _default_home(env)
        url = env.get("CLARITY_DATABASE_URL") or f"sqlite:///{home / 'clarity.db'}"
        raw = env.get("CLARITY_PARALLEL") or str(max(4, os.cpu_count() or 4))
        if not raw.isdigit() or int(raw) < 1:
            raise SettingsError(f"CLARITY_PARALLEL={raw!r}: expected a whole number of tasks, at least 1")
        parallel = int(raw)
        pull = env.get("CLARITY_PULL") or "missing"
        if pull not in ("missing", "never"):
            raise SettingsError(f"CLARITY_PULL={pull!r}: expected 'missing' (the default) or 'never'")
        return cls(home=home, database_url=url, parallel=parallel, pull=pull == "missing")
