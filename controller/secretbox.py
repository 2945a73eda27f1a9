"""Secrets kept in the database (a forge token), sealed with the controller's own key.

The key is a Fernet key (AES-128-CBC + HMAC-SHA256, url-safe base64 of 32 bytes): from
`CLARITY_ENCRYPTION_KEY` when it is set, else from `CLARITY_HOME/secret.key` (mode 0600), made the
first time it is needed. Without the key a sealed value cannot be opened: back it up (and give
every controller on one database the same key).

A sealed value is `fernet:v1:` followed by the Fernet token; anything else is refused by `open`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Mapping

from cryptography.fernet import Fernet, InvalidToken

ENV_KEY = "CLARITY_ENCRYPTION_KEY"
KEY_FILE = "secret.key"  # in CLARITY_HOME
PREFIX = "fernet:v1:"
_FIX = "set the token again (clarity repo set NAME --forge-token - or --forge-token-file PATH)"


class SecretBoxError(Exception):
    """A key that cannot be used, or a sealed value that cannot be opened: says what to do."""


def fingerprint(key: bytes) -> str:
    """A short, safe-to-show name of a key: the first 12 hex digits of its sha256."""
    return hashlib.sha256(key).hexdigest()[:12]


class SecretBox:
    def __init__(self, key: bytes, *, source: str = "the given key") -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise SecretBoxError(f"{source} is not a Fernet key (url-safe base64 of 32 bytes; make one with "
                                 "`python3 -c 'from cryptography.fernet import Fernet; "
                                 "print(Fernet.generate_key().decode())'`)") from None
        self.source = f"{source} (fingerprint {fingerprint(key.strip())})"

    @classmethod
    def for_home(cls, home: Path, env: Mapping[str, str] | None = None) -> SecretBox:
        """The controller's box: the key from CLARITY_ENCRYPTION_KEY if set, else from
        `home/secret.key`, which is created (once, atomically) when it does not exist."""
        env = os.environ if env is None else env
        if env.get(ENV_KEY, "").strip():
            return cls(env[ENV_KEY].strip().encode(), source=ENV_KEY)
        path = home / KEY_FILE
        return cls(_key_file(path), source=f"the key in {path}")

    def seal(self, plaintext: str) -> str:
        return PREFIX + self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        if not sealed.startswith(PREFIX):
            raise SecretBoxError(f"a stored secret is not sealed by Clarity (no {PREFIX!r} prefix): {_FIX}")
        try:
            return self._fernet.decrypt(sealed[len(PREFIX):].encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretBoxError(
                f"a stored secret cannot be opened with {self.source}: it was sealed with another key, or it is "
                f"damaged. Restore the key it was sealed with ({KEY_FILE} from a backup, or {ENV_KEY}), or {_FIX}"
            ) from None


def _read_key(path: Path) -> bytes | None:
    """The key in `path`; None while it does not exist or is still empty (being written without
    os.link, see `_key_file`)."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SecretBoxError(f"cannot read the secret key {path}: {exc.strerror}") from None
    return data or None


def _key_file(path: Path) -> bytes:
    """The key in `path`, made first when there is none. Two processes making it at once end with
    the same key: each writes its own temporary file and links it to `path`, which fails when
    `path` exists; the loser reads the winner's key."""
    key = _read_key(path)
    if key is not None:
        return key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(Fernet.generate_key() + b"\n")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)  # never replaces an existing file
            except FileExistsError:
                pass  # another process was first: use its key
            except OSError:  # a file system without hard links: create exclusively, then write
                _create_exclusive(path, tmp.read_bytes())
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise SecretBoxError(f"cannot create the secret key {path}: {exc.strerror} "
                             f"(or set {ENV_KEY} to a Fernet key)") from None
    deadline = time.monotonic() + 5
    while (key := _read_key(path)) is None:  # empty only for a moment, when written by _create_exclusive
        if time.monotonic() > deadline:
            raise SecretBoxError(f"the secret key {path} is empty: remove it (nothing was sealed with it) "
                                 f"or restore it from a backup")
        time.sleep(0.05)
    return key


def _create_exclusive(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
