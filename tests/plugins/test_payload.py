"""Lint warnings for plugin tasks that read the trigger's payload in runs without one
(controller.plugins.payload), and the manifest's `payload_key` that declares such a key."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from controller.plugins import Registry, installed
from controller.plugins import check as plugin_check
from controller.plugins.manifest import ManifestError, load as load_manifest
from controller.plugins.payload import carries_payload, warnings
from controller.workflow.lint import lint_text
from controller.workflow.load import load
from controller.workflow.schema import TRIGGER_TYPES

ROOT = Path(__file__).resolve().parents[2]
STANDARDS = ROOT / "examples" / "standards"

SCHEDULE_WARNING = ("'validate-input' reads the trigger's payload (no data:), but a schedule run has none and this "
                    "task will fail then")


def found(text: str, registry: Registry | None = None) -> list[str]:
    doc, diags = load(textwrap.dedent(text), "w.yaml")
    assert doc is not None and not diags, diags
    plugin_check.strip_pins(doc)  # as lint does first: `type: validation@^1` -> validation
    return [d.format() for d in warnings(doc, registry or installed())]


def test_the_standards_example_warns_that_its_schedule_runs_have_no_payload() -> None:
    """The example verbatim: its hourly runs validate nothing and fail; its webhook runs work."""
    path = STANDARDS / ".clarity" / "example.yaml"
    doc, diags = load(path.read_text(), ".clarity/example.yaml")
    assert doc is not None and not diags
    [only] = warnings(doc, installed())
    assert only.severity == "warning"
    assert only.format() == (
        f".clarity/example.yaml:13:7: warning: {SCHEDULE_WARNING}\n"
        "  hint: set data: (a workspace file ./data.json, an inline value or ${tasks.NAME.output}); or drop the "
        "schedule trigger; or add when: {event: [webhook]} to this task and to the tasks that use its output")


TASKS = """\
  tasks:
    - name: validate-input
      type: validation
      config: {schema: ./schemas/input.json}
"""


@pytest.mark.parametrize("triggers, expected", [
    ("  triggers:\n    - {type: webhook, path: /api/v1/webhook}\n", None),
    ("  triggers:\n    - {type: event, name: deploy-requested}\n", None),
    ("  triggers:\n    - {type: schedule, cron: '0 * * * *'}\n    - {type: webhook, path: /api/v1/webhook}\n",
     "but a schedule run has none"),
    ("  triggers:\n    - {type: push}\n    - {type: tag}\n    - {type: manual}\n    - {type: push, branches: [x]}\n",
     "but push, tag and manual runs have none"),
    ("  triggers:\n    - {type: event, workflow: build}\n",
     "but an event (on workflow 'build' finishing) run has none"),
    ("  triggers:\n    - {type: file_watch, paths: ['data/**']}\n    - {type: pull_request}\n",
     "but file_watch and pull_request runs have none"),
    ("", "but push and pull_request runs have none (a workflow without triggers: runs on push and pull_request)"),
    ("  triggers: []\n", None),  # nothing starts it but a `clarity run` naming it, which may give --payload
])
def test_which_triggers_bring_no_payload(triggers: str, expected: str | None) -> None:
    said = found("workflow:\n  name: w\n" + triggers + TASKS)
    if expected is None:
        assert said == []
    else:
        [one] = said
        assert one.startswith("w.yaml:") and f"warning: 'validate-input' reads the trigger's payload (no data:), " \
                                              f"{expected} and this task will fail then" in one, one


def test_every_trigger_type_of_clarity_is_known_to_bring_a_payload_or_not() -> None:
    """A new trigger type of Clarity's must be placed here: webhook and named events bring one."""
    brings = {t for t in TRIGGER_TYPES if carries_payload({"type": t, "name": "x"})}
    assert brings == {"webhook", "event"}
    assert not carries_payload({"type": "event", "workflow": "build"})
    assert carries_payload({"type": "hello_counter", "limit": 3})  # a plugin's trigger: its polls' payloads


@pytest.mark.parametrize("task, why", [
    ("      config: {schema: ./s.json, data: ./data/input.json}", "data: is set"),
    ("      config: {schema: ./s.json, data: '${tasks.fetch.output}'}", "data: is an upstream output"),
    ("      when: {event: [webhook]}\n      config: {schema: ./s.json}", "it runs on webhooks only"),
    ("      when: {event: webhook}\n      config: {schema: ./s.json}", "it runs on webhooks only"),
])
def test_tasks_that_never_read_a_missing_payload_are_fine(task: str, why: str) -> None:
    text = ("workflow:\n  name: w\n  triggers:\n    - {type: schedule, cron: '@daily'}\n"
            "    - {type: webhook, path: /api/v1/webhook}\n  tasks:\n    - name: v\n      type: validation\n" + task + "\n")
    assert found(text) == [], why


