"""`HttpPeer`: `runner.protocol.Peer` over HTTP, against the controller's `/api/v1/runner/...`.

Same contract as the in-process peer: `LeaseLost` when the controller answers 409 `lease_lost`;
any other failure (controller unreachable, 5xx, a refused credential) is a `ControllerError`, which
the agent treats like any other error: it backs off and tries again. Every call may be retried as
it is: logs and finish are idempotent on the controller.

A runner authenticates with its own credential, got once by `register` for a one-time
registration token. The controller authenticates itself on every answer (`runner.signature`): a
lease, a heartbeat, a lost lease or artifacts that are not signed with the key of that credential
are not acted on (`Unverified`, a ControllerError like any other). `https://` controllers are
checked against the system's CAs, or against `ca_file` (a private CA, or the controller's own
self-signed certificate).
"""

from __future__ import annotations

import hmac
import io
import os
import ssl
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator, Mapping, Sequence

import httpx

from runner import signature
from runner.protocol import PROTOCOL_VERSION, Beat, Lease, LeaseLost, LogLine
from runner.spec import TaskResult

HEADER = "Clarity-Protocol"
CHUNK = 1 << 16


class ControllerError(Exception):
    """The controller could not be reached, or refused the call for another reason than a lost
    lease (`status` is None when there was no answer)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Unverified(ControllerError):
    """An answer that does not carry the signature of the controller this runner registered with."""


class Untrusted(ControllerError):
    """An `https://` controller whose certificate does not check out against the CAs given."""


SIGNED = (200, 201, 204, 409)  # the answers a runner acts on; errors are errors whoever sends them


def tls(ca_file: str | os.PathLike[str] | None) -> ssl.SSLContext | bool:
    """What httpx verifies an `https://` controller with: the system's CAs, or those of `ca_file`.
    A ValueError names a CA file that cannot be read."""
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=os.fspath(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"CA file {os.fspath(ca_file)}: {getattr(exc, 'strerror', None) or exc}") from None


def _exchange(http: httpx.Client, method: str, url: str, key: bytes, *, headers: Mapping[str, str],
              base_url: str, **kw: Any) -> httpx.Response:
    """Send one call with a fresh nonce; the answer, once its signature checks out."""
    nonce = signature.new_nonce()
    try:
        resp = http.request(method, url, headers={**headers, signature.NONCE_HEADER: nonce}, **kw)
    except httpx.HTTPError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise Untrusted(f"controller {base_url}: {exc} (its TLS certificate is not trusted: pass its CA with "
                            f"--ca-file, or check the address)") from exc
        raise ControllerError(f"controller {base_url} unreachable: {exc}") from exc
    return _verified(resp, key, method, url, nonce, base_url)


def _verb(url: str) -> str:
    return httpx.URL(url).path.rsplit("/api/v1/runner/", 1)[-1]


def _verified(resp: httpx.Response, key: bytes, method: str, url: str, nonce: str, base_url: str) -> httpx.Response:
    """The answer, if it is not one a runner acts on or if it carries the controller's signature."""
    if resp.status_code in SIGNED:
        verb = _verb(url)
        if not signature.verify(key, method, verb, nonce, resp.status_code, resp.content,
                                resp.headers.get(signature.SIGNATURE_HEADER)):
            raise Unverified(f"the answer of {base_url} to {verb} is not signed by the controller this runner "
                             f"registered with (another server at that address, or something in between?)")
    return resp


class UnsafeArchive(ValueError):
    """A downloaded artifacts archive with a member that would land outside its directory."""


class TokenRefused(ControllerError):
    """The controller refused the registration token (unknown, revoked or used already)."""


