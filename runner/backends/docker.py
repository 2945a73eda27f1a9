"""The default backend: one Docker container per task, over the docker SDK.

Docker calls of one task, as `docker run` makes them: create, attach (before start: the output is
streamed as it is written, from the first byte, with no `logs` request and no inspect after start),
start, one blocking wait (and one inspect for the OOM flag), remove. The image is looked up once
per image and backend, not for every task.

An image that cannot be had raises `ImageUnavailable`, which says whether trying again can help:
not when pulling is off, the name is not valid, or the registry answered that it has no such
image (or refuses it to us); yes when the registry could not be reached (DNS, refused, timed out),
or for an answer we do not know. Whether a task is tried again is the scheduler's decision
(`controller.engine`): an errored task is tried again once, or up to its `retries:` if more.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container, _create_container_args
from docker.transport.unixconn import UnixHTTPAdapter
from docker.types.daemon import CancellableStream
from docker.utils.socket import frames_iter

from runner.backends.base import LABEL, BackendError, Exit
from runner import owner
from runner.backends.docker_convert import create_kwargs
from runner.masking import MAX_LINE_BYTES
from runner.owner import OWNER_LABEL
from runner.spec import TaskSpec


class ImageUnavailable(BackendError):
    """An image that is not present locally and could not be pulled. `reason`: why, in a few
    words on one line; `hint`: what to do; `permanent`: trying again cannot help (see above)."""

    def __init__(self, image: str, reason: str, *, permanent: bool) -> None:
        self.image, self.reason = image, reason
        self.permanent = permanent
        self.hint = image_hint(image)
        super().__init__(f"image {image!r} is not present locally and could not be pulled ({reason}); {self.hint}")


def image_hint(image: str) -> str:
    """What to do about an image that cannot be had: Clarity's own images are built, not pulled."""
    if image.startswith("clarity-"):
        return ("build it locally (`bash .ci/images.sh` in Clarity's checkout builds the clarity-* images), "
                "or fix the name")
    return "build or load it locally (docker build / docker load), or fix the name"


@dataclass
class DockerHandle:
    container: Container
    # One blocking wait request per container (started by start()), instead of polling the API.
    done: threading.Event = field(default_factory=threading.Event)
    exit: Exit | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # ms per Docker call, for runner.execute.Timings
    # The attached output: (stream id, bytes) frames of stdout and stderr, opened before start;
    # logs() reads it, and closes it.
    stream: CancellableStream | None = None
    streaming: bool = False


