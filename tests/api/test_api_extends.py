"""`extends:` on a controller (controller.starter, MirrorSources): a base in another registered
repository at a pinned ref, read through the mirror cache; the run keeps the resolved workflow and
records every file (GET /api/v1/runs/ID `files`, `clarity runs show`); a moved tag is followed, a
pinned commit is not; an unregistered repository is a failed run that says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller import cli
from tests.api.conftest import Api, git

TEMPLATE = """\
workflow:
  name: python
  triggers: [{type: manual}]
  env: {CI: "true"}
  tasks:
    - {name: lint, image: busybox, commands: ["echo {version}"]}
    - {name: test, image: busybox, commands: ["echo test"]}
"""


def make_repo(path: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    if not (path / ".git").exists():
        git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "change")
    return git(path, "rev-parse", "HEAD")


def child(ref: str, repo: str = "acme/ci-templates") -> str:
    return (f"workflow:\n  name: app\n  extends: {{repo: {repo}, ref: {ref}, path: python.yaml}}\n"
            "  tasks:\n    - {name: test, commands: [\"echo app\"]}\n    - {name: deploy, image: busybox}\n")


@pytest.fixture
def repos(api: Api, tmp_path: Path) -> tuple[Path, str, Path]:
    templates, app = tmp_path / "templates", tmp_path / "app"
    first = make_repo(templates, {".clarity/python.yaml": TEMPLATE.replace("{version}", "v1")})
    git(templates, "tag", "v1")
    make_repo(app, {".clarity/tagged.yaml": child("v1"), ".clarity/pinned.yaml": child(first)})
    for name, path in (("acme/ci-templates", templates), ("acme/app", app)):
        assert api.post("/api/v1/repos", {"name": name, "url": str(path)}).status_code == 201
    return templates, first, app


def trigger(api: Api, file: str) -> dict[str, Any]:
    resp = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main", "workflow": f".clarity/{file}"})
    assert resp.status_code in (200, 201), resp.text
    (run_id,) = resp.json()["runs"]
    run: dict[str, Any] = api.get(f"/api/v1/runs/{run_id}").json()
    return run


def commands(api: Api, run: dict[str, Any]) -> dict[str, str]:
    wf = api.services.scheduler._load(int(run["id"])).tasks
    return {name: " ".join(t.commands) for name, t in wf.items()}


def test_a_base_of_a_registered_repository_at_a_ref(api: Api, repos: tuple[Path, str, Path]) -> None:
    templates, first, app = repos
    run = trigger(api, "tagged.yaml")
    assert run["state"] != "failed", run["message"]
    assert [t["name"] for t in run["tasks"]] == ["lint", "test", "deploy"]
    app_sha = git(app, "rev-parse", "HEAD")
    assert run["files"] == [
        {"file": ".clarity/tagged.yaml", "repo": "acme/app", "path": ".clarity/tagged.yaml", "ref": None,
         "commit": app_sha, "blob": git(app, "rev-parse", "HEAD:.clarity/tagged.yaml")},
        {"file": "acme/ci-templates@v1:.clarity/python.yaml", "repo": "acme/ci-templates",
         "path": ".clarity/python.yaml", "ref": "v1", "commit": first,
         "blob": git(templates, "rev-parse", "v1:.clarity/python.yaml")}]
    stored = api.services.store.get_run(int(run["id"]))
    assert "extends" not in (stored.workflow_text or "") and "echo app" in (stored.workflow_text or "")
    assert commands(api, run) == {"lint": "echo v1", "test": "echo app", "deploy": ""}


def test_a_moved_tag_changes_what_runs_a_pinned_commit_does_not(api: Api, repos: tuple[Path, str, Path]) -> None:
    templates, first, _app = repos
    assert commands(api, trigger(api, "tagged.yaml"))["lint"] == "echo v1"
    second = make_repo(templates, {".clarity/python.yaml": TEMPLATE.replace("{version}", "v1.1")})
    git(templates, "tag", "-f", "v1")
    tagged, pinned = trigger(api, "tagged.yaml"), trigger(api, "pinned.yaml")
    assert commands(api, tagged)["lint"] == "echo v1.1"
    assert tagged["files"][1]["commit"] == second
    assert commands(api, pinned)["lint"] == "echo v1"
    assert pinned["files"][1]["commit"] == first


def test_an_unregistered_repository_fails_the_run_with_the_reason(api: Api, repos: tuple[Path, str, Path],
                                                                  tmp_path: Path) -> None:
    _templates, _first, app = repos
    make_repo(app, {".clarity/tagged.yaml": child("v1", repo="acme/nope")})
    run = trigger(api, "tagged.yaml")
    assert run["state"] == "failed"
    assert ("cannot read the base acme/nope@v1:.clarity/python.yaml: no repository 'acme/nope' is registered on "
            "this controller") in str(run["message"])


def test_runs_show_lists_the_files(api: Api, repos: tuple[Path, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    templates, first, app = repos
    run = trigger(api, "tagged.yaml")
    assert cli.main(["runs", "show", str(run["id"])]) == 0  # this machine's database: the same store
    out = capsys.readouterr().out
    blob = git(templates, "rev-parse", "v1:.clarity/python.yaml")
    assert f"  file        acme/ci-templates  .clarity/python.yaml@v1  commit {first[:12]}  blob {blob[:12]}" in out
    app_blob = git(app, "rev-parse", "HEAD:.clarity/tagged.yaml")
    assert f"  file        acme/app  .clarity/tagged.yaml  commit {git(app, 'rev-parse', 'HEAD')[:12]}  " \
           f"blob {app_blob[:12]}" in out


def test_a_rerun_runs_the_resolved_workflow_and_keeps_the_files(api: Api, repos: tuple[Path, str, Path]) -> None:
    templates, _first, _app = repos
    run = trigger(api, "tagged.yaml")
    assert api.post(f"/api/v1/runs/{run['id']}/cancel").status_code in (200, 202)
    make_repo(templates, {".clarity/python.yaml": TEMPLATE.replace("{version}", "later")})
    git(templates, "tag", "-f", "v1")  # a re-run is the same run again: the tag moved since does not matter
    resp = api.post(f"/api/v1/runs/{run['id']}/rerun", {})
    assert resp.status_code in (200, 201), resp.text
    again = resp.json()
    assert again["files"] == run["files"]
    assert commands(api, again)["lint"] == "echo v1"
