"""Artifacts between machines: uploaded to the controller by the runner of the upstream task,
downloaded by the runner of the downstream one (`/api/v1/runner/artifacts`, `HttpPeer`, `Agent`)."""

from __future__ import annotations

import io
import os
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import httpx
import pytest

from controller import artifacts
from controller.engine import RunSpec
from controller.store import tables
from controller.workflow.compile import GitInfo
from controller.workflow.lint import lint_text
from runner.agent import Agent
from runner.backends.fake import FakeBackend
from runner.client import ControllerError, HttpPeer, UnsafeArchive, pack, unpack
from runner.protocol import Lease
from runner.spec import ArtifactIn, Outcome, TaskResult, Workspace
from runner.workspace import WorkspaceCache
from tests.api.conftest import Api, git
from tests.runners.conftest import PROTO, register, start_run

PASSING = """\
workflow:
  name: pass
  tasks:
    - name: a
      image: alpine
      commands: ["mkdir -p dist && echo from-a > dist/x.txt"]
      artifacts: [dist/]
    - name: b
      image: alpine
      needs: [a]
      commands: ["cat dist/x.txt"]
"""


def start(api: Api, source: Path, text: str) -> int:
    wf, _ = lint_text(text, ".clarity/ci.yaml")
    assert wf is not None
    sha = git(source, "rev-parse", "HEAD")
    run_id = api.services.scheduler.create_run(RunSpec(
        workflow=wf, workflow_text=text, workspace=Workspace(repo=str(source), commit=sha),
        git=GitInfo(sha=sha, ref="refs/heads/main", branch="main"), event="push", repo="acme/app", inputs={}))
    assert run_id is not None
    api.services.scheduler.start(run_id)
    return run_id


def http(api: Api, credential: str) -> HttpPeer:
    return HttpPeer("http://testserver", credential, timeout=5, client=api.client)


def tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def put(api: Api, credential: str, lease_id: str, body: bytes) -> httpx.Response:
    resp: httpx.Response = api.client.put(f"/api/v1/runner/artifacts?lease={lease_id}", content=body,
                                          headers={**PROTO, "Authorization": f"Bearer {credential}"})
    return resp


def get(api: Api, credential: str, lease_id: str, ref: str) -> httpx.Response:
    resp: httpx.Response = api.client.get("/api/v1/runner/artifacts", params={"lease": lease_id, "ref": ref},
                                          headers={**PROTO, "Authorization": f"Bearer {credential}"})
    return resp


def test_upload_download_and_who_may(api: Api, source_repo: Path, tmp_path: Path) -> None:
    one, two = register(api, "one"), register(api, "two")
    run_id = start_run(api, source_repo)
    other_run = start_run(api, source_repo)
    first = http(api, one).lease("one", ["linux"], 0)
    theirs = http(api, two).lease("two", ["linux"], 0)
    assert first is not None and theirs is not None
    assert first.spec.run_id == str(run_id) and theirs.spec.run_id == str(other_run)

    (tmp_path / "arts" / "dist").mkdir(parents=True)
    (tmp_path / "arts" / "dist" / "x.txt").write_text("hello")
    ref = http(api, one).put_artifacts(first.lease_id, tmp_path / "arts")
    assert ref == f"controller:{run_id}/{first.spec.task}"
    stored = Path(api.services.settings.home) / "artifacts" / str(run_id) / f"{first.spec.task}.tar.gz"
    assert stored.is_file() and not list(stored.parent.glob("*.tmp"))

    http(api, one).get_artifacts(first.lease_id, ref, tmp_path / "back")
    assert (tmp_path / "back" / "dist" / "x.txt").read_text() == "hello"

    # Another runner's lease: a lost one, to the caller (upload and download alike).
    resp = put(api, two, first.lease_id, tarball({"x": b"1"}))
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "lease_lost"
    assert get(api, two, first.lease_id, ref).status_code == 409
    # A ref of another run than the lease's: refused.
    resp = get(api, two, theirs.lease_id, ref)
    assert resp.status_code == 403
    with pytest.raises(ControllerError) as info:
        http(api, two).get_artifacts(theirs.lease_id, ref, tmp_path / "nope")
    assert info.value.status == 403
    # Missing, malformed, no credential, no protocol header.
    assert get(api, one, first.lease_id, f"controller:{run_id}/test").status_code == 404
    assert get(api, one, first.lease_id, "/etc/passwd").status_code == 400
    assert api.client.get("/api/v1/runner/artifacts", params={"lease": first.lease_id, "ref": ref},
                          headers=PROTO).status_code == 401
    assert api.client.get("/api/v1/runner/artifacts", params={"lease": first.lease_id, "ref": ref},
                          headers={"Authorization": f"Bearer {one}"}).status_code == 400
    assert put(api, one, first.lease_id, b"").status_code == 400
    # A finished lease can no longer upload.
    http(api, one).finish(first.lease_id, TaskResult(Outcome.SUCCEEDED, exit_code=0, artifacts_dir=ref))
    assert put(api, one, first.lease_id, tarball({"x": b"1"})).status_code == 409


