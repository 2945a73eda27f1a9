"""Remote runner agents: one-time registration tokens, and the runners with their credentials.

A runner registers once: it trades a registration token (`create_token`, shown once) for its own
credential (`register`, shown once). The token works once, whatever happens at the same time (a
compare-and-set on `used_at`). Only sha256 hashes of tokens and credentials are stored; both are
compared in constant time, as `ApiKeys.check` does. A disabled runner's credential is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import sqlalchemy as sa

from controller.store import tables
from controller.workflow.schema import LABEL_PATTERN
from controller.store.repos import Conflict

TOKEN_PREFIX = "clrt_"  # registration token
CREDENTIAL_PREFIX = "clrc_"  # a runner's own credential
_SHOWN = 8  # characters after the kind prefix that are stored in clear, to find the row
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
LABEL = re.compile(LABEL_PATTERN)  # the very labels a task may ask for (controller.workflow.schema)
RESERVED = ("builtin-",)  # the controller's own in-process runner leases as builtin-<owner>
MAX_CAPACITY = 256
SEEN_S = 300.0  # a runner seen within this many seconds counts as present (`can_take`)

t_tokens = tables.runner_tokens
t_runners = tables.runners


class TokenRefused(Exception):
    """The registration token is unknown, revoked or used already."""


@dataclass(frozen=True)
class RunnerToken:
    id: int
    prefix: str
    labels: tuple[str, ...] | None
    created_at: float
    used_at: float | None
    used_by: str | None
    revoked_at: float | None

    @property
    def state(self) -> str:
        return "revoked" if self.revoked_at else ("used" if self.used_at else "unused")

    def public(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "labels": list(self.labels) if self.labels is not None else None,
                "created_at": self.created_at, "used_at": self.used_at, "used_by": self.used_by,
                "revoked_at": self.revoked_at, "state": self.state}

    @classmethod
    def from_row(cls, row: Any) -> RunnerToken:
        labels = row["labels"]
        return cls(id=row["id"], prefix=row["prefix"], labels=None if labels is None else tuple(labels),
                   created_at=row["created_at"], used_at=row["used_at"], used_by=row["used_by"],
                   revoked_at=row["revoked_at"])


@dataclass(frozen=True)
class Runner:
    id: int
    name: str
    prefix: str  # of the credential
    labels: tuple[str, ...]
    capacity: int
    version: str | None
    created_at: float
    last_seen_at: float | None
    last_ip: str | None
    disabled: bool
    key: bytes = field(default=b"", repr=False, compare=False)
    """The sha256 of the credential: what the controller signs its answers to this runner with
    (`runner.signature`)."""

    def public(self) -> dict[str, Any]:
        """What the API shows: never the credential's hash."""
        return {"name": self.name, "credential_prefix": self.prefix, "labels": list(self.labels),
                "capacity": self.capacity, "version": self.version, "created_at": self.created_at,
                "last_seen_at": self.last_seen_at, "last_ip": self.last_ip, "disabled": self.disabled}

    @classmethod
    def from_row(cls, row: Any) -> Runner:
        return cls(id=row["id"], name=row["name"], prefix=row["prefix"], labels=tuple(row["labels"] or ()),
                   capacity=row["capacity"], version=row["version"], created_at=row["created_at"],
                   last_seen_at=row["last_seen_at"], last_ip=row["last_ip"], disabled=bool(row["disabled"]),
                   key=str(row["hash"]).encode())


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _prefix(secret: str, kind: str) -> str:
    return secret[: len(kind) + _SHOWN]


def check_labels(labels: Sequence[str]) -> list[str]:
    """The labels, deduplicated in order; ValueError naming a bad one."""
    out: list[str] = []
    for label in labels:
        if not isinstance(label, str) or not LABEL.fullmatch(label):
            raise ValueError(f"label {label!r} is not valid: lower-case letters, digits and . _ - "
                             "(as tasks name them in `labels:`)")
        if label not in out:
            out.append(label)
    return out


