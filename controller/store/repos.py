"""Registered repositories, the refs last seen on each, and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from controller.store import tables

FORGES = ("github", "gitlab", "gitea", "generic")
ROLES = ("admin", "read")
KEY_PREFIX = "clk_"


class Conflict(Exception):
    """The thing exists already (a repository name, ...)."""


@dataclass(frozen=True)
class RepoRow:
    id: int
    name: str
    url: str
    forge: str
    webhook_secret: str | None
    poll_interval_s: float | None
    enabled: bool
    created_at: float
    polled_at: float | None
    forge_url: str | None = None
    forge_token: str | None = field(default=None, repr=False)  # sealed (controller.secretbox)
    forge_token_file: str | None = None
    github_app_id: int | None = None
    github_app_key_file: str | None = None
    github_installation_id: int | None = None
    status_context: str | None = None
    notes: bool = False
    # the repository's own plugin grants {plugin: [permission, ...]}, replacing the controller's
    # setting plugin_permissions for it; None: the setting applies
    plugin_permissions: dict[str, list[str]] | None = field(default=None, hash=False)

    def public(self) -> dict[str, Any]:
        """What the API shows: never a secret, only whether there is one."""
        return {
            "id": self.id, "name": self.name, "url": self.url, "forge": self.forge,
            "webhook_secret_set": bool(self.webhook_secret), "poll_interval_s": self.poll_interval_s,
            "enabled": self.enabled, "created_at": self.created_at, "polled_at": self.polled_at,
            "forge_url": self.forge_url, "forge_token_set": bool(self.forge_token),
            "forge_token_file": self.forge_token_file, "github_app_id": self.github_app_id,
            "github_app_key_file": self.github_app_key_file, "github_installation_id": self.github_installation_id,
            "status_context": self.status_context, "notes": self.notes,
            "plugin_permissions": self.plugin_permissions,
        }


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    role: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Repos:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def add(self, *, name: str, url: str, forge: str = "generic", webhook_secret: str | None = None,
            poll_interval_s: float | None = None, forge_url: str | None = None, forge_token: str | None = None,
            forge_token_file: str | None = None, github_app_id: int | None = None,
            github_app_key_file: str | None = None, github_installation_id: int | None = None,
            status_context: str | None = None, notes: bool = False,
            plugin_permissions: dict[str, list[str]] | None = None) -> RepoRow:
        """`forge_token` is stored as given: the caller seals it first (controller.secretbox)."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(tables.repos.c.id).where(tables.repos.c.name == name)).first():
                raise Conflict(f"repository {name} is registered already")
            conn.execute(tables.repos.insert().values(
                name=name, url=url, forge=forge, webhook_secret=webhook_secret,
                poll_interval_s=poll_interval_s, enabled=True, created_at=time.time(),
                forge_url=forge_url, forge_token=forge_token, forge_token_file=forge_token_file,
                github_app_id=github_app_id, github_app_key_file=github_app_key_file,
                github_installation_id=github_installation_id, status_context=status_context, notes=notes,
                plugin_permissions=plugin_permissions,
            ))
        return self.get(name)

    def get(self, name: str) -> RepoRow:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tables.repos).where(tables.repos.c.name == name)).mappings().first()
        if row is None:
            raise LookupError(f"no repository {name}")
        return RepoRow(**row)

    def get_id(self, repo_id: int) -> RepoRow:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tables.repos).where(tables.repos.c.id == repo_id)).mappings().first()
        if row is None:
            raise LookupError(f"no repository with id {repo_id}")
        return RepoRow(**row)

    def list(self) -> list[RepoRow]:
        with self.engine.connect() as conn:
            return [RepoRow(**r) for r in conn.execute(sa.select(tables.repos).order_by(tables.repos.c.name)).mappings()]

    def remove(self, name: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(tables.repos.delete().where(tables.repos.c.name == name)).rowcount == 0:
                raise LookupError(f"no repository {name}")

    def update(self, name: str, **values: Any) -> RepoRow:
        with self.engine.begin() as conn:
            if conn.execute(tables.repos.update().where(tables.repos.c.name == name).values(**values)).rowcount == 0:
                raise LookupError(f"no repository {name}")
        return self.get(name)

    # refs seen (polling)

    def refs(self, repo_id: int) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(tables.repo_refs.c.ref, tables.repo_refs.c.sha)
                                .where(tables.repo_refs.c.repo_id == repo_id))
            return {r.ref: r.sha for r in rows}

    def set_refs(self, repo_id: int, refs: dict[str, str]) -> None:
        """Replace the refs seen for a repository (one transaction)."""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(tables.repo_refs.delete().where(tables.repo_refs.c.repo_id == repo_id))
            if refs:
                conn.execute(tables.repo_refs.insert(), [
                    {"repo_id": repo_id, "ref": ref, "sha": sha, "updated_at": now} for ref, sha in refs.items()])
            conn.execute(tables.repos.update().where(tables.repos.c.id == repo_id).values(polled_at=now))


class ApiKeys:
    """Keys are shown once, at creation; only their sha256 is stored."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, name: str, role: str = "admin") -> tuple[ApiKey, str]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        prefix = key[: len(KEY_PREFIX) + 8]
        with self.engine.begin() as conn:
            conn.execute(tables.api_keys.insert().values(
                name=name, prefix=prefix, hash=_hash(key), role=role, created_at=time.time()))
        return self._by_prefix(prefix), key

    def _by_prefix(self, prefix: str) -> ApiKey:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tables.api_keys).where(tables.api_keys.c.prefix == prefix)).mappings().one()
        return ApiKey(**{k: v for k, v in row.items() if k != "hash"})

    def check(self, key: str) -> ApiKey | None:
        """The live key matching `key`, compared in constant time; None otherwise."""
        prefix = key[: len(KEY_PREFIX) + 8]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tables.api_keys).where(tables.api_keys.c.prefix == prefix)).mappings().first()
        if row is None or row["revoked_at"] is not None:
            hmac.compare_digest(_hash(key), _hash(""))  # same work whether or not the prefix exists
            return None
        if not hmac.compare_digest(row["hash"], _hash(key)):
            return None
        with self.engine.begin() as conn:
            conn.execute(tables.api_keys.update().where(tables.api_keys.c.id == row["id"]).values(last_used_at=time.time()))
        return ApiKey(**{k: v for k, v in row.items() if k != "hash"})

    def list(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(tables.api_keys).order_by(tables.api_keys.c.id)).mappings()
            return [ApiKey(**{k: v for k, v in r.items() if k != "hash"}) for r in rows]

    def revoke(self, prefix: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(tables.api_keys.update().where(
                tables.api_keys.c.prefix == prefix, tables.api_keys.c.revoked_at.is_(None)).values(revoked_at=time.time()))
            if done.rowcount == 0:
                raise LookupError(f"no live API key {prefix}")
