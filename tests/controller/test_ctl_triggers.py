"""Trigger matching (why_not), glob semantics, and manual inputs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.controller.conftest import load_workflow
from controller.triggers.manual import InputError, resolve_inputs
from controller.triggers.match import skip_ci, why_not
from controller.workflow import globs


def wf(triggers: str) -> Any:
    return load_workflow(f"""
    workflow:
      name: w
      {triggers}
      tasks: [{{name: t, image: a, commands: ["true"]}}]
    """)


PUSH_MAIN = "triggers: [{type: push, branches: [main, 'release/*']}]"

WHY: list[tuple[str, str, str, str, str, tuple[str, ...] | None, bool]] = [
    # id, triggers, event, branch, tag, changed, runs
    ("default triggers: push", "", "push", "main", "", None, True),
    ("default triggers: pull_request", "", "pull_request", "x", "", None, True),
    ("default triggers: not manual", "", "manual", "main", "", None, False),
    ("no triggers at all", "triggers: []", "push", "main", "", None, False),
    ("branch listed", PUSH_MAIN, "push", "main", "", None, True),
    ("branch glob", PUSH_MAIN, "push", "release/2.0", "", None, True),
    ("branch glob is one segment", PUSH_MAIN, "push", "release/2.0/fix", "", None, False),
    ("branch not listed", PUSH_MAIN, "push", "dev", "", None, False),
    ("push trigger with tags only ignores branch pushes", "triggers: [{type: push, tags: ['v*']}]",
     "push", "main", "", None, False),
    ("push trigger with tags answers a tag", "triggers: [{type: push, tags: ['v*']}]", "tag", "", "v1.2", None, True),
    ("tag trigger without tags", "triggers: [{type: tag}]", "tag", "", "anything", None, True),
    ("tag glob", "triggers: [{type: tag, tags: ['v*.*']}]", "tag", "", "v1.2", None, True),
    ("tag glob misses", "triggers: [{type: tag, tags: ['v*.*']}]", "tag", "", "nightly", None, False),
    ("paths match", "triggers: [{type: push, paths: ['src/**']}]", "push", "main", "", ("src/a/b.c",), True),
    ("paths * stays in a segment", "triggers: [{type: push, paths: ['src/*.c']}]", "push", "main", "",
     ("src/a/b.c",), False),
    ("paths miss", "triggers: [{type: push, paths: ['src/**']}]", "push", "main", "", ("docs/x",), False),
    ("paths unknown", "triggers: [{type: push, paths: ['src/**']}]", "push", "main", "", None, True),
    ("paths_ignore all", "triggers: [{type: push, paths_ignore: ['**/*.md']}]", "push", "main", "",
     ("README.md", "docs/a.md"), False),
    ("paths_ignore some", "triggers: [{type: push, paths_ignore: ['**/*.md']}]", "push", "main", "",
     ("README.md", "main.c"), True),
    ("pull_request branches", "triggers: [{type: pull_request, branches: [main]}]", "pull_request", "main", "",
     None, True),
    ("manual", "triggers: [{type: manual}]", "manual", "main", "", None, True),
    ("manual does not answer push", "triggers: [{type: manual}]", "push", "main", "", None, False),
    ("file_watch paths: a push changing a watched file", "triggers: [{type: file_watch, paths: ['data/**']}]",
     "push", "feature", "", ("data/in.csv", "README.md"), True),
    ("file_watch paths: a push changing none", "triggers: [{type: file_watch, paths: ['data/**']}]",
     "push", "main", "", ("README.md",), False),
    ("file_watch paths: changes unknown", "triggers: [{type: file_watch, paths: ['data/**']}]",
     "push", "main", "", None, True),
    ("file_watch paths do not answer a tag", "triggers: [{type: file_watch, paths: ['data/**']}]",
     "tag", "", "v1", None, False),
    ("file_watch directory does not answer a push", "triggers: [{type: file_watch, directory: /srv/in}]",
     "push", "main", "", ("a",), False),
]


@pytest.mark.parametrize("triggers,event,branch,tag,changed,runs", [w[1:] for w in WHY], ids=[w[0] for w in WHY])
def test_why_not(triggers: str, event: str, branch: str, tag: str, changed: tuple[str, ...] | None, runs: bool) -> None:
    reason = why_not(wf(triggers), event, branch, tag, changed)
    assert (reason is None) == runs, reason
    if not runs:
        assert reason and event in reason


@pytest.mark.parametrize("value,pattern,expected", [
    ("main", "main", True), ("main", "mai", False), ("release/1", "release/*", True),
    ("release/1/2", "release/*", False), ("release/1/2", "release/**", True), ("a.md", "**/*.md", True),
    ("x/y/a.md", "**/*.md", True), ("x/y/a.md", "*.md", False), ("v1", "v?", True), ("v10", "v?", False),
    ("a/b", "a?b", False), ("v1", "v[0-9]", True), ("va", "v[!0-9]", True), ("v1", "v[!0-9]", False),
    ("a+b(c)", "a+b(c)", True), ("src/x/gen/y.py", "src/**/gen/*.py", True), ("src/gen/y.py", "src/**/gen/*.py", True),
])
def test_glob_semantics(value: str, pattern: str, expected: bool) -> None:
    assert globs.match(value, pattern) is expected


def test_skip_ci_markers() -> None:
    assert skip_ci("docs: typo [skip ci]") and skip_ci("[CI SKIP] x") and not skip_ci("skip the ci")


MANUAL = """
triggers:
        - type: manual
          inputs:
            count: {type: number, required: true}
            debug: {type: boolean, default: false}
            env: {type: choice, options: [dev, prod], default: dev}
            note: {type: string}
"""


def test_inputs_checked_and_defaulted() -> None:
    w = wf(MANUAL.strip())
    assert resolve_inputs(w, {"count": "3", "debug": "YES"}, strict=True) == {"count": "3", "debug": "true", "env": "dev"}
    assert resolve_inputs(w, {}, strict=False) == {"debug": "false", "env": "dev"}
    assert resolve_inputs(w, {"extra": "x"}, strict=False)["extra"] == "x"


@pytest.mark.parametrize("given,fragment", [
    ({"count": "x"}, "input 'count' must be a number, got 'x'"),
    ({"count": "1", "debug": "maybe"}, "input 'debug' must be true or false, got 'maybe'"),
    ({"count": "1", "env": "staging"}, "input 'env' must be one of dev, prod, got 'staging'"),
    ({}, "input 'count' is required (pass --input count=VALUE)"),
    ({"count": "1", "cuont": "2"}, "no input named 'cuont' (declared: count, debug, env, note)"),
])
def test_input_errors(given: dict[str, str], fragment: str) -> None:
    with pytest.raises(InputError) as info:
        resolve_inputs(wf(MANUAL.strip()), given, strict=True)
    assert fragment in str(info.value) and ".clarity/ci.yaml" in str(info.value)