class Runners:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # registration tokens

    def create_token(self, labels: Sequence[str] | None = None) -> tuple[RunnerToken, str]:
        """A new one-time token: (its row, the token itself, shown only now)."""
        stored = None if labels is None else check_labels(labels)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        prefix = _prefix(secret, TOKEN_PREFIX)
        with self.engine.begin() as conn:
            conn.execute(t_tokens.insert().values(prefix=prefix, hash=_hash(secret), labels=stored,
                                                  created_at=time.time()))
            row = conn.execute(sa.select(t_tokens).where(t_tokens.c.prefix == prefix)).mappings().one()
        return RunnerToken.from_row(row), secret

    def tokens(self) -> list[RunnerToken]:
        with self.engine.connect() as conn:
            return [RunnerToken.from_row(r) for r in
                    conn.execute(sa.select(t_tokens).order_by(t_tokens.c.id)).mappings()]

    def revoke_token(self, prefix: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(t_tokens.update().where(
                t_tokens.c.prefix == prefix, t_tokens.c.revoked_at.is_(None), t_tokens.c.used_at.is_(None),
            ).values(revoked_at=time.time()))
            if done.rowcount == 0:
                raise LookupError(f"no unused runner token {prefix}")

    # runners

    def register(self, token: str, name: str, labels: Sequence[str] | None, capacity: int,
                 version: str | None = None) -> tuple[Runner, str]:
        """Trade a registration token for a new runner and its credential (shown only now).
        The token is consumed in the same transaction: of two registrations racing with one token,
        one wins. TokenRefused for a bad, revoked or used token; Conflict for a taken name;
        ValueError for a bad name, label or capacity (the token is then not consumed)."""
        if not isinstance(name, str) or not NAME.fullmatch(name) or name.startswith(RESERVED):
            raise ValueError(f"runner name {name!r} is not valid: letters, digits and . _ - (at most 63), "
                             f"not starting with {', '.join(RESERVED)}")
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be between 1 and {MAX_CAPACITY}, got {capacity}")
        own = None if labels is None else check_labels(labels)
        row = self._token_row(token)
        if row is None:
            raise TokenRefused("the registration token is not valid (unknown, revoked or used already)")
        credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
        prefix = _prefix(credential, CREDENTIAL_PREFIX)
        now = time.time()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(t_runners.c.id).where(t_runners.c.name == name)).first():
                raise Conflict(f"runner {name} is registered already: choose another --name")
            taken = conn.execute(t_tokens.update().where(
                t_tokens.c.id == row["id"], t_tokens.c.used_at.is_(None), t_tokens.c.revoked_at.is_(None),
            ).values(used_at=now, used_by=name)).rowcount
            if taken != 1:
                raise TokenRefused("the registration token is not valid (unknown, revoked or used already)")
            conn.execute(t_runners.insert().values(
                name=name, prefix=prefix, hash=_hash(credential),
                labels=own if own is not None else list(row["labels"] or ()),
                capacity=capacity, version=version, created_at=now, disabled=False))
            made = conn.execute(sa.select(t_runners).where(t_runners.c.name == name)).mappings().one()
        return Runner.from_row(made), credential

    def _token_row(self, token: str) -> Any:
        prefix = _prefix(token, TOKEN_PREFIX)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t_tokens).where(t_tokens.c.prefix == prefix)).mappings().first()
        if row is None or row["revoked_at"] is not None or row["used_at"] is not None:
            hmac.compare_digest(_hash(token), _hash(""))  # same work whether or not the prefix exists
            return None
        if not hmac.compare_digest(row["hash"], _hash(token)):
            return None
        return row

    def check(self, credential: str) -> Runner | None:
        """The enabled runner whose credential this is, compared in constant time; None otherwise."""
        prefix = _prefix(credential, CREDENTIAL_PREFIX)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t_runners).where(t_runners.c.prefix == prefix)).mappings().first()
        if row is None or row["disabled"]:
            hmac.compare_digest(_hash(credential), _hash(""))
            return None
        if not hmac.compare_digest(row["hash"], _hash(credential)):
            return None
        return Runner.from_row(row)

    def touch(self, runner: Runner, ip: str | None = None, *, every_s: float = 2.0) -> None:
        """Record that the runner was seen now (at most one write every `every_s` seconds)."""
        now = time.time()
        if runner.last_seen_at is not None and now - runner.last_seen_at < every_s and ip == runner.last_ip:
            return
        with self.engine.begin() as conn:
            conn.execute(t_runners.update().where(t_runners.c.id == runner.id).values(last_seen_at=now, last_ip=ip))

    def get(self, name: str) -> Runner:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t_runners).where(t_runners.c.name == name)).mappings().first()
        if row is None:
            raise LookupError(f"no runner {name}")
        return Runner.from_row(row)

    def list(self) -> list[Runner]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t_runners).order_by(t_runners.c.name)).mappings()
            return [Runner.from_row(r) for r in rows]

    def disable(self, name: str) -> Runner:
        return self._set_disabled(name, True)

    def enable(self, name: str) -> Runner:
        return self._set_disabled(name, False)

    def _set_disabled(self, name: str, disabled: bool) -> Runner:
        with self.engine.begin() as conn:
            done = conn.execute(t_runners.update().where(t_runners.c.name == name).values(disabled=disabled))
            if done.rowcount == 0:
                raise LookupError(f"no runner {name}")
        return self.get(name)

    def can_take(self, labels: Sequence[str], within_s: float = SEEN_S) -> bool:
        """Whether an enabled runner seen in the last `within_s` seconds has all these labels."""
        need = set(labels)
        since = time.time() - within_s
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t_runners.c.labels).where(
                t_runners.c.disabled.is_(False), t_runners.c.last_seen_at >= since)).all()
        return any(need <= set(r.labels or ()) for r in rows)