class DockerBackend:
    name = "docker"

    def __init__(self, client: docker.DockerClient | None = None, *, pull: bool = True) -> None:
        """`pull`: fetch an image that is not present locally (as `docker run` does); off, a
        missing image is an error at once, with no registry contacted."""
        self._client = client
        self.pull = pull
        self._lock = threading.Lock()
        self._owner = owner.current()
        self._present: set[str] = set()  # images seen locally: not looked up again for every task

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = docker.from_env()
                except DockerException as e:
                    raise BackendError(
                        f"the Docker engine is not reachable ({e}); start it (`bash .ci/setup.sh` does) "
                        "or run with --backend fake"
                    ) from e
                _lean(self._client.api)
            return self._client

    def prepare(self, spec: TaskSpec, host_dir: Path) -> DockerHandle:
        kwargs = create_kwargs(spec, host_dir)
        kwargs["labels"][OWNER_LABEL] = self._owner
        t0 = time.perf_counter()
        self.ensure_image(spec.image)
        t1 = time.perf_counter()
        try:
            container = self._create(kwargs)
        except ImageNotFound:  # removed since we last looked: look again (and pull) once
            self._present.discard(spec.image)
            self.ensure_image(spec.image)
            try:
                container = self._create(kwargs)
            except DockerException as e:
                raise BackendError(f"could not create the container for image {spec.image!r}: {_why(e)}") from e
        except APIError as e:
            raise BackendError(f"could not create the container for image {spec.image!r}: {_why(e)}") from e
        except DockerException as e:
            raise BackendError(f"the Docker engine failed: {e}") from e
        handle = DockerHandle(container)
        t2 = time.perf_counter()
        try:
            handle.stream = self._attach(container.id)
        except Exception as e:  # no handle for the caller to destroy: remove the container here
            try:
                self.destroy(handle)
            except Exception:
                pass
            raise BackendError(f"could not attach to the container's output: {_why(e)}") from e
        handle.timings.update(image=(t1 - t0) * 1000, create=(t2 - t1) * 1000, attach=(time.perf_counter() - t2) * 1000)
        return handle

    def _attach(self, container_id: str) -> CancellableStream:
        """The container's stdout+stderr, attached before start as `docker run` does: nothing
        written is missed, and each chunk arrives as it is written (the `logs` endpoint, asked
        after start, delivers a short task's output only around its exit, and the SDK inspects
        the container first to learn whether it has a TTY: ours never do)."""
        api = self.client.api
        response = api._post(api._url("/containers/{0}/attach", container_id),
                             headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                             params={"stdout": 1, "stderr": 1, "stream": 1, "logs": 0}, stream=True)
        sock = api._get_raw_response_socket(response)  # raises the API error, if any
        return CancellableStream(frames_iter(sock, False), response)  # (stream id, bytes); never a TTY

    def _create(self, kwargs: dict[str, Any]) -> Container:
        # containers.create() without its follow-up inspect: the verbs below need only the id.
        args = _create_container_args({**kwargs, "version": self.client.api._version})
        created = self.client.api.create_container(**args)
        return self.client.containers.prepare_model({"Id": created["Id"]})

    def ensure_image(self, image: str, on_pull: Callable[[str], None] | None = None) -> None:
        """The image is here after this: present locally, or pulled now (when pulling is on;
        `on_pull(image)` is called first). Raises ImageUnavailable, or BackendError when the
        engine fails. Each image is looked up once per backend; pulled, tasks find it present."""
        if image in self._present:
            return
        try:
            self.client.images.get(image)
            self._present.add(image)
            return
        except ImageNotFound:
            pass
        except APIError as e:
            if e.status_code == 400:  # "invalid reference format": no registry can have it
                raise ImageUnavailable(image, f"not a valid image name: {_invalid(e, image)}", permanent=True) from e
            raise BackendError(f"the Docker engine failed while looking up image {image!r}: {_why(e)}") from e
        except DockerException as e:
            raise BackendError(f"the Docker engine failed while looking up image {image!r}: {e}") from e
        if not self.pull:
            raise ImageUnavailable(image, "pulling is off: CLARITY_PULL=never", permanent=True)
        if on_pull is not None:
            on_pull(image)
        try:
            self.client.images.pull(image)
        except DockerException as e:
            reason, permanent = pull_failure(image, e)
            raise ImageUnavailable(image, reason, permanent=permanent) from e
        self._present.add(image)

    def start(self, handle: DockerHandle) -> None:
        try:
            handle.container.start()
        except DockerException as e:
            raise BackendError(f"could not start the container: {_why(e)}") from e
        threading.Thread(target=self._wait_forever, args=(handle,), daemon=True).start()

    def _wait_forever(self, handle: DockerHandle) -> None:
        try:
            t0 = time.perf_counter()
            code = int(handle.container.wait()["StatusCode"])
            t1 = time.perf_counter()
            handle.container.reload()
            handle.timings.update(wait_call=(t1 - t0) * 1000, inspect=(time.perf_counter() - t1) * 1000)
            oom = bool(handle.container.attrs.get("State", {}).get("OOMKilled", False))
            handle.exit = Exit(code, oom_killed=oom)
        except Exception as e:  # daemon gone, container removed under us: reported by wait()
            handle.error = str(e)
        finally:
            handle.done.set()

    def logs(self, handle: DockerHandle) -> Iterator[bytes]:
        stream = handle.stream
        if stream is None:  # not attached (a handle made elsewhere): the logs endpoint instead
            try:
                yield from handle.container.logs(stdout=True, stderr=True, stream=True, follow=True)
            except NotFound:
                return
            except DockerException as e:
                raise BackendError(f"could not read the container's logs: {_why(e)}") from e
            return
        handle.streaming = True  # from now on the reader closes the stream, at its end
        try:
            yield from _whole_lines(stream)
        finally:
            _close(stream)

    def wait(self, handle: DockerHandle, timeout_s: float | None) -> Exit | None:
        if not handle.done.wait(timeout_s):
            return None
        if handle.exit is None:
            raise BackendError(f"lost track of the container: {handle.error}")
        return handle.exit

    def kill(self, handle: DockerHandle) -> None:
        try:
            handle.container.kill()
        except NotFound:
            pass
        except APIError as e:
            if e.status_code != 409:  # 409: not running (already exited or never started)
                raise BackendError(f"could not kill the container: {_why(e)}") from e
        except DockerException as e:
            raise BackendError(f"could not kill the container: {e}") from e

    def destroy(self, handle: DockerHandle | None) -> None:
        if handle is None:
            return
        try:
            handle.container.remove(force=True, v=True)  # also ends an attached stream being read
        except NotFound:
            pass
        except APIError as e:
            if e.status_code != 409:  # 409: removal already in progress
                raise BackendError(f"could not remove the container: {_why(e)}") from e
        finally:
            if handle.stream is not None and not handle.streaming:  # attached, never read (not started)
                _close(handle.stream)

    def sweep(self, run_id: str | None = None) -> int:
        """Remove leftovers of dead Clarity processes (or, with run_id, every container of that
        run); containers of live processes, here or on other hosts, are left alone."""
        wanted = [f"{LABEL}=1"] + ([f"{LABEL}.run={run_id}"] if run_id is not None else [])
        removed = 0
        try:
            # sparse: no inspect per container, which would race with concurrent destroys.
            found = self.client.containers.list(all=True, sparse=True, filters={"label": wanted})
        except DockerException as e:
            raise BackendError(f"cannot reach the Docker engine: {_why(e)}") from e
        for c in found:
            labels = c.attrs.get("Labels") or {}
            if run_id is None and not owner.is_orphan(labels.get(OWNER_LABEL)):
                continue
            try:
                c.remove(force=True, v=True)
                removed += 1
            except NotFound:
                pass
            except APIError as e:
                if e.status_code != 409:  # 409: someone else is removing it already
                    raise BackendError(f"could not remove leftover container {c.id[:12]}: {_why(e)}") from e
        return removed