def test_each_plugin_names_its_own_key_and_pins_do_not_matter() -> None:
    said = found("""\
        workflow:
          name: w
          triggers: [{type: push}]
          tasks:
            - name: reshape
              type: transformation@^1
              config: {rules: ./rules.yaml}
            - name: keep
              type: storage
              config: {data: {a: 1}, destination: backups/x}
            - name: plain
              image: clarity-busybox:latest
              commands: [true]
        """)
    assert said == ["w.yaml:5:7: warning: 'reshape' reads the trigger's payload (no input:), but a push run has none "
                    "and this task will fail then\n  hint: set input: (a workspace file ./data.json, an inline value or "
                    "${tasks.NAME.output}), or give the workflow a trigger that brings a payload (webhook, or event "
                    "with a name)"]


def test_the_built_in_plugins_declare_their_payload_keys() -> None:
    registry = installed()
    keys = {name: decl.payload_key for p in registry.plugins.values() for name, decl in p.manifest.task_types.items()}
    assert keys == {"validation": "data", "transformation": "input", "storage": None, "notification": None}


MANIFEST = """\
name: tp
version: 1.0.0
description: A test plugin.
task_types:
  t:
    description: Reads data.
    module: tp.work
    config:
      type: object
      required: [rules]
      properties:
        data: {{description: The data; default the trigger's payload., x-defaults-to-payload: {data}}}
        rules: {{type: string, x-defaults-to-payload: {rules}}}
"""


def test_the_manifest_marks_the_key_that_defaults_to_the_payload(tmp_path: Path) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(MANIFEST.format(data="true", rules="false"))
    assert load_manifest(path).task_types["t"].payload_key == "data"
    path.write_text(MANIFEST.format(data="false", rules="false"))
    assert load_manifest(path).task_types["t"].payload_key is None
    path.write_text(MANIFEST.format(data="yes please", rules="false"))
    with pytest.raises(ManifestError, match="task type t: config key 'data': x-defaults-to-payload is true or false, "
                                            "not 'yes please'"):
        load_manifest(path)
    path.write_text(MANIFEST.format(data="false", rules="true"))
    with pytest.raises(ManifestError, match="task type t: config key 'rules' is required, so it never falls back to "
                                            "the trigger's payload"):
        load_manifest(path)
    path.write_text(MANIFEST.format(data="true", rules="true"))
    with pytest.raises(ManifestError, match="x-defaults-to-payload is on data, rules: a task reads the trigger's "
                                            "payload in place of one key only"):
        load_manifest(path)


def test_lint_shows_the_warning_beside_the_other_diagnostics() -> None:
    wf, diags = lint_text((STANDARDS / ".clarity" / "example.yaml").read_text(), ".clarity/example.yaml")
    assert wf is not None  # a warning: the workflow still loads and runs
    assert [d.format().splitlines()[0] for d in diags] == [f".clarity/example.yaml:13:7: warning: {SCHEDULE_WARNING}"]


def test_clarity_lint_prints_the_warning_and_exits_0(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITY_")}
    env.update(CLARITY_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "controller.cli", "lint", ".clarity/example.yaml"], cwd=STANDARDS, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f".clarity/example.yaml:13:7: warning: {SCHEDULE_WARNING}", done.stdout
    assert done.stdout.splitlines()[1].startswith("  hint: set data: (a workspace file ./data.json")
    assert "1 file(s) checked: 0 error(s), 1 warning(s)" in done.stderr


def test_the_warning_stands_beside_errors_of_the_same_file() -> None:
    text = (STANDARDS / ".clarity" / "example.yaml").read_text().replace('cron: "0 * * * *"', 'cron: "61 * * * *"')
    wf, diags = lint_text(text, ".clarity/example.yaml")
    assert wf is None
    assert [d.severity for d in diags] == ["error", "warning"], [d.format() for d in diags]
    assert diags[1].format().splitlines()[0] == f".clarity/example.yaml:13:7: warning: {SCHEDULE_WARNING}"