def test_uploads_are_streamed_to_disk_within_their_own_limit(make_api: Callable[..., Api], source_repo: Path) -> None:
    """Artifacts are not held in memory: larger than `max_body_bytes` is fine up to
    `max_artifact_bytes`; past it, 413 and nothing is left behind, chunked or not."""
    api = make_api(max_body_bytes=2048, max_artifact_bytes=64 * 1024)
    home = Path(api.services.settings.home)
    one = register(api, "one")
    start_run(api, source_repo)
    lease = http(api, one).lease("one", ["linux"], 0)
    assert lease is not None
    big = tarball({"dist/big.bin": os.urandom(20 * 1024)})  # incompressible: more than max_body_bytes
    assert len(big) > 2048
    resp = put(api, one, lease.lease_id, big)
    assert resp.status_code == 201, resp.text
    assert artifacts.path(home, resp.json()["ref"]).read_bytes() == big

    too_big = put(api, one, lease.lease_id, os.urandom(65 * 1024))  # by Content-Length
    assert too_big.status_code == 413 and "65536" in too_big.text  # the limit, said
    chunked = api.client.put(f"/api/v1/runner/artifacts?lease={lease.lease_id}",
                             content=iter([os.urandom(32 * 1024) for _ in range(3)]),  # no Content-Length
                             headers={**PROTO, "Authorization": f"Bearer {one}"})
    assert chunked.status_code == 413, chunked.text
    assert artifacts.path(home, resp.json()["ref"]).read_bytes() == big  # the stored one is untouched
    assert list(artifacts.incoming(home).iterdir()) == []  # no partial upload left behind

    # refused before the body is read: a bad credential, another runner's lease
    assert put(api, "clrc_bad", lease.lease_id, big).status_code == 401
    two = register(api, "two")
    assert put(api, two, lease.lease_id, big).status_code == 409
    assert list(artifacts.incoming(home).iterdir()) == []


def test_stored_artifacts_are_removed_after_the_retention(api: Api, tmp_path: Path) -> None:
    store = api.services.store
    home = tmp_path / "home"
    uploaded, collected = home / "artifacts", home / "work" / "artifacts"
    now = time.time()
    ids = {}
    for name in ("old", "recent", "running"):
        ids[name] = store.create_run(repo="acme/app", workflow=name, workflow_file=".clarity/ci.yaml", blob_sha=None,
                                     commit_sha=None, ref=None, event="push", dirty=False, trigger=None,
                                     tasks=[("a", "alpine")])
    with store.engine.begin() as conn:
        for name, finished in (("old", now - 31 * 86400), ("recent", now - 86400), ("running", None)):
            conn.execute(tables.runs.update().where(tables.runs.c.id == ids[name]).values(finished_at=finished))
    for run_id in [*ids.values(), 99999]:  # 99999: a run that is gone
        (uploaded / str(run_id)).mkdir(parents=True)
        (uploaded / str(run_id) / "a.tar.gz").write_bytes(b"x")
        (collected / str(run_id) / "a").mkdir(parents=True)
    incoming = artifacts.incoming(home)
    incoming.mkdir()
    (incoming / ".upload.old.tmp").write_bytes(b"x")
    os.utime(incoming / ".upload.old.tmp", (now - 2 * 86400, now - 2 * 86400))
    (incoming / ".upload.new.tmp").write_bytes(b"x")

    removed = artifacts.prune([uploaded, collected, home / "nothing-here"], store.finished_at, 30 * 86400, now=now)
    assert removed == 4  # old and gone, in both places
    for root in (uploaded, collected):
        assert sorted(p.name for p in root.iterdir() if p.name != ".incoming") == sorted(
            str(ids[n]) for n in ("recent", "running"))
    assert [p.name for p in incoming.iterdir()] == [".upload.new.tmp"]
    assert artifacts.prune([uploaded, collected], store.finished_at, 30 * 86400, now=now) == 0


def test_unpack_refuses_what_would_land_outside(tmp_path: Path) -> None:
    def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
        return buf.getvalue()

    for bad in (tarball({"/abs.txt": b"x"}), tarball({"../up.txt": b"x"}), tarball({"a/../../up.txt": b"x"}),
                link("l", "/etc"), link("l", "../.."), link("sub/l", "../../x"), link("h", "../x", tarfile.LNKTYPE)):
        with pytest.raises((UnsafeArchive, tarfile.TarError)):
            unpack(bad, tmp_path / "dest")
    assert not (tmp_path / "up.txt").exists() and not (tmp_path / "abs.txt").exists()
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("f")
    (src / "inner").symlink_to("d/f")
    unpack(pack(src), tmp_path / "ok")
    assert (tmp_path / "ok" / "inner").read_text() == "f" and (tmp_path / "ok" / "inner").is_symlink()


