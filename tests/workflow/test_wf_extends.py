"""Workflow inheritance (`extends:`, controller.workflow.extends): the merge rules as a table of
(bases, child, expected resolved workflow), where each value came from, and the errors of a
chain (cycle, missing base or ref, too deep, misused `remove`) with both positions."""

from __future__ import annotations

import hashlib
import textwrap
from typing import Any

import pytest
import yaml

from controller.workflow.diagnostics import Diagnostic
from controller.workflow.extends import MAX_DEPTH, Resolved, explain, resolve
from controller.workflow.lint import lint_text
from controller.workflow.load import load
from controller.workflow.model import Workflow
from controller.workflow.sources import FileRef, Loaded, SourceError
from tests.workflow.wf_support import PLUGIN_TYPES

CHILD = ".clarity/ci.yaml"
COMMIT = "c0ffee" * 6 + "c0ff"


def _blob(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class MemorySources:
    """Files of this repository (path -> text) and of others ((repo, ref) -> {path: text})."""

    def __init__(self, files: dict[str, str], repos: dict[tuple[str, str], dict[str, str]] | None = None) -> None:
        self.files = {p: textwrap.dedent(t) for p, t in files.items()}
        self.repos = {k: {p: textwrap.dedent(t) for p, t in v.items()} for k, v in (repos or {}).items()}
        self.reads: list[str] = []

    def read(self, ref: FileRef, *, relative_to: Loaded | None = None) -> Loaded:
        if ref.repo is None and relative_to is not None and relative_to.ref.repo is not None:
            ref = FileRef(ref.path, relative_to.ref.repo, relative_to.ref.ref)
        self.reads.append(ref.shown())
        if ref.repo is None:
            if ref.repo_path not in self.files:
                raise SourceError(f"no file {ref.repo_path} at {COMMIT[:12]}")
            text = self.files[ref.repo_path]
            return Loaded(ref, text, ref.repo_path, "acme/app", COMMIT, _blob(text))
        tree = self.repos.get((ref.repo, ref.ref or ""))
        if tree is None:
            raise SourceError(f"repository {ref.repo} has no tag, branch or commit '{ref.ref}'")
        if ref.repo_path not in tree:
            raise SourceError(f"no file {ref.repo_path} in {ref.repo} at {ref.ref}")
        text = tree[ref.repo_path]
        return Loaded(ref, text, ref.shown(), ref.repo, _blob(ref.repo + (ref.ref or ""))[:40], _blob(text))


def own(text: str) -> Loaded:
    return Loaded(FileRef(CHILD), text, CHILD, "acme/app", COMMIT, _blob(text))


def lint(child: str, files: dict[str, str], repos: dict[tuple[str, str], dict[str, str]] | None = None
         ) -> tuple[Workflow | None, list[Diagnostic]]:
    text = textwrap.dedent(child)
    sources = MemorySources({**files, CHILD: text}, repos)  # the file itself can be read too (a cycle)
    return lint_text(text, CHILD, PLUGIN_TYPES, sources=sources, loaded=own(text))


def resolved(child: str, files: dict[str, str], repos: dict[tuple[str, str], dict[str, str]] | None = None
             ) -> Resolved:
    text = textwrap.dedent(child)
    doc, diags = load(text, CHILD)
    assert doc is not None and not diags
    out, problems = resolve(doc, MemorySources(files, repos), own(text))
    assert out is not None and not problems, [d.format() for d in problems]
    return out


BASE = """\
workflow:
  name: base
  description: the team's CI
  env: {LANG: C, LEVEL: "1"}
  triggers:
    - type: push
      branches: [main]
  tasks:
    - name: lint
      image: busybox
      commands: ["echo lint"]
    - name: test
      image: busybox
      commands: ["echo test"]
      env: {A: "1", B: "2"}
      resources: {memory: 256m, cpus: 1}
      when: {branch: [main]}
      labels: [linux]
      timeout: 5m
"""

# (case, files of .clarity/ (base.yaml is BASE unless given), child, expected resolved `workflow:`)
CASES: list[tuple[str, dict[str, str], str, str]] = [
    ("maps merge deeply: the child's keys win, the base's others stay", {}, """
        workflow:
          extends: base.yaml
          env: {LEVEL: "2", EXTRA: x}
        """, """
        name: base
        description: the team's CI
        env: {LANG: C, LEVEL: "2", EXTRA: x}
        triggers: [{type: push, branches: [main]}]
        tasks:
          - {name: lint, image: busybox, commands: ["echo lint"]}
          - {name: test, image: busybox, commands: ["echo test"], env: {A: "1", B: "2"},
             resources: {memory: 256m, cpus: 1}, when: {branch: [main]}, labels: [linux], timeout: 5m}
        """),
    ("scalars: the child's name wins", {}, """
        workflow:
          name: app
          extends: base.yaml
        """, """
        name: app
        description: the team's CI
        env: {LANG: C, LEVEL: "1"}
        triggers: [{type: push, branches: [main]}]
        tasks:
          - {name: lint, image: busybox, commands: ["echo lint"]}
          - {name: test, image: busybox, commands: ["echo test"], env: {A: "1", B: "2"},
             resources: {memory: 256m, cpus: 1}, when: {branch: [main]}, labels: [linux], timeout: 5m}
        """),
    ("triggers are replaced, not merged", {}, """
        workflow:
          name: app
          extends: base.yaml
          triggers: [{type: tag}]
        """, """
        name: app
        description: the team's CI
        env: {LANG: C, LEVEL: "1"}
        triggers: [{type: tag}]
        tasks:
          - {name: lint, image: busybox, commands: ["echo lint"]}
          - {name: test, image: busybox, commands: ["echo test"], env: {A: "1", B: "2"},
             resources: {memory: 256m, cpus: 1}, when: {branch: [main]}, labels: [linux], timeout: 5m}
        """),
    ("a task of the same name overrides the fields it sets: maps merge, lists are replaced", {}, """
        workflow:
          name: app
          extends: base.yaml
          tasks:
            - name: test
              commands: ["pytest -q"]
              env: {B: "20", C: "3"}
              resources: {memory: 1g}
              when: {event: [push]}
              labels: [gpu]
              timeout: 30
        """, """
        name: app
        description: the team's CI
        env: {LANG: C, LEVEL: "1"}
        triggers: [{type: push, branches: [main]}]
        tasks:
          - {name: lint, image: busybox, commands: ["echo lint"]}
          - {name: test, image: busybox, commands: ["pytest -q"], env: {A: "1", B: "20", C: "3"},
             resources: {memory: 1g, cpus: 1}, when: {branch: [main], event: [push]}, labels: [gpu], timeout: 30}
        """),
    ("new tasks come after the base's, in the child's order; an override stays in place", {}, """
        workflow:
          name: app
          extends: base.yaml
          tasks:
            - {name: deploy, image: busybox, needs: [test]}
            - {name: lint, image: alpine}
            - {name: docs, image: busybox}
        """, """
        name: app
        description: the team's CI
        env: {LANG: C, LEVEL: "1"}
        triggers: [{type: push, branches: [main]}]
        tasks:
          - {name: lint, image: alpine, commands: ["echo lint"]}
          - {name: test, image: busybox, commands: ["echo test"], env: {A: "1", B: "2"},
             resources: {memory: 256m, cpus: 1}, when: {branch: [main]}, labels: [linux], timeout: 5m}
          - {name: deploy, image: busybox, needs: [test]}
          - {name: docs, image: busybox}
        """),
    ("remove: true drops the base's task", {}, """
        workflow:
          name: app
          extends: base.yaml
          tasks:
            - {name: lint, remove: true}
        """, """
        name: app
        description: the team's CI
        env: {LANG: C, LEVEL: "1"}
        triggers: [{type: push, branches: [main]}]
        tasks:
          - {name: test, image: busybox, commands: ["echo test"], env: {A: "1", B: "2"},
             resources: {memory: 256m, cpus: 1}, when: {branch: [main]}, labels: [linux], timeout: 5m}
        """),
    ("a removed task given again is a new task, at the end (a replacement, not a merge)", {}, """
        workflow:
          name: app
          extends: base.yaml
          tasks:
            - {name: lint, remove: true}
            - {name: lint, image: alpine, commands: ["ruff check"]}
        """, """
        name: app
        description: the team's CI
        env: {LANG: C, LEVEL: "1"}
        triggers: [{type: push, branches: [main]}]
        tasks:
          - {name: test, image: busybox, commands: ["echo test"], env: {A: "1", B: "2"},
             resources: {memory: 256m, cpus: 1}, when: {branch: [main]}, labels: [linux], timeout: 5m}
          - {name: lint, image: alpine, commands: ["ruff check"]}
        """),
    ("needs is a list: replaced", {"base.yaml": """
        workflow:
          tasks:
            - {name: a, image: busybox}
            - {name: b, image: busybox}
            - {name: c, image: busybox, needs: [a, b]}
        """}, """
        workflow:
          name: app
          extends: base.yaml
          tasks:
            - {name: c, needs: [b]}
        """, """
        name: app
        tasks:
          - {name: a, image: busybox}
          - {name: b, image: busybox}
          - {name: c, image: busybox, needs: [b]}
        """),
    ("a partial base: no name, no tasks, only env and triggers", {"base.yaml": """
        workflow:
          env: {CI: "true"}
          triggers: [{type: manual}]
        """}, """
        workflow:
          name: app
          extends: base.yaml
          tasks: [{name: t, image: busybox}]
        """, """
        name: app
        env: {CI: "true"}
        triggers: [{type: manual}]
        tasks: [{name: t, image: busybox}]
        """),
    ("a child without tasks takes the base's", {"base.yaml": """
        workflow:
          name: base
          tasks: [{name: t, image: busybox}]
        """}, """
        workflow:
          extends: base.yaml
        """, """
        name: base
        tasks: [{name: t, image: busybox}]
        """),
    ("a chain: the nearest file wins", {"base.yaml": """
        workflow:
          extends: root.yaml
          env: {B: base, C: base}
          tasks:
            - {name: t, commands: ["echo base"]}
            - {name: from-base, image: busybox}
        """, "root.yaml": """
        workflow:
          name: root
          env: {A: root, B: root, C: root}
          tasks:
            - {name: t, image: busybox, commands: ["echo root"]}
        """}, """
        workflow:
          name: app
          extends: base.yaml
          env: {C: app}
          tasks:
            - {name: from-app, image: busybox}
        """, """
        name: app
        env: {A: root, B: base, C: app}
        tasks:
          - {name: t, image: busybox, commands: ["echo base"]}
          - {name: from-base, image: busybox}
          - {name: from-app, image: busybox}
        """),
    ("a path with '/' is from the repository root", {"ci/templates/base.yaml": """
        workflow:
          tasks: [{name: t, image: busybox}]
        """}, """
        workflow:
          name: app
          extends: ci/templates/base.yaml
        """, """
        name: app
        tasks: [{name: t, image: busybox}]
        """),
    ("the example of docs/workflow-format.md", {"base.yaml": """
        workflow:
          name: base
          env: {LANG: C, LEVEL: "1"}
          triggers: [{type: push}]
          tasks:
            - name: lint
              image: busybox
              commands: ["make lint"]
            - name: test
              image: busybox
              commands: ["make test"]
              env: {A: "1"}
        """}, """
        workflow:
          name: app
          extends: base.yaml
          env: {LEVEL: "2"}
          triggers: [{type: tag}]
          tasks:
            - {name: lint, remove: true}
            - name: test
              commands: ["make test-all"]
              env: {B: "2"}
            - {name: deploy, image: busybox, needs: [test]}
        """, """
        name: app
        env: {LANG: C, LEVEL: "2"}
        triggers: [{type: tag}]
        tasks:
          - {name: test, image: busybox, commands: ["make test-all"], env: {A: "1", B: "2"}}
          - {name: deploy, image: busybox, needs: [test]}
        """),
    ("a base in the middle of a chain removes and overrides its own base's tasks", {"base.yaml": """
        workflow:
          extends: root.yaml
          tasks:
            - {name: a, remove: true}
            - {name: b, env: {FROM: base}}
        """, "root.yaml": """
        workflow:
          tasks:
            - {name: a, image: busybox}
            - {name: b, image: busybox, env: {FROM: root, KEEP: "1"}}
        """}, """
        workflow:
          name: app
          extends: base.yaml
          tasks:
            - {name: a, image: alpine}
        """, """
        name: app
        tasks:
          - {name: b, image: busybox, env: {FROM: base, KEEP: "1"}}
          - {name: a, image: alpine}
        """),
    ("a value of another kind replaces (a map by a scalar is the child's choice)", {"base.yaml": """
        workflow:
          tasks: [{name: t, image: busybox, timeout: 5m, env: {A: "1"}}]
        """}, """
        workflow:
          name: app
          extends: base.yaml
          tasks: [{name: t, timeout: 90}]
        """, """
        name: app
        tasks: [{name: t, image: busybox, timeout: 90, env: {A: "1"}}]
        """),
]


@pytest.mark.parametrize("files,child,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_merge_rules(files: dict[str, str], child: str, expected: str) -> None:
    files = {(n if "/" in n else f".clarity/{n}"): t for n, t in {"base.yaml": BASE, **files}.items()}
    doc = resolved(child, files)
    assert doc.data == {"workflow": yaml.safe_load(textwrap.dedent(expected))}
    wf, diags = lint(child, files)  # and the result is a valid workflow
    assert wf is not None, [d.format() for d in diags]
    assert "extends" not in yaml.safe_load(doc.text or "")["workflow"]
    assert yaml.safe_load(doc.text or "") == doc.data  # what a run stores loads back the same


REPOS = {("acme/ci-templates", "v2"): {
    ".clarity/python.yaml": """\
        workflow:
          extends: common.yaml
          env: {PYTHON: "3.12"}
          tasks:
            - {name: test, image: "python:3.12", commands: ["pytest"]}
        """,
    ".clarity/common.yaml": """\
        workflow:
          name: python
          env: {CI: "true"}
          tasks:
            - {name: lint, image: busybox, commands: ["echo lint"]}
        """},
    ("acme/ci-templates", "v1"): {".clarity/python.yaml": """\
        workflow:
          name: python
          tasks: [{name: old, image: busybox}]
        """}}


def test_a_base_of_another_repository_at_a_ref_reads_its_own_bases_there() -> None:
    child = """\
        workflow:
          name: app
          extends: {repo: acme/ci-templates, ref: v2, path: python.yaml}
          tasks:
            - {name: test, commands: ["pytest -x"]}
        """
    doc = resolved(child, {}, REPOS)
    assert doc.data == {"workflow": {
        "name": "app", "env": {"CI": "true", "PYTHON": "3.12"},
        "tasks": [{"name": "lint", "image": "busybox", "commands": ["echo lint"]},
                  {"name": "test", "image": "python:3.12", "commands": ["pytest -x"]}]}}
    assert [b.file for b in doc.bases] == ["acme/ci-templates@v2:.clarity/python.yaml",
                                           "acme/ci-templates@v2:.clarity/common.yaml"]
    records = [b.record() for b in doc.bases]
    assert records[1]["repo"] == "acme/ci-templates" and records[1]["ref"] == "v2"
    assert records[1]["path"] == ".clarity/common.yaml" and records[1]["blob"]
    pinned = resolved(child.replace("ref: v2", "ref: v1"), {}, REPOS)  # the ref decides what is read
    assert [t["name"] for t in pinned.data["workflow"]["tasks"]] == ["old", "test"]


def test_every_value_keeps_the_position_of_its_file() -> None:
    child = """\
        workflow:
          name: app
          extends: {repo: acme/ci-templates, ref: v2, path: python.yaml}
          tasks:
            - name: test
              commands: ["pytest -x"]
        """
    doc = resolved(child, {}, REPOS)
    python, common = "acme/ci-templates@v2:.clarity/python.yaml", "acme/ci-templates@v2:.clarity/common.yaml"
    assert str(doc.pos(("workflow", "name"))) == f"{CHILD}:2:9"
    assert str(doc.pos(("workflow", "env", "CI"))) == f"{common}:3:13"
    assert str(doc.pos(("workflow", "env", "PYTHON"))) == f"{python}:3:17"
    assert str(doc.pos(("workflow", "tasks", 0, "image"))) == f"{common}:5:27"
    assert str(doc.pos(("workflow", "tasks", 1, "image"))) == f"{python}:5:27"
    assert str(doc.pos(("workflow", "tasks", 1, "commands", 0))) == f"{CHILD}:6:18"
    assert explain(doc) == textwrap.dedent(f"""\
        workflow:  # {CHILD}:1
          name: app  # {CHILD}:2
          env:  # {python}:3
            CI: 'true'  # {common}:3
            PYTHON: '3.12'  # {python}:3
          tasks:  # {CHILD}:4
            - name: lint  # {common}:5
              image: busybox  # {common}:5
              commands:  # {common}:5
                - echo lint  # {common}:5
            - name: test  # {CHILD}:5
              image: python:3.12  # {python}:5
              commands:  # {CHILD}:6
                - pytest -x  # {CHILD}:6
        """)
    assert yaml.safe_load(explain(doc)) == doc.data


def test_a_base_error_points_into_the_base() -> None:
    _wf, diags = lint("""\
        workflow:
          name: app
          extends: base.yaml
        """, {".clarity/base.yaml": """\
        workflow:
          tasks:
            - name: t
              imgae: busybox
        """})
    shown = [d.format() for d in diags]
    assert ".clarity/base.yaml:4:7: error: unknown key 'imgae' in task 't'\n  hint: did you mean 'image'?" in shown


def test_a_file_without_extends_lints_as_before() -> None:
    text = "workflow:\n  name: w\n  tasks: [{name: t, image: busybox}]\n"
    wf, diags = lint_text(text, CHILD, PLUGIN_TYPES, sources=MemorySources({}), loaded=own(text))
    assert wf is not None and diags == []
    assert isinstance(wf.source, Resolved) and wf.source.text is None and wf.source.bases == ()


def _chain(n: int) -> dict[str, str]:
    """b1.yaml extends b2.yaml ... bn.yaml (which has the task)."""
    files = {f".clarity/b{i}.yaml": f"workflow:\n  extends: b{i + 1}.yaml\n" for i in range(1, n)}
    files[f".clarity/b{n}.yaml"] = "workflow:\n  tasks: [{name: t, image: busybox}]\n"
    return files


def test_a_chain_of_max_depth_bases_is_fine_one_more_is_an_error() -> None:
    child = "workflow:\n  name: app\n  extends: b1.yaml\n"
    wf, diags = lint(child, _chain(MAX_DEPTH))
    assert wf is not None and len(wf.source.bases) == MAX_DEPTH, [d.format() for d in diags]  # type: ignore[attr-defined]
    _wf, diags = lint(child, _chain(MAX_DEPTH + 1))
    assert [d.format() for d in diags] == [
        f"{CHILD}:3:12: error: more than 5 bases: {CHILD} -> .clarity/b1.yaml -> .clarity/b2.yaml -> "
        ".clarity/b3.yaml -> .clarity/b4.yaml -> .clarity/b5.yaml -> .clarity/b6.yaml (the base .clarity/b5.yaml "
        "extends .clarity/b6.yaml at .clarity/b5.yaml:2:12)\n  hint: a chain of extends may have at most 5 bases"]


# (case, files, child, the diagnostics expected, each `file:line:col: severity: message[\n  hint: ...]`)
ERRORS: list[tuple[str, dict[str, str], str, list[str]]] = [
    ("missing base", {}, """
        workflow:
          name: app
          extends: nope.yaml
        """, [f"{CHILD}:4:12: error: cannot read the base .clarity/nope.yaml: no file .clarity/nope.yaml at "
              f"{COMMIT[:12]}\n  hint: a bare file name is read in .clarity/, a path with '/' from the repository "
              "root"]),
    ("missing ref", {}, """
        workflow:
          name: app
          extends: {repo: acme/ci-templates, ref: v9, path: python.yaml}
        """, [f"{CHILD}:4:12: error: cannot read the base acme/ci-templates@v9:.clarity/python.yaml: repository "
              "acme/ci-templates has no tag, branch or commit 'v9'\n  hint: check that the repository "
              "acme/ci-templates is known here (its URL or path, or a name registered with `clarity repo add`, or in "
              "the setting repositories for clarity run) and has the tag, branch or commit v9"]),
    ("missing base further down the chain: both positions", {".clarity/base.yaml": """
        workflow:
          extends: gone.yaml
        """}, """
        workflow:
          name: app
          extends: base.yaml
        """, [f"{CHILD}:4:12: error: cannot read the base .clarity/gone.yaml: no file .clarity/gone.yaml at "
              f"{COMMIT[:12]} (the base .clarity/base.yaml extends .clarity/gone.yaml at .clarity/base.yaml:3:12)\n"
              "  hint: a bare file name is read in .clarity/, a path with '/' from the repository root"]),
    ("a cycle: both positions", {".clarity/base.yaml": """
        workflow:
          extends: ci.yaml
        """}, """
        workflow:
          name: app
          extends: base.yaml
        """, [f"{CHILD}:4:12: error: extends makes a cycle: {CHILD} -> .clarity/base.yaml -> {CHILD} (the base "
              ".clarity/base.yaml extends .clarity/ci.yaml at .clarity/base.yaml:3:12)\n"
              "  hint: a base cannot extend a file that extends it"]),
    ("a file extending itself", {}, """
        workflow:
          name: app
          extends: ci.yaml
        """, [f"{CHILD}:4:12: error: extends makes a cycle: {CHILD} -> {CHILD}\n"
              "  hint: a base cannot extend a file that extends it"]),
    ("removing a task the base does not have", {".clarity/base.yaml": """
        workflow:
          tasks: [{name: t, image: busybox}]
        """}, """
        workflow:
          name: app
          extends: base.yaml
          tasks:
            - {name: tset, remove: true}
        """, [f"{CHILD}:6:14: error: cannot remove task 'tset': the base (.clarity/base.yaml) has no such task\n"
              "  hint: the base's tasks: t"]),
    ("remove in a file that extends nothing", {}, """
        workflow:
          name: app
          tasks:
            - {name: t, image: busybox}
            - {name: u, remove: true}
        """, [f"{CHILD}:6:17: error: 'remove' is only valid in a file that extends another\n"
              "  hint: add `extends:` naming the base that defines the task, or delete the task"]),
    ("remove with other keys", {".clarity/base.yaml": """
        workflow:
          tasks: [{name: t, image: busybox}, {name: u, image: busybox}]
        """}, """
        workflow:
          name: app
          extends: base.yaml
          tasks:
            - {name: t, remove: true, image: alpine}
            - {name: u, remove: false}
        """, [f"{CHILD}:6:31: error: a task with 'remove: true' takes no other keys (found 'image')\n"
              "  hint: to replace the task, remove it here and add a task under another name",
              f"{CHILD}:7:25: error: 'remove' must be true\n  hint: to keep the base's task, leave 'remove' out"]),
    ("extends of the wrong shape", {}, """
        workflow:
          name: app
          extends: {repo: acme/ci-templates, path: python.yaml, branch: main}
        """, [f"{CHILD}:4:12: error: 'extends' names a repository without a 'ref'\n"
              "  hint: pin a tag, branch or commit: ref: v2 (a base of another repository is read at that ref)",
              f"{CHILD}:4:57: error: unknown key 'branch' in 'extends'\n  hint: allowed keys: repo, ref, path"]),
    ("extends a number", {}, """
        workflow:
          name: app
          extends: 3
        """, [f"{CHILD}:4:12: error: 'extends': expected a file (base.yaml, or a path from the repository root) "
              "or {repo, ref, path}\n  hint: e.g. extends: {repo: acme/ci-templates, ref: v2, path: python.yaml}"]),
    ("a base that is not YAML", {".clarity/base.yaml": "workflow: [\n"}, """
        workflow:
          name: app
          extends: base.yaml
        """, [f"{CHILD}:4:12: error: the base .clarity/base.yaml is not valid YAML",
              ".clarity/base.yaml:2:1: error: invalid YAML: expected the node content, but found '<stream end>' "
              "(while parsing a flow node)"]),
    ("a task overridden twice: the second is a duplicate", {".clarity/base.yaml": """
        workflow:
          tasks: [{name: t, image: busybox}]
        """}, """
        workflow:
          name: app
          extends: base.yaml
          tasks:
            - {name: t, commands: [a]}
            - {name: t, commands: [b]}
        """, [f"{CHILD}:7:14: error: duplicate task name 't' (first defined at {CHILD}:6:14)",
              f"{CHILD}:7:7: error: missing required key 'image' in task 't'"]),
]


@pytest.mark.parametrize("files,child,expected", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_chain_errors(files: dict[str, str], child: str, expected: list[str]) -> None:
    wf, diags = lint(child, files, REPOS)
    assert wf is None
    assert sorted(d.format() for d in diags) == sorted(expected)


def test_without_sources_a_base_cannot_be_read() -> None:
    text = "workflow:\n  name: app\n  extends: base.yaml\n"
    wf, diags = lint_text(text, CHILD, PLUGIN_TYPES)
    assert wf is None
    assert [d.format() for d in diags] == [
        f"{CHILD}:3:12: error: the base .clarity/base.yaml cannot be read here: no repository to read it from\n"
        "  hint: lint the file inside its git repository (clarity lint, clarity run), or on the controller"]


def test_the_resolved_text_lints_alone_to_the_same_workflow() -> None:
    """What a run stores (the engine re-lints it with no sources) is the same workflow."""
    child = """\
        workflow:
          name: app
          extends: base.yaml
          tasks:
            - {name: test, env: {B: "x"}}
            - {name: deploy, image: busybox, needs: [test], commands: ["echo ${tasks.test.output}"]}
        """
    wf, diags = lint(child, {".clarity/base.yaml": BASE})
    assert wf is not None, [d.format() for d in diags]
    text = wf.source.text  # type: ignore[attr-defined]
    again, diags = lint_text(text, CHILD, PLUGIN_TYPES)
    assert again is not None and not [d for d in diags if d.is_error]

    def strip(w: Workflow) -> list[Any]:
        return [(t.name, t.image, t.commands, t.env, t.needs, t.memory_bytes, t.timeout_s) for t in w.tasks] + \
            [w.name, w.env, [(t.type, t.config) for t in w.triggers]]

    assert strip(again) == strip(wf)