def register(base_url: str, token: str, *, name: str, labels: Sequence[str] | None, capacity: int,
             version: str | None, timeout: float = 10.0, client: httpx.Client | None = None,
             verify: ssl.SSLContext | bool = True) -> Mapping[str, Any]:
    """Trade a one-time registration token for this runner's credential: the controller's answer,
    `{credential, runner}`. TokenRefused for a bad token; ControllerError for anything else."""
    body: dict[str, Any] = {"token": token, "name": name, "capacity": capacity, "version": version}
    if labels is not None:
        body["labels"] = list(labels)
    url = f"{base_url.rstrip('/')}/api/v1/runner/register"
    owned = client is None
    http = client or httpx.Client(timeout=timeout, verify=verify)
    try:
        resp = _exchange(http, "POST", url, signature.key_of(token), json=body, headers={HEADER: str(PROTOCOL_VERSION)},
                         timeout=timeout, base_url=base_url)
    finally:
        if owned:
            http.close()
    if resp.status_code == 201:
        return HttpPeer._json(resp)
    code, message = _error(resp)
    if resp.status_code == 401:
        raise TokenRefused(message, resp.status_code, code)
    raise ControllerError(f"controller answered {resp.status_code} to register: {message}", resp.status_code, code)


class HttpPeer:
    def __init__(self, base_url: str, credential: str, timeout: float = 10.0, *,
                 client: httpx.Client | None = None, verify: ssl.SSLContext | bool = True) -> None:
        """`client`: an httpx client to send with (tests pass Starlette's TestClient); its own
        base URL is then ignored in favour of `base_url`. `verify`: see `tls`."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {credential}", HEADER: str(PROTOCOL_VERSION)}
        self._key = signature.key_of(credential)
        self._client = client or httpx.Client(timeout=timeout, verify=verify)
        self._owned = client is None

    def hello(self) -> dict[str, Any]:
        """The runner's registration as the controller has it (checks the credential): name,
        labels, capacity, ... A refused credential is a ControllerError with status 401."""
        return self._json(self._post("hello", {}))

    def lease(self, runner: str, labels: Sequence[str], wait_s: float) -> Lease | None:
        resp = self._post("lease", {"runner": runner, "labels": list(labels), "wait_s": wait_s},
                          timeout=self.timeout + wait_s)
        if resp.status_code == 204:
            return None
        return Lease.from_json(self._json(resp))

    def heartbeat(self, lease_id: str) -> Beat:
        data = self._json(self._post("heartbeat", {"lease_id": lease_id}))
        return Beat(expires_at=float(data["expires_at"]), cancel=bool(data["cancel"]))

    def logs(self, lease_id: str, lines: Sequence[LogLine]) -> None:
        self._post("logs", {"lease_id": lease_id,
                            "lines": [{"seq": l.seq, "ts": l.ts, "line": l.line} for l in lines]})

    def finish(self, lease_id: str, result: TaskResult) -> None:
        self._post("finish", {"lease_id": lease_id, "result": result.to_json()})

    def put_artifacts(self, lease_id: str, directory: Path) -> str:
        """Upload `directory` (a task's collected artifacts) as a tar.gz, packed into a temporary
        file and streamed from it; the ref to report as the result's `artifacts_dir`
        (`controller:<run_id>/<task>`)."""
        url = f"{self.base_url}/api/v1/runner/artifacts"
        with tempfile.TemporaryFile() as body:
            pack_into(directory, body)
            size = body.tell()
            body.seek(0)
            headers = {**self.headers, "Content-Type": "application/gzip", "Content-Length": str(size)}
            resp = self._check(self._send("PUT", url, params={"lease": lease_id}, headers=headers,
                                          content=iter(lambda: body.read(CHUNK), b"")), "artifacts upload")
        ref = self._json(resp).get("ref")
        if not isinstance(ref, str):
            raise ControllerError("controller answered the artifacts upload without a ref")
        return ref

    def get_artifacts(self, lease_id: str, ref: str, dest: Path) -> None:
        """Download the artifacts of `ref` into a temporary file (its signature checked on the
        way) and unpack them into `dest` (created). UnsafeArchive for a member with an absolute
        path, `..`, a link leading out of `dest`, or a device."""
        url = f"{self.base_url}/api/v1/runner/artifacts"
        nonce = signature.new_nonce()
        with tempfile.TemporaryFile() as body:
            try:
                with self._client.stream("GET", url, params={"lease": lease_id, "ref": ref},
                                         headers={**self.headers, signature.NONCE_HEADER: nonce},
                                         timeout=max(self.timeout, 60.0)) as resp:
                    if resp.status_code != 200:
                        resp.read()
                        _verified(resp, self._key, "GET", url, nonce, self.base_url)
                        self._check(resp, "artifacts download")
                        raise ControllerError(f"controller answered {resp.status_code} to artifacts download")

                    def chunks() -> Iterator[bytes]:
                        for chunk in resp.iter_bytes(CHUNK):
                            body.write(chunk)
                            yield chunk

                    got = signature.sign(self._key, "GET", _verb(url), nonce, 200, chunks())
                    sent = resp.headers.get(signature.SIGNATURE_HEADER) or ""
                    if not hmac.compare_digest(got.encode(), sent.strip().encode()):
                        raise Unverified(f"the artifacts {ref} sent by {self.base_url} are not signed by the controller "
                                         "this runner registered with")
            except httpx.HTTPError as exc:
                raise ControllerError(f"controller {self.base_url} unreachable: {exc}") from exc
            body.seek(0)
            unpack(body, dest)

    def _send(self, method: str, url: str, *, headers: Mapping[str, str], **kw: Any) -> httpx.Response:
        return _exchange(self._client, method, url, self._key, headers=headers, base_url=self.base_url,
                         timeout=max(self.timeout, 60.0), **kw)

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def _post(self, verb: str, body: dict[str, Any], timeout: float | None = None) -> httpx.Response:
        url = f"{self.base_url}/api/v1/runner/{verb}"
        resp = _exchange(self._client, "POST", url, self._key, json=body, headers=self.headers,
                         timeout=timeout or self.timeout, base_url=self.base_url)
        return self._check(resp, verb)

    @staticmethod
    def _check(resp: httpx.Response, verb: str) -> httpx.Response:
        if resp.status_code < 400:
            return resp
        code, message = _error(resp)
        if resp.status_code == 409 and code == "lease_lost":
            raise LeaseLost(message)
        raise ControllerError(f"controller answered {resp.status_code} to {verb}: {message}", resp.status_code, code)

    @staticmethod
    def _json(resp: httpx.Response) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError as exc:
            raise ControllerError(f"controller answered {resp.status_code} with a body that is not JSON") from exc
        if not isinstance(data, dict):
            raise ControllerError(f"controller answered {resp.status_code} with unexpected JSON")
        return data


def pack(directory: Path) -> bytes:
    """A tar.gz of the directory's contents (names relative to it; symlinks kept as links)."""
    buf = io.BytesIO()
    pack_into(directory, buf)
    return buf.getvalue()


def pack_into(directory: Path, out: BinaryIO) -> None:
    """`pack`, written to a file."""
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for child in sorted(directory.iterdir()):
            tar.add(child, arcname=child.name)


def unpack(data: bytes | BinaryIO, dest: Path) -> None:
    """Extract a tar.gz (bytes or a file) into dest, refusing any member that would land (or point)
    outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        real = os.path.realpath(path)
        return real == root or real.startswith(root + os.sep)

    with tarfile.open(fileobj=io.BytesIO(data) if isinstance(data, bytes) else data, mode="r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            name = PurePosixPath(m.name)
            if name.is_absolute() or ".." in name.parts or not inside(os.path.join(root, m.name)):
                raise UnsafeArchive(f"artifact {m.name!r} is outside the artifacts directory")
            if m.issym():
                target = PurePosixPath(m.linkname)
                if target.is_absolute() or not inside(os.path.join(root, os.path.dirname(m.name), m.linkname)):
                    raise UnsafeArchive(f"artifact {m.name!r} links outside the artifacts directory ({m.linkname})")
            elif m.islnk():
                target = PurePosixPath(m.linkname)
                if target.is_absolute() or ".." in target.parts:
                    raise UnsafeArchive(f"artifact {m.name!r} links outside the artifacts directory ({m.linkname})")
            elif not (m.isfile() or m.isdir()):
                raise UnsafeArchive(f"artifact {m.name!r} is not a file, a directory or a link")
        if hasattr(tarfile, "data_filter"):  # the stdlib's own checks too, where it has them
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python without extraction filters
            tar.extractall(dest, members=members)


def _error(resp: httpx.Response) -> tuple[str | None, str]:
    try:
        err = resp.json()["error"]
        return str(err.get("code")), str(err.get("message"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, resp.text[:200] or resp.reason_phrase
