"""The layering contracts of pyproject.toml ([tool.importlinter]) hold: checked by import-linter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports_command() -> list[str]:
    local = Path(sys.executable).parent / "lint-imports"
    if local.exists():
        return [str(local)]
    found = shutil.which("lint-imports")
    if found is None:
        pytest.fail("import-linter is not installed (pip install -e '.[test]')")
    return [found]


def test_import_contracts_are_kept() -> None:
    proc = subprocess.run([*lint_imports_command(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"import-linter found broken contracts:\n{output}"
    assert "0 broken" in output, output
    names = ["runner knows nothing of the controller", "runner.spec and runner.protocol are plain data"]
    for name in names:
        assert name in output, output
