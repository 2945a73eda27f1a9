from __future__ import annotations

import pytest

from tests.workflow.wf_support import PLUGIN_TYPES, Lint
from controller.workflow.lint import lint_paths, lint_text
from controller.workflow.units import DURATION_PATTERN, SIZE_PATTERN, parse_duration, parse_size

STANDARDS_EXAMPLE = """\
workflow:
  name: "example-workflow"
  version: "1.0.0"
  description: "Example workflow demonstrating standards"

  triggers:
    - type: "schedule"
      cron: "0 * * * *"
    - type: "webhook"
      path: "/api/v1/webhook"

  tasks:
    - name: "validate-input"
      type: "validation"
      config:
        schema: "./schemas/input.json"

    - name: "process-data"
      type: "transformation"
      config:
        input: "${tasks.validate-input.output}"
        rules: "./rules/processing.yaml"

    - name: "store-result"
      type: "storage"
      config:
        data: "${tasks.process-data.output}"
        destination: "backups/${workflow.id}"
"""


def test_standards_example_loads_clean() -> None:
    workflow, diagnostics = lint_text(STANDARDS_EXAMPLE, ".clarity/example.yaml", PLUGIN_TYPES)
    assert diagnostics == []
    assert workflow is not None
    assert [t.name for t in workflow.tasks] == ["validate-input", "process-data", "store-result"]
    assert [t.type for t in workflow.tasks] == ["validation", "transformation", "storage"]
    assert workflow.triggers[0].config == {"cron": "0 * * * *", "timezone": "UTC", "catchup": "latest"}
    assert str(workflow.tasks[1].pos) == ".clarity/example.yaml:18:7"


def test_standards_example_needs_its_plugin_types() -> None:
    from controller.workflow.schema import DEFAULT_TASK_TYPES

    wf, diagnostics = lint_text(STANDARDS_EXAMPLE, "x.yaml")
    assert wf is not None  # the installed (built-in) plugins provide them; one warning, of its schedule runs:
    assert [(d.severity, d.message.split(" (")[0]) for d in diagnostics] == [
        ("warning", "'validate-input' reads the trigger's payload")]
    _, diagnostics = lint_text(STANDARDS_EXAMPLE, "x.yaml", DEFAULT_TASK_TYPES)  # the core alone
    assert [d.message.split(";")[0] for d in diagnostics] == ["unknown task type 'validation'",
                                                               "unknown task type 'transformation'",
                                                               "unknown task type 'storage'"]


def test_plugin_config_schema_is_applied() -> None:
    types = {**PLUGIN_TYPES, "notification": {"type": "object", "required": ["channel"],
                                              "properties": {"channel": {"type": "string"}},
                                              "additionalProperties": False}}
    text = "workflow:\n  name: w\n  tasks:\n    - {name: n, type: notification, config: {chanel: x}}\n"
    _, diagnostics = lint_text(text, "w.yaml", types)
    output = "\n".join(d.format() for d in diagnostics)
    assert "w.yaml:4:46: error: unknown key 'chanel' in task 'n'\n  hint: did you mean 'channel'?" in output
    assert "missing required key 'channel' in task 'n'" in output


def test_full_container_task(lint: Lint) -> None:
    workflow, diagnostics = lint("""
        workflow:
          name: ci
          env: {PY: "3.11"}
          tasks:
            - name: build
              image: clarity-python
              commands: ["make", "make test"]
              env: {BRANCH: "${git.branch}", N: 3}
              workdir: sub/dir
              timeout: 1h30m
              retries: 2
              when: {branch: [main, "release/*"], event: [push]}
              secrets: [PYPI_TOKEN]
              artifacts: [dist/]
              network: bridge
              resources: {memory: 512m, cpus: 1.5, pids: 256}
        """)
    assert diagnostics == [] and workflow is not None
    assert [t.type for t in workflow.triggers] == ["push", "pull_request"]  # the default
    task = workflow.task("build")
    assert task.commands == ("make", "make test") and task.env == {"BRANCH": "${git.branch}", "N": "3"}
    assert (task.timeout_s, task.retries, task.network) == (5400.0, 2, "bridge")
    assert (task.memory_bytes, task.cpus, task.pids) == (512 * 1024**2, 1.5, 256)
    assert task.when is not None and task.when.branches == ("main", "release/*") and task.when.paths is None
    assert task.needs is None and task.secrets == ("PYPI_TOKEN",) and task.artifacts == ("dist/",)
    assert workflow.env_for(task) == {"PY": "3.11", "BRANCH": "${git.branch}", "N": "3"}


DURATIONS = [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1h", 3600), ("90", 90), (90, 90), ("1.5h", 5400),
             ("0s", None), ("", None), ("1:30", None), ("5 m", None), ("m", None), ("1d", None), (True, None)]


@pytest.mark.parametrize(("value", "seconds"), DURATIONS)
def test_parse_duration(value: str | int, seconds: float | None) -> None:
    if seconds is None:
        with pytest.raises(ValueError):
            parse_duration(value)
    else:
        assert parse_duration(value) == seconds


SIZES = [("512m", 512 * 2**20), ("1g", 2**30), ("256MiB", 256 * 2**20), ("1GB", 2**30), ("64k", 65536),
         ("1024", 1024), (1024, 1024), ("0", None), ("12x", None), ("1 g", None)]


@pytest.mark.parametrize(("value", "size"), SIZES)
def test_parse_size(value: str | int, size: int | None) -> None:
    if size is None:
        with pytest.raises(ValueError):
            parse_size(value)
    else:
        assert parse_size(value) == size


def test_schema_patterns_agree_with_parsers() -> None:
    import re
    for value, seconds in DURATIONS:
        if isinstance(value, str) and value not in ("0s",):
            assert bool(re.fullmatch(DURATION_PATTERN, value)) == (seconds is not None), value
    for value, size in SIZES:
        if isinstance(value, str) and value != "0":
            assert bool(re.fullmatch(SIZE_PATTERN, value)) == (size is not None), value


def test_lint_paths(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path
    root = Path(str(tmp_path))
    folder = root / ".clarity"
    folder.mkdir()
    (folder / "good.yaml").write_text("workflow:\n  name: g\n  tasks: [{name: t, image: a}]\n")
    (folder / "bad.yml").write_text("workflow:\n  name: b\n  tasks: [{name: t}]\n")
    (folder / "notes.txt").write_text("ignored")
    monkeypatch.chdir(root)
    results = lint_paths()
    assert sorted(Path(p).name for p in results) == ["bad.yml", "good.yaml"]
    assert {Path(p).name: len(d) for p, d in results.items()} == {"bad.yml": 1, "good.yaml": 0}
    assert list(lint_paths([root])) == list(results)
    single = lint_paths([folder / "bad.yml", root / "missing.yaml"])
    assert single[str(root / "missing.yaml")][0].message == "no such file"
