"""The default backend: one Docker container per task, over the docker SDK."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container, _create_container_args

from runner.backends.base import LABEL, BackendError, Exit
from runner import owner
from runner.backends.docker_convert import create_kwargs
from runner.owner import OWNER_LABEL
from runner.spec import TaskSpec


@dataclass
class DockerHandle:
    container: Container
    # One blocking wait request per container (started by start()), instead of polling the API.
    done: threading.Event = field(default_factory=threading.Event)
    exit: Exit | None = None
    error: str | None = None


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
            return self._client

    def prepare(self, spec: TaskSpec, host_dir: Path) -> DockerHandle:
        kwargs = create_kwargs(spec, host_dir)
        kwargs["labels"][OWNER_LABEL] = self._owner
        self._ensure_image(spec.image)
        try:
            return DockerHandle(self._create(kwargs))
        except ImageNotFound:  # removed since we last looked: look again (and pull) once
            self._present.discard(spec.image)
            self._ensure_image(spec.image)
            try:
                return DockerHandle(self._create(kwargs))
            except DockerException as e:
                raise BackendError(f"could not create the container for image {spec.image!r}: {_why(e)}") from e
        except APIError as e:
            raise BackendError(f"could not create the container for image {spec.image!r}: {_why(e)}") from e
        except DockerException as e:
            raise BackendError(f"the Docker engine failed: {e}") from e

    def _create(self, kwargs: dict[str, Any]) -> Container:
        # containers.create() without its follow-up inspect: the verbs below need only the id.
        args = _create_container_args({**kwargs, "version": self.client.api._version})
        created = self.client.api.create_container(**args)
        return self.client.containers.prepare_model({"Id": created["Id"]})

    def _ensure_image(self, image: str) -> None:
        if image in self._present:
            return
        try:
            self.client.images.get(image)
            self._present.add(image)
            return
        except ImageNotFound:
            pass
        except DockerException as e:
            raise BackendError(f"the Docker engine failed while looking up image {image!r}: {e}") from e
        if not self.pull:
            raise BackendError(
                f"image {image!r} is not present locally (pulling is off: CLARITY_PULL=never); "
                "build or load it (docker build / docker load), or check the name"
            )
        try:
            self.client.images.pull(image)
        except DockerException as e:
            raise BackendError(
                f"image {image!r} is not present locally and could not be pulled: {_why(e)}; "
                "build or load it locally (docker build / docker load), or check the name"
            ) from e
        self._present.add(image)

    def start(self, handle: DockerHandle) -> None:
        try:
            handle.container.start()
        except DockerException as e:
            raise BackendError(f"could not start the container: {_why(e)}") from e
        threading.Thread(target=self._wait_forever, args=(handle,), daemon=True).start()

    def _wait_forever(self, handle: DockerHandle) -> None:
        try:
            code = int(handle.container.wait()["StatusCode"])
            handle.container.reload()
            oom = bool(handle.container.attrs.get("State", {}).get("OOMKilled", False))
            handle.exit = Exit(code, oom_killed=oom)
        except Exception as e:  # daemon gone, container removed under us: reported by wait()
            handle.error = str(e)
        finally:
            handle.done.set()

    def logs(self, handle: DockerHandle) -> Iterator[bytes]:
        try:
            stream = handle.container.logs(stdout=True, stderr=True, stream=True, follow=True)
        except NotFound:
            return
        except DockerException as e:
            raise BackendError(f"could not read the container's logs: {_why(e)}") from e
        yield from stream

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
            handle.container.remove(force=True, v=True)
        except NotFound:
            pass
        except APIError as e:
            if e.status_code != 409:  # 409: removal already in progress
                raise BackendError(f"could not remove the container: {_why(e)}") from e

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


def _why(e: Exception) -> str:
    explanation: Any = getattr(e, "explanation", None)
    return str(explanation or e)
