"""The task key `labels`: schema, lint positions, model, what the scheduler enqueues, and the
queue view that says which label sets wait for a runner."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from controller.api.queue import wait_text, waiting
from controller.engine import RunSpec, Scheduler
from controller.store.queue import Queue
from controller.store.runs import Store
from controller.workflow.compile import GitInfo
from controller.workflow.lint import lint_text
from controller.workflow.model import Workflow
from controller.workflow.schema import LABEL_PATTERN, json_schema
from runner.spec import Workspace
from tests.workflow.wf_support import Lint

ROOT = Path(__file__).resolve().parents[2]


def _task_with(labels: str) -> str:
    return f"""
        workflow:
          name: w
          tasks:
            - name: train
              image: alpine
              labels: {labels}
        """


def test_labels_in_the_model(lint: Lint) -> None:
    workflow, diagnostics = lint("""
        workflow:
          name: w
          tasks:
            - name: train
              image: alpine
              labels: [gpu, arm64, linux-6.1, cuda_12]
            - name: any
              image: alpine
            - name: empty
              image: alpine
              labels: []
        """)
    assert diagnostics == [] and workflow is not None
    assert workflow.task("train").labels == ("gpu", "arm64", "linux-6.1", "cuda_12")
    assert workflow.task("any").labels == () and workflow.task("empty").labels == ()


@pytest.mark.parametrize("labels, expected", [
    ('[gpu, GPU]', ["w.yaml:7:21: error: invalid runner label 'GPU' in task 'train'\n"
                    "  hint: labels are lower case: gpu"]),
    ('["gpu,arm64"]', ["w.yaml:7:16: error: invalid runner label 'gpu,arm64' in task 'train'\n"
                       "  hint: one label per list entry: [gpu, arm64]"]),
    ('["gpu arm64"]', ["w.yaml:7:16: error: invalid runner label 'gpu arm64' in task 'train'\n"
                       "  hint: one label per list entry: [gpu, arm64]"]),
    ('[gpu, "a/b"]', ["w.yaml:7:21: error: invalid runner label 'a/b' in task 'train'\n"
                      "  hint: Lower-case letters, digits, '_', '.' and '-', e.g. gpu or linux-arm64."]),
    ('[""]', ["w.yaml:7:16: error: invalid runner label '' in task 'train'\n"
              "  hint: Lower-case letters, digits, '_', '.' and '-', e.g. gpu or linux-arm64."]),
    ('[gpu, gpu]', ["w.yaml:7:15: error: 'labels' has duplicate entries in task 'train'"]),
    ('gpu', ["w.yaml:7:15: error: 'labels': expected a list, got a string in task 'train'\n"
             "  hint: write a list: labels: [\"gpu\"]"]),
    ('{gpu: true}', ["w.yaml:7:15: error: 'labels': expected a list, got a mapping in task 'train'"]),
    ('[1.10]', ["w.yaml:7:16: error: 'labels': expected a string, got the number 1.1 "
                "(YAML reads unquoted 1.10 as a number) in task 'train'\n  hint: quote it: \"1.10\""]),
])
def test_bad_labels(lint: Lint, labels: str, expected: list[str]) -> None:
    workflow, diagnostics = lint(_task_with(labels))
    assert workflow is None
    assert [d.format() for d in diagnostics] == expected


def test_all_bad_labels_in_one_pass(lint: Lint) -> None:
    _, diagnostics = lint(_task_with('[GPU, "x y", "!"]'))
    assert [(d.pos.line, d.pos.col) for d in diagnostics] == [(7, 16), (7, 21), (7, 28)]


def test_labels_in_the_published_schema() -> None:
    task = json_schema()["properties"]["workflow"]["properties"]["tasks"]["items"]["allOf"][0]["then"]
    labels = task["properties"]["labels"]
    assert labels["items"]["pattern"] == LABEL_PATTERN == "^[a-z0-9_.-]+$" and labels["uniqueItems"] is True
    published = json.loads((ROOT / "docs" / "schema.json").read_text())
    assert "labels" in json.dumps(published)
    assert "`labels`" in (ROOT / "docs" / "workflow-format.md").read_text()


# -- the scheduler enqueues a task with its labels ------------------------------------------------

WORKFLOW = """
    workflow:
      name: ml
      tasks:
        - name: train
          image: alpine
          labels: [gpu, arm64]
        - name: lint
          image: alpine
          needs: []
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'db' / 'clarity.db'}")
    yield s
    s.engine.dispose()


def _start(store: Store, tmp_path: Path, can_take: object = None) -> tuple[Queue, int]:
    text = textwrap.dedent(WORKFLOW)
    wf, diags = lint_text(text, ".clarity/ml.yaml")
    assert isinstance(wf, Workflow), diags
    queue = Queue(store.engine)
    scheduler = Scheduler(store, queue, can_take=can_take)  # type: ignore[arg-type]
    run_id = scheduler.create_run(RunSpec(
        workflow=wf, workflow_text=text, repo=str(tmp_path), dirty=True, event="push",
        workspace=Workspace(repo=str(tmp_path), dirty_path=str(tmp_path)),
        git=GitInfo(sha="a" * 40, ref="refs/heads/main", branch="main")))
    assert run_id is not None
    scheduler.start(run_id)
    return queue, run_id


