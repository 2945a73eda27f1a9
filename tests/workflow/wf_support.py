"""Shared helpers of the workflow tests (imported by name: the test folder is on sys.path)."""

from __future__ import annotations

from collections.abc import Callable

from controller.workflow.diagnostics import Diagnostic
from controller.workflow.model import Workflow
from controller.workflow.schema import TaskTypes

# The standards' plugin task types, with permissive config schemas.
PLUGIN_TYPES: TaskTypes = {"container": None, "validation": {"type": "object"},
                           "transformation": {"type": "object"}, "storage": {"type": "object"}}

Lint = Callable[..., tuple["Workflow | None", list[Diagnostic]]]
