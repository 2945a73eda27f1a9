"""How the controller proves itself to a runner on every call of the runner protocol.

The runner proves itself with its credential (`Authorization: Bearer ...`). The controller keeps
only the sha256 of that credential, so that digest is the key both ends share: with every
request the runner sends a fresh random nonce (`Clarity-Nonce`), and the controller answers with
`Clarity-Signature: v1=<hex>`, an HMAC-SHA256 under that key of the method, the path, the nonce,
the status and the body. A runner acts on an answer (a lease, a heartbeat's cancel, a lost lease,
artifacts) only when the signature checks out, compared in constant time: a server that is not
the controller the runner registered with, or anything between them that changes or replays an
answer, can make a call fail, never make the runner run something. Registration is answered the
same way, keyed by the sha256 of the one-time registration token.

TLS (`https://` with a CA file) protects the traffic itself; the signature holds with or without it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Iterable

NONCE_HEADER = "Clarity-Nonce"
SIGNATURE_HEADER = "Clarity-Signature"
VERSION = "v1"
NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")


def key_of(secret: str) -> bytes:
    """The signing key for a credential or a registration token: its sha256, as the controller stores it."""
    return hashlib.sha256(secret.encode()).hexdigest().encode()


def new_nonce() -> str:
    return secrets.token_hex(16)


def sign(key: bytes, method: str, path: str, nonce: str, status: int, body: bytes | Iterable[bytes]) -> str:
    """The `Clarity-Signature` value for an answer; `body` may come in chunks (a file)."""
    mac = hmac.new(key, f"clarity-runner-{VERSION}\n{method.upper()}\n{path}\n{nonce}\n{status}\n".encode(),
                   hashlib.sha256)
    for chunk in [body] if isinstance(body, bytes) else body:
        mac.update(chunk)
    return f"{VERSION}={mac.hexdigest()}"


def verify(key: bytes, method: str, path: str, nonce: str, status: int, body: bytes, header: str | None) -> bool:
    """Whether `header` is the controller's signature of this answer (constant-time compare)."""
    expected = sign(key, method, path, nonce, status, body)
    return header is not None and hmac.compare_digest(header.strip().encode(), expected.encode())
