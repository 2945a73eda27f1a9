from __future__ import annotations

import textwrap

import pytest

from controller.workflow.diagnostics import Diagnostic
from controller.workflow.lint import lint_text
from controller.workflow.model import Workflow
from controller.workflow.schema import TaskTypes
from tests.workflow.wf_support import PLUGIN_TYPES, Lint


@pytest.fixture
def lint() -> Lint:
    """lint(yaml_text) with the text dedented and the file called w.yaml."""
    def run(text: str, task_types: TaskTypes = PLUGIN_TYPES) -> tuple[Workflow | None, list[Diagnostic]]:
        return lint_text(textwrap.dedent(text), "w.yaml", task_types)
    return run
