"""An image that cannot be had: `clarity run` says so before anything runs (file:line:col, exit 2);
at run time the backend says whether trying again can help. And the console's prefix column,
wide enough for the tasks of sub-runs.

Real Docker, real git, real `clarity run` processes. No registry outside this machine is
contacted: pulls go to a registry served by the test on 127.0.0.1 (Docker trusts loopback
registries over plain HTTP), or to a closed port of 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from controller.console import Console
from runner.execute import execute
from runner.spec import Outcome, TaskResult, TaskSpec
from runner.workspace import WorkspaceCache
from tests.runner.conftest import IMAGE

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
MISSING = "clarity-does-not-exist:1.0"
HINT_CLARITY = ("  hint: build it locally (`bash .ci/images.sh` in Clarity's checkout builds the clarity-* images), "
                "or fix the name")
HINT = "  hint: build or load it locally (docker build / docker load), or fix the name"


# -- helpers ------------------------------------------------------------------------------------


@dataclass
class Registry:
    """A registry on 127.0.0.1 that has the images in `images` (name:tag -> manifest and blobs)
    and answers `manifest unknown` for every other; `asked` counts the pulls of each name:tag."""

    port: int
    images: dict[str, tuple[bytes, dict[str, bytes]]] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)

    def name(self, repo_tag: str) -> str:
        return f"127.0.0.1:{self.port}/{repo_tag}"


@pytest.fixture
def registry() -> Iterator[Registry]:
    state = Registry(0)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, kind: str = "application/json", digest: str = "") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/v2/":
                return self._send(200, b"{}")
            found = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/(.+)", self.path)
            if found and found[2] == "manifests":  # by tag, or by the digest a HEAD by tag gave
                key = f"{found[1]}:{found[3]}"
                if self.command == "HEAD":  # how every pull starts
                    state.asked[key] = state.asked.get(key, 0) + 1
                for name, (manifest, _blobs) in state.images.items():
                    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
                    if key in (name, f"{found[1]}:{digest}"):
                        return self._send(200, manifest, "application/vnd.docker.distribution.manifest.v2+json", digest)
            if found and found[2] == "blobs":
                for _manifest, blobs in state.images.values():
                    if found[3] in blobs:
                        return self._send(200, blobs[found[3]], "application/octet-stream", found[3])
            self._send(404, json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}).encode())

        do_HEAD = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def serve_busybox(registry: Registry, repo_tag: str, docker_client: Any) -> None:
    """Put the local busybox image in the registry as `repo_tag` (its layer gzipped, as pushed)."""
    saved = tarfile.open(fileobj=io.BytesIO(b"".join(docker_client.images.get(IMAGE).save())))
    index = json.load(saved.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
    config = saved.extractfile(index["Config"]).read()  # type: ignore[union-attr]
    blobs = {"sha256:" + hashlib.sha256(config).hexdigest(): config}
    layers = []
    for path in index["Layers"]:
        layer = gzip.compress(saved.extractfile(path).read(), mtime=0)  # type: ignore[union-attr]
        digest = "sha256:" + hashlib.sha256(layer).hexdigest()
        blobs[digest] = layer
        layers.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                       "digest": digest})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": next(iter(blobs))},
        "layers": layers,
    }).encode()
    registry.images[repo_tag] = (manifest, blobs)


def clarity(cwd: Path, home: Path, *args: str, pull: str = "never",
            extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITY_")}
    env.update({"CLARITY_HOME": str(home), "CLARITY_PULL": pull, "PYTHONPATH": str(ROOT), **(extra or {})})
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(textwrap.dedent(text))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=Dev", "-c", "user.email=dev@example.org", "commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


def workflow(*tasks: str, name: str = "ci", trigger: str = "push") -> str:
    body = "".join(textwrap.indent(textwrap.dedent(t), "    ") for t in tasks)
    return f"workflow:\n  name: {name}\n  triggers:\n    - type: {trigger}\n  tasks:\n{body}"


# -- before anything runs -----------------------------------------------------------------------


def test_missing_image_stops_the_run_before_anything_runs(tmp_path: Path) -> None:
    ci = workflow(
        f"- name: test\n  image: {IMAGE}\n  commands: ['echo ran']\n",
        f"- name: build\n  image: {MISSING}\n  commands: ['echo ran']\n",
        f"- name: again\n  image: {MISSING}\n  commands: ['echo ran']\n",  # the same image: one message
        "- name: skipped\n  image: clarity-only-on-a-tag:1\n  when: {event: [tag]}\n  commands: ['echo ran']\n",
        "- name: deploy\n  type: workflow\n  workflow: deploy.yaml\n",
    )
    deploy = workflow("- name: release\n  image: acme/not-here:2\n  commands: ['echo ran']\n",
                      name="deploy", trigger="manual")
    repo = make_repo(tmp_path / "repo", {".clarity/ci.yaml": ci, ".clarity/deploy.yaml": deploy})
    proc = clarity(repo, tmp_path / "home", "run", ".clarity/ci.yaml")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f".clarity/ci.yaml:10:14: image '{MISSING}' is not present locally and could not be pulled "
        "(pulling is off: CLARITY_PULL=never)",
        HINT_CLARITY,
        ".clarity/deploy.yaml:7:14: image 'acme/not-here:2' is not present locally and could not be pulled "
        "(pulling is off: CLARITY_PULL=never)",
        HINT,
        "clarity: error: 2 images that the tasks need cannot be had (above); nothing was run",
    ]
    assert proc.stdout == ""  # no run, no task started
    assert clarity(repo, tmp_path / "home", "runs").stdout.startswith("no runs yet")


def test_registry_without_the_image_is_named_in_one_line(tmp_path: Path, registry: Registry) -> None:
    gone = registry.name("team/app:1")
    ci = workflow(f"- name: build\n  image: {gone}\n  commands: ['echo ran']\n")
    repo = make_repo(tmp_path / "repo", {".clarity/ci.yaml": ci})
    proc = clarity(repo, tmp_path / "home", "run", pull="missing")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"clarity: pulling image '{gone}' (not present locally)",
        f".clarity/ci.yaml:7:14: image '{gone}' is not present locally and could not be pulled "
        f"(registry 127.0.0.1:{registry.port} has no such image: manifest unknown)",
        HINT,
        "clarity: error: an image that the tasks need cannot be had (above); nothing was run",
    ]
    assert registry.asked == {"team/app:1": 1}
    assert proc.stdout == ""


def test_unreachable_registry_is_named_in_one_line(tmp_path: Path) -> None:
    closed = "127.0.0.1:1/team/app:1"  # nothing listens on port 1
    ci = workflow(f"- name: build\n  image: {closed}\n  commands: ['echo ran']\n")
    repo = make_repo(tmp_path / "repo", {".clarity/ci.yaml": ci})
    proc = clarity(repo, tmp_path / "home", "run", pull="missing")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (f".clarity/ci.yaml:7:14: image '{closed}' is not present locally and could not be pulled "
            "(registry 127.0.0.1:1 cannot be reached: it refused the connection)") in proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_image_is_pulled_once_before_the_run(tmp_path: Path, registry: Registry, docker_client: Any) -> None:
    serve_busybox(registry, "team/box:1", docker_client)
    pulled = registry.name("team/box:1")
    ci = workflow(f"- name: one\n  image: {pulled}\n  commands: ['echo one ran']\n",
                  f"- name: two\n  image: {pulled}\n  commands: ['echo two ran']\n")
    repo = make_repo(tmp_path / "repo", {".clarity/ci.yaml": ci})
    try:
        proc = clarity(repo, tmp_path / "home", "run", pull="missing")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stderr.splitlines() == [f"clarity: pulling image '{pulled}' (not present locally)"]
        assert "one │ one ran" in proc.stdout and "two │ two ran" in proc.stdout
        assert registry.asked == {"team/box:1": 1}  # once, before the run: the tasks found it present
    finally:
        try:
            docker_client.images.remove(pulled, force=True)
        except Exception:
            pass


def test_missing_image_of_a_plugin_task_type(tmp_path: Path) -> None:
    # A plugin found on PYTHONPATH (its dist-info names its entry point), whose manifest names an
    # image that is not here: the task of its type is pointed at.
    site = tmp_path / "site"
    shutil.copytree(ROOT / "examples" / "plugins" / "clarity-hello" / "src" / "clarity_hello", site / "clarity_hello",
                    ignore=shutil.ignore_patterns("__pycache__"))
    manifest = site / "clarity_hello" / "manifest.yaml"
    manifest.write_text(re.sub(r"(?m)^image: .*$", "image: hello-missing:1.0", manifest.read_text()))
    info = site / "clarity_hello-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clarity-hello\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[clarity.plugins]\nhello = clarity_hello\n")
    ci = workflow("- name: greet\n  type: hello\n  config: {greeting: hi}\n")
    repo = make_repo(tmp_path / "repo", {".clarity/ci.yaml": ci})
    proc = clarity(repo, tmp_path / "home", "run", extra={"PYTHONPATH": f"{site}{os.pathsep}{ROOT}"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[:2] == [
        ".clarity/ci.yaml:7:13: image 'hello-missing:1.0' is not present locally and could not be pulled "
        "(pulling is off: CLARITY_PULL=never)",
        HINT,
    ]


# -- at run time ------------------------------------------------------------------------------


@pytest.fixture
def run_pulling(docker_client: Any, tmp_path: Path) -> Callable[[TaskSpec], tuple[TaskResult, list[str]]]:
    from runner.backends.docker import DockerBackend

    def run(spec: TaskSpec) -> tuple[TaskResult, list[str]]:
        lines: list[str] = []
        result = execute(spec, DockerBackend(docker_client, pull=True), work_root=tmp_path / "w",
                         workspaces=WorkspaceCache(tmp_path / "c"), on_log=lines.append)
        return result, lines

    return run


def test_image_the_registry_does_not_have_is_permanent(registry: Registry, make_spec: Callable[..., TaskSpec],
                                                       run_pulling: Callable[[TaskSpec], tuple[TaskResult, list[str]]],
                                                       docker_client: Any, tmp_path: Path) -> None:
    from runner.backends.docker import DockerBackend, ImageUnavailable

    gone = registry.name("team/app:1")
    result, lines = run_pulling(make_spec("true", image=gone))
    error = (f"image '{gone}' is not present locally and could not be pulled (registry 127.0.0.1:{registry.port} "
             "has no such image: manifest unknown); build or load it locally (docker build / docker load), or fix the name")
    assert result.outcome is Outcome.ERRORED and result.error == error
    assert result.retryable is False  # the scheduler does not try it again
    assert lines == [f"[clarity] {error}"]  # the reason, once
    with pytest.raises(ImageUnavailable) as caught:
        DockerBackend(docker_client, pull=True).ensure_image(gone)
    assert caught.value.permanent


def test_pulling_off_and_invalid_names_are_permanent(docker_client: Any) -> None:
    from runner.backends.docker import DockerBackend, ImageUnavailable

    with pytest.raises(ImageUnavailable) as off:
        DockerBackend(docker_client, pull=False).ensure_image(MISSING)
    assert off.value.permanent and off.value.reason == "pulling is off: CLARITY_PULL=never"
    with pytest.raises(ImageUnavailable) as invalid:
        DockerBackend(docker_client, pull=True).ensure_image("Acme/App:1")
    assert invalid.value.permanent
    assert invalid.value.reason == "not a valid image name: invalid reference format: repository name must be lowercase"


def test_unreachable_registry_is_transient(make_spec: Callable[..., TaskSpec],
                                           run_pulling: Callable[[TaskSpec], tuple[TaskResult, list[str]]],
                                           docker_client: Any) -> None:
    from runner.backends.docker import DockerBackend, ImageUnavailable

    closed = "127.0.0.1:1/team/app:1"
    result, lines = run_pulling(make_spec("true", image=closed))
    assert result.outcome is Outcome.ERRORED and result.retryable is True
    assert result.error == (f"image '{closed}' is not present locally and could not be pulled (registry 127.0.0.1:1 "
                            "cannot be reached: it refused the connection); build or load it locally "
                            "(docker build / docker load), or fix the name")
    assert lines == [f"[clarity] {result.error}"]
    with pytest.raises(ImageUnavailable) as caught:
        DockerBackend(docker_client, pull=True).ensure_image(closed)
    assert not caught.value.permanent


@pytest.mark.parametrize("answer, permanent, reason", [
    ('Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 127.0.0.53:53: no such host',
     False, "registry docker.io cannot be reached: its name does not resolve"),
    ('Get "https://ghcr.io/v2/": net/http: request canceled (Client.Timeout exceeded while awaiting headers)',
     False, "registry ghcr.io cannot be reached: it did not answer in time"),
    ("pull access denied for acme/app, repository does not exist or may require 'docker login': denied: "
     "requested access to the resource is denied",
     True, "registry docker.io has no such repository, or it needs `docker login`: pull access denied"),
    ("manifest for ghcr.io/acme/app:9 not found: manifest unknown: manifest unknown",
     True, "registry ghcr.io has no such image: manifest for ghcr.io/acme/app:9 not found: manifest unknown: "
           "manifest unknown"),
    ("received unexpected HTTP status: 502 Bad Gateway", False, "registry ghcr.io: received unexpected HTTP status: "
                                                                "502 Bad Gateway"),
])
def test_pull_failures_are_sorted(answer: str, permanent: bool, reason: str) -> None:
    # What engines answer for registries this machine cannot reach, without contacting them.
    from docker.errors import APIError

    from runner.backends.docker import pull_failure

    image = "acme/app:1" if "docker.io" in reason else "ghcr.io/acme/app:9"
    assert pull_failure(image, APIError("500", explanation=answer)) == (reason, permanent)


# -- the console -------------------------------------------------------------------------------


def test_prefix_column_fits_the_tasks_of_sub_runs(tmp_path: Path) -> None:
    ci = workflow(f"- name: test\n  image: {IMAGE}\n  commands: ['echo testing']\n",
                  "- name: deploy\n  type: workflow\n  workflow: deploy.yaml\n")
    deploy = workflow(f"- name: release\n  image: {IMAGE}\n  commands: ['echo releasing']\n",
                      name="deploy", trigger="manual")
    repo = make_repo(tmp_path / "repo", {".clarity/ci.yaml": ci, ".clarity/deploy.yaml": deploy})
    proc = clarity(repo, tmp_path / "home", "run", ".clarity/ci.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prefixed = [line for line in proc.stdout.splitlines() if " │ " in line]
    assert {line.index(" │ ") for line in prefixed} == {len("deploy/release")}, proc.stdout
    assert "test           │ testing" in prefixed and "deploy/release │ releasing" in prefixed


def test_console_says_an_error_once() -> None:
    out = io.StringIO()
    c = Console(out, ["build"], tty=False, workflow="ci", shown=["deploy/release"])
    error = "image 'x:1' is not present locally and could not be pulled (pulling is off: CLARITY_PULL=never)"
    c.task_started("build", 1)
    c.task_log("build", f"[clarity] {error}")
    c.task_finished("build", TaskResult(Outcome.ERRORED, started_at=1.0, finished_at=1.5, error=error), False)
    c.task_log("deploy/release/unforeseen", "a name wider than any foreseen")
    c.task_log("build", "after it")
    c.close()
    assert out.getvalue().splitlines() == [
        "build          │ ▶ started",
        f"build          │ [clarity] {error}",
        "build          │ ! errored in 0.5s",
        "deploy/release/unforeseen │ a name wider than any foreseen",
        "build                     │ after it",
    ]
