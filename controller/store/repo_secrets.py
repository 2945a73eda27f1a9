"""A repository's secrets, for the tasks of its runs on a controller (`clarity secret set`).

Values are stored sealed with the controller's key (controller.secretbox): the caller seals and
opens, this module never sees the key. Only names and times are ever listed. A run gets the values
of the secrets its workflow names, and each task only those it reads (controller.workflow.compile);
a pull request from a fork gets none.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import sqlalchemy as sa

from controller.store import tables
from controller.workflow.schema import SECRET_NAME_PATTERN

NAME = re.compile(SECRET_NAME_PATTERN)  # as a workflow names them
MAX_VALUE_BYTES = 64 * 1024

t = tables.repo_secrets


@dataclass(frozen=True)
class SecretInfo:
    name: str
    updated_by: str | None
    updated_at: float


class RepoSecrets:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def put(self, repo_id: int, name: str, sealed: str, by: str | None) -> bool:
        """Set a secret; True when it is new, False when it replaced a value."""
        values = {"sealed": sealed, "updated_by": by, "updated_at": time.time()}
        with self.engine.begin() as conn:
            changed = conn.execute(t.update().where(t.c.repo_id == repo_id, t.c.name == name).values(**values))
            if changed.rowcount:
                return False
            conn.execute(t.insert().values(repo_id=repo_id, name=name, **values))
            return True

    def remove(self, repo_id: int, name: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(t.delete().where(t.c.repo_id == repo_id, t.c.name == name)).rowcount)

    def list(self, repo_id: int) -> list[SecretInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.name, t.c.updated_by, t.c.updated_at)
                                .where(t.c.repo_id == repo_id).order_by(t.c.name)).all()
        return [SecretInfo(r.name, r.updated_by, r.updated_at) for r in rows]

    def sealed(self, repo_id: int) -> dict[str, str]:
        """Every secret of the repository, sealed, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.name, t.c.sealed).where(t.c.repo_id == repo_id)).all()
        return {r.name: r.sealed for r in rows}