def agent(api: Api, credential: str, name: str, root: Path) -> Agent:
    return Agent(http(api, credential), FakeBackend(), root / "work", WorkspaceCache(root / "cache"), name=name,
                 labels=("linux",), log_flush_s=0.05)


def lease(agent: Agent) -> Lease:
    got = agent.peer.lease(agent.name, list(agent.labels), 1.0)
    assert got is not None
    return got


def test_an_artifact_crosses_to_another_runner(api: Api, source_repo: Path, tmp_path: Path) -> None:
    first = agent(api, register(api, "one"), "one", tmp_path / "one")
    second = agent(api, register(api, "two"), "two", tmp_path / "two")
    run_id = start(api, source_repo, PASSING)
    a = lease(first)
    assert a.spec.task == "a"
    first._run(a)
    row = api.get(f"/api/v1/runs/{run_id}").json()
    assert {t["name"]: t.get("state") for t in row["tasks"]}["a"] == "succeeded", row
    assert not (tmp_path / "one" / "work" / "artifacts" / str(run_id) / "a").exists()  # uploaded, then gone
    b = lease(second)
    assert b.spec.task == "b" and b.spec.artifacts_in[0].source == f"controller:{run_id}/a"
    second._run(b)
    assert api.services.scheduler.wait(run_id, timeout_s=5) == "succeeded"
    lines = [l["line"] for l in api.get(f"/api/v1/runs/{run_id}/logs?task=b").json()["lines"]]
    assert "from-a" in lines, lines
    assert not list((tmp_path / "two" / "work" / "artifacts-in").iterdir())  # the downloaded copy is cleaned


def test_a_failed_download_errors_the_task_and_a_failed_upload_keeps_it(
        api: Api, source_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = agent(api, register(api, "one"), "one", tmp_path / "one")
    second = agent(api, register(api, "two"), "two", tmp_path / "two")
    run_id = start(api, source_repo, PASSING)

    def refuse(self: HttpPeer, lease_id: str, directory: Path) -> str:
        raise ControllerError("controller answered 413 to artifacts upload: too big", 413)

    with monkeypatch.context() as m:
        m.setattr(HttpPeer, "put_artifacts", refuse)
        first._run(lease(first))
    tasks = {t["name"]: t for t in api.get(f"/api/v1/runs/{run_id}").json()["tasks"]}
    assert tasks["a"]["state"] == "succeeded"
    lines = [l["line"] for l in api.get(f"/api/v1/runs/{run_id}/logs?task=a").json()["lines"]]
    assert any("could not be uploaded" in l and "413" in l for l in lines), lines

    # b's spec now has no source for a's artifacts; make it a ref with nothing stored behind it.
    b = lease(second)
    b = replace(b, spec=replace(b.spec, artifacts_in=(ArtifactIn(f"controller:{run_id}/a", "a"),)))
    second._run(b)
    tasks = {t["name"]: t for t in api.get(f"/api/v1/runs/{run_id}").json()["tasks"]}
    assert tasks["b"]["state"] in ("queued", "errored"), tasks["b"]  # errored: retried
    lines = [l["line"] for l in api.get(f"/api/v1/runs/{run_id}/logs?task=b").json()["lines"]]
    assert any("could not download the upstream artifacts" in l and "404" in l for l in lines), lines


def test_the_builtin_runner_reads_what_a_remote_one_uploaded(api: Api, source_repo: Path, tmp_path: Path) -> None:
    from controller.peer import InProcessPeer

    remote = agent(api, register(api, "one"), "one", tmp_path / "one")
    home = Path(api.services.settings.home)
    builtin = Agent(InProcessPeer(api.services.queue, api.services.scheduler, home=home), FakeBackend(),
                    tmp_path / "builtin" / "work", WorkspaceCache(tmp_path / "builtin" / "cache"), name="builtin-x",
                    labels=("linux",), log_flush_s=0.05)
    assert not hasattr(builtin.peer, "put_artifacts")
    run_id = start(api, source_repo, PASSING)
    remote._run(lease(remote))
    b = lease(builtin)
    assert b.spec.artifacts_in[0].source == f"controller:{run_id}/a"
    builtin._run(b)
    assert api.services.scheduler.wait(run_id, timeout_s=5) == "succeeded"
    lines = [l["line"] for l in api.get(f"/api/v1/runs/{run_id}/logs?task=b").json()["lines"]]
    assert "from-a" in lines, lines
