"""Webhook keys: what an inbound request to a `webhook` trigger's path authenticates with.

A key belongs to one (repository, workflow file): it starts that file's webhook triggers and no
other. It looks like `clwh_<random>`; its first characters (`prefix`) are stored in clear to find
the row, the whole key is stored sealed with the controller's key (controller.secretbox), not
hashed, because the optional HMAC signature of a request (`signature: sha256`) is made with the
key itself. The caller seals (`create` takes a `seal` function) and opens; this module never sees
the controller's key. A revoked key stays listed (revoked), and is refused.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List

import sqlalchemy as sa

from controller.store import tables

KEY_PREFIX = "clwh_"
_SHOWN = 8  # characters after KEY_PREFIX stored in clear, to find the row

t = tables.webhook_keys


def prefix_of(key: str) -> str:
    """The part of a key that names its row (whatever the key: the lookup costs the same)."""
    return key[: len(KEY_PREFIX) + _SHOWN]


@dataclass(frozen=True)
class WebhookKey:
    id: int
    prefix: str
    repo_id: int
    workflow_file: str
    name: str
    created_by: str | None
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    sealed: str = field(default="", repr=False, compare=False)  # never shown

    @property
    def state(self) -> str:
        return "revoked" if self.revoked_at is not None else "active"

    def public(self, repo: str | None = None) -> dict[str, Any]:
        """What the API shows: never the key, sealed or not."""
        return {"prefix": self.prefix, "repo": repo, "workflow_file": self.workflow_file, "name": self.name,
                "created_by": self.created_by, "created_at": self.created_at, "last_used_at": self.last_used_at,
                "revoked_at": self.revoked_at, "state": self.state}

    @classmethod
    def from_row(cls, row: Any) -> WebhookKey:
        return cls(**dict(row))


class WebhookKeys:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, repo_id: int, workflow_file: str, seal: Callable[[str], str], *, name: str | None = None,
               created_by: str | None = None) -> tuple[WebhookKey, str]:
        """A new key for the workflow file of the repository, and the key itself (shown once).
        `name` defaults to the key's prefix."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        prefix = prefix_of(key)
        with self.engine.begin() as conn:
            conn.execute(t.insert().values(prefix=prefix, sealed=seal(key), repo_id=repo_id,
                                           workflow_file=workflow_file, name=name or prefix, created_by=created_by,
                                           created_at=time.time()))
        return self.get(prefix), key

    def get(self, prefix: str) -> WebhookKey:
        found = self.find(prefix)
        if found is None:
            raise LookupError(f"no webhook key {prefix}")
        return found

    def find(self, prefix: str) -> WebhookKey | None:
        """The row of a prefix, live or revoked (one query, whatever the prefix)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.prefix == prefix)).mappings().first()
        return None if row is None else WebhookKey.from_row(row)

    def list(self, repo_id: int | None = None) -> "List[WebhookKey]":
        query = sa.select(t).order_by(t.c.id)
        if repo_id is not None:
            query = query.where(t.c.repo_id == repo_id)
        with self.engine.connect() as conn:
            return [WebhookKey.from_row(r) for r in conn.execute(query).mappings()]

    def used(self, key_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == key_id).values(last_used_at=time.time()))

    def revoke(self, prefix: str) -> WebhookKey:
        with self.engine.begin() as conn:
            done = conn.execute(t.update().where(t.c.prefix == prefix, t.c.revoked_at.is_(None))
                                .values(revoked_at=time.time()))
        if done.rowcount == 0:
            raise LookupError(f"no live webhook key {prefix} (see `clarity webhook-key list`)")
        return self.get(prefix)
