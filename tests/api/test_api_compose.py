"""`type: workflow` tasks on a controller: the sub-workflow is read from the repository's mirror
at the run's commit (MirrorSources), its inputs checked before the run starts, and the sub-run is
made with its parent link and the files that went into it."""

from __future__ import annotations

from pathlib import Path

from tests.api.conftest import Api, git
from tests.api.test_api_extends import make_repo

PARENT = """\
workflow:
  name: app
  triggers: [{type: manual}]
  tasks:
    - {name: deploy, type: workflow, workflow: deploy.yaml, inputs: {replicas: %s}}
"""
DEPLOY = """\
workflow:
  name: app-deploy
  triggers: [{type: manual, inputs: {replicas: {type: number, required: true}}}]
  tasks:
    - {name: release, image: busybox, commands: ["echo ${inputs.replicas}"]}
"""


def _trigger(api: Api) -> dict[str, object]:
    resp = api.post("/api/v1/repos/acme/app/trigger", {"ref": "main", "workflow": ".clarity/ci.yaml"})
    assert resp.status_code in (200, 201), resp.text
    (run_id,) = resp.json()["runs"]
    return dict(api.get(f"/api/v1/runs/{run_id}").json())


def test_a_sub_run_is_made_from_the_mirror_at_the_runs_commit(api: Api, tmp_path: Path) -> None:
    app = tmp_path / "app"
    sha = make_repo(app, {".clarity/ci.yaml": PARENT % "3", ".clarity/deploy.yaml": DEPLOY})
    assert api.post("/api/v1/repos", {"name": "acme/app", "url": str(app)}).status_code == 201
    run = _trigger(api)
    assert run["state"] == "running", run
    subs = run["sub_runs"]
    assert isinstance(subs, list) and len(subs) == 1 and subs[0]["task"] == "deploy"
    sub = api.get(f"/api/v1/runs/{subs[0]['id']}").json()
    assert (sub["parent_run"], sub["parent_task"], sub["commit_sha"]) == (run["id"], "deploy", sha)
    assert sub["trigger"]["inputs"] == {"replicas": "3"} and sub["workflow"] == "app-deploy"
    assert subs[0]["files"][0]["blob"] == git(app, "rev-parse", "HEAD:.clarity/deploy.yaml")
    assert [t["name"] for t in sub["tasks"]] == ["release"]


def test_a_literal_input_of_the_wrong_type_is_a_lint_failure_before_the_run(api: Api, tmp_path: Path) -> None:
    app = tmp_path / "app"
    make_repo(app, {".clarity/ci.yaml": PARENT % "many", ".clarity/deploy.yaml": DEPLOY})
    assert api.post("/api/v1/repos", {"name": "acme/app", "url": str(app)}).status_code == 201
    run = _trigger(api)
    assert run["state"] == "failed" and run["sub_runs"] == []
    assert ".clarity/ci.yaml:5:" in str(run["message"]) and "replicas" in str(run["message"]), run["message"]