def _lean(api: docker.APIClient) -> None:
    """Cheaper calls to a local engine (its unix socket), for a client of our own:
    - one connection pool for every call: the SDK's adapter keeps one per URL, and every
      container has its own URLs, so each call of a task opened (and later closed) a connection;
    - requests does not read the proxy variables and ~/.netrc again on every call (a unix
      socket is never proxied)."""
    adapter = api.get_adapter(api.base_url)
    if not isinstance(adapter, UnixHTTPAdapter):
        return
    pool_of = adapter.get_connection
    adapter.get_connection = lambda url, proxies=None: pool_of(api.base_url, proxies)
    api.trust_env = False


def _whole_lines(frames: Iterator[tuple[int, bytes]]) -> Iterator[bytes]:
    """stdout and stderr merged, cut at line ends per stream: a line written in pieces on one
    stream never takes in a piece of the other (as with the line-based `logs` endpoint). A line
    longer than MAX_LINE_BYTES goes in pieces of that size, as LineSplitter would cut it; a last
    line without a newline is ended with one at the end of the output."""
    partial: dict[int, bytes] = {}
    try:
        for stream_id, data in frames:
            buf = partial.get(stream_id, b"") + data
            cut = buf.rfind(b"\n") + 1
            if cut:
                yield buf[:cut]
                buf = buf[cut:]
            while len(buf) > MAX_LINE_BYTES:
                yield buf[:MAX_LINE_BYTES] + b"\n"
                buf = buf[MAX_LINE_BYTES:]
            partial[stream_id] = buf
    except Exception:  # the stream broke: what was read still counts
        yield from (buf + b"\n" for buf in partial.values() if buf)
        raise
    yield from (buf + b"\n" for buf in partial.values() if buf)


def _close(stream: CancellableStream) -> None:
    """End the attach connection (a reader blocked on it sees its end) and release its socket."""
    try:
        stream.close()  # shutdown + close of the socket
    except Exception:  # already closed, or the daemon went away
        pass
    response = getattr(stream, "_response", None)
    try:
        if response is not None:
            response.close()  # the socket's file object holds the descriptor until it is closed too
    except Exception:
        pass


def _why(e: Exception) -> str:
    explanation: Any = getattr(e, "explanation", None)
    return str(explanation or e)


# What the registry (through the engine) answers to a pull, lower-cased: words that say the image
# is not there for us (trying again cannot help), and words that say the registry was not reached.
_UNREACHED = (
    (("no such host", "server misbehaving", "name resolution", "lookup "), "its name does not resolve"),
    (("connection refused",), "it refused the connection"),
    (("timeout", "timed out", "deadline exceeded"), "it did not answer in time"),
    (("network is unreachable", "no route to host", "connection reset", "eof"), "the connection failed"),
)
_DENIED = ("pull access denied", "repository does not exist", "unauthorized", "denied")
_NOT_FOUND = ("manifest unknown", "name unknown", "not found")


def pull_failure(image: str, e: Exception) -> tuple[str, bool]:
    """Why a pull failed, in a few words on one line, and whether that is permanent."""
    text = " ".join(_why(e).split())
    low = text.lower()
    registry = registry_of(image)
    for words, why in _UNREACHED:
        if any(w in low for w in words):
            return f"registry {registry} cannot be reached: {why}", False
    if any(w in low for w in _DENIED):
        return f"registry {registry} has no such repository, or it needs `docker login`: pull access denied", True
    if isinstance(e, NotFound) or any(w in low for w in _NOT_FOUND):
        return f"registry {registry} has no such image: {_cut(text)}", True
    return f"registry {registry}: {_cut(text)}", False


def registry_of(image: str) -> str:
    """The registry an image name is pulled from, as Docker reads the name."""
    first, slash, _rest = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _invalid(e: Exception, image: str) -> str:
    """`no such image: NAME: invalid reference format: ...` -> `invalid reference format: ...`."""
    return _cut(" ".join(_why(e).split()).removeprefix("no such image: ").removeprefix(f"{image}: "))


def _cut(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