def test_scheduler_enqueues_the_task_labels_and_only_matching_runners_lease(store: Store, tmp_path: Path) -> None:
    queue, _ = _start(store, tmp_path)
    assert queue.depth() == 2
    first = queue.lease("cpu-runner", ["linux"])
    assert first is not None and first.task == "lint" and first.labels == ()
    assert queue.lease("cpu-runner", ["linux"]) is None  # train needs gpu and arm64
    assert queue.lease("gpu-only", ["gpu"]) is None
    item = queue.lease("gpu-arm", ["arm64", "gpu", "linux"])
    assert item is not None and item.task == "train" and item.labels == ("gpu", "arm64")


def test_a_task_no_runner_can_take_says_so_in_its_log(store: Store, tmp_path: Path) -> None:
    asked: list[tuple[str, ...]] = []

    def nobody(labels: tuple[str, ...]) -> bool:
        asked.append(tuple(labels))
        return False

    _, run_id = _start(store, tmp_path, can_take=nobody)
    assert asked == [("gpu", "arm64")]  # never asked for a task any runner takes
    assert [line for _, _, line in store.logs(run_id, "train")] == [
        "[clarity] waiting: no runner with labels gpu,arm64"]
    assert [line for _, _, line in store.logs(run_id, "lint")] == []


def test_no_note_when_a_runner_can_take_it(store: Store, tmp_path: Path) -> None:
    _, run_id = _start(store, tmp_path, can_take=lambda labels: True)
    assert [line for _, _, line in store.logs(run_id, "train")] == []


# -- GET /api/v1/queue: what waits, by label set ---------------------------------------------------

def _row(id: int, task: str, labels: list[str] | None, queued_at: float) -> SimpleNamespace:
    return SimpleNamespace(id=id, run_id=1, task=task, attempt=1, labels=labels, queued_at=queued_at)


def test_waiting_groups_by_label_set() -> None:
    now = 10_000.0
    rows = [_row(1, "a", ["gpu", "arm64"], now - 300), _row(2, "b", [], now - 10),
            _row(3, "c", ["arm64", "gpu"], now - 200), _row(4, "d", None, now - 5),
            _row(5, "e", ["gpu", "arm64"], now - 100)]
    groups = waiting(rows, now, lambda labels: "x86" in labels)
    assert [(g["labels"], g["tasks"], g["oldest_wait_s"], g["runner"]) for g in groups] == [
        (["arm64", "gpu"], 3, 300.0, False), ([], 2, 10.0, None)]
    assert groups[0]["summary"] == "no runner with labels arm64,gpu: 3 tasks waiting 5m"
    assert groups[1]["summary"] == "(no labels): 2 tasks waiting 10s"
    assert [i["task"] for i in groups[0]["items"]] == ["a", "c", "e"]
    # unknown (no runner registry): no claim either way
    unknown = waiting(rows[:1], now, None)[0]
    assert unknown["runner"] is None and unknown["summary"] == "arm64,gpu: 1 task waiting 5m"
    assert waiting(rows[:1], now, lambda labels: True)[0]["summary"] == "arm64,gpu: 1 task waiting 5m"


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"),
                                           (7800, "2h10m"), (86400, "1d"), (93600, "1d2h")])
def test_wait_text(seconds: float, text: str) -> None:
    assert wait_text(seconds) == text


def test_queue_endpoint_lists_waiting_label_sets(store: Store, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from tests.api.conftest import make_app
    from controller.settings import Settings

    for key in ("CLARITY_DATABASE_URL", "CLARITY_PORT", "CLARITY_HOST"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CLARITY_HOME", str(tmp_path / "home"))
    app = make_app(Settings.from_env())
    services = app.state.services
    _, key = services.keys.create("ops", "read")
    queue, _ = _start(services.store, tmp_path)
    client = TestClient(app)  # no `with`: no lifespan, no background loops
    body = client.get("/api/v1/queue", headers={"Authorization": f"Bearer {key}"}).json()
    client.close()
    services.store.engine.dispose()
    assert body["depth"] == 2 and body["leased"] == 0
    by_labels = {",".join(g["labels"]): g for g in body["waiting"]}
    assert set(by_labels) == {"arm64,gpu", ""}
    gpu = by_labels["arm64,gpu"]
    assert gpu["tasks"] == 1 and gpu["items"][0]["task"] == "train"
    assert gpu["runner"] in (False, None)  # no runner registered (None: no runner registry here)
    assert gpu["summary"].endswith("arm64,gpu: 1 task waiting 0s")
    assert by_labels[""]["runner"] is None
