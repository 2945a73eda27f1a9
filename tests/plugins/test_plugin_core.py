"""The plugin core: finding plugins (entry points, manifests), version ranges, lint checks of
plugin tasks (config schema, pins, permissions) and compiling a plugin task into its TaskSpec."""

from __future__ import annotations

import json
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from controller.plugins import Registry, discover
from controller.plugins.compile import render_plugin_task
from controller.plugins.versions import RangeError, matches, parse
from controller.workflow.compile import GitInfo, RenderError, RunContext
from controller.workflow.lint import lint_text
from runner.spec import Outcome, TaskResult, Workspace

MANIFEST = """\
name: {name}
version: {version}
description: A test plugin.
image: clarity-busybox:latest
task_types:
  {task}:
    description: Says something.
    module: {package}.work
    config:
      type: object
      additionalProperties: false
      required: [message]
      properties:
        message: {{type: string, description: What to say.}}
        count: {{type: integer, minimum: 1, description: How often.}}
        data: {{description: Anything.}}
permissions:
  network: {network}
  secrets: {secrets}
"""


def make_plugin(root: Path, package: str, *, name: str | None = None, version: str = "1.2.0", task: str = "say",
                network: bool = False, secrets: bool = False, init: str = "", manifest: str | None = None) -> None:
    folder = root / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(init)
    (folder / "work.py").write_text("print('work')\n")
    (folder / "manifest.yaml").write_text(manifest if manifest is not None else MANIFEST.format(
        name=name or package, version=version, task=task, package=package, network=str(network).lower(),
        secrets=str(secrets).lower()))


def ep(name: str, module: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name, module, "clarity.plugins")


@pytest.fixture
def plugin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


@pytest.fixture
def registry(plugin_root: Path) -> Registry:
    make_plugin(plugin_root, "tp_say")
    make_plugin(plugin_root, "tp_net", task="fetch", network=True, secrets=True)
    reg = discover([ep("tp_say", "tp_say"), ep("tp_net", "tp_net")])
    assert not reg.problems
    return reg


@pytest.mark.parametrize("rng, version, expected", [
    ("^1", "1.9.3", True), ("^1", "2.0.0", False), ("^1.2", "1.1.0", False), ("^0.3", "0.3.9", True),
    ("^0.3", "0.4.0", False), ("~1.2", "1.2.9", True), ("~1.2", "1.3.0", False), ("1.2.0", "1.2.0", True),
    ("=1.2.0", "1.2.1", False), ("1", "1.7", True), (">=1.1,<2", "1.5.0", True), (">=1.1,<2", "2.0.0", False),
])
def test_version_ranges(rng: str, version: str, expected: bool) -> None:
    assert matches(version, rng) is expected


@pytest.mark.parametrize("bad", ["latest", "^x", "1.2.3.4.5.6-"])
def test_bad_version_range(bad: str) -> None:
    with pytest.raises(RangeError, match="is not a version range"):
        parse(bad)


def test_discover_loads_good_plugins_and_reports_broken_ones(plugin_root: Path) -> None:
    make_plugin(plugin_root, "tp_good")
    make_plugin(plugin_root, "tp_import", init="import not_a_module_anywhere\n")
    make_plugin(plugin_root, "tp_noversion", manifest="name: tp_noversion\ndescription: x\ntask_types: {}\n")
    make_plugin(plugin_root, "tp_misnamed", name="other")
    make_plugin(plugin_root, "tp_zdup", task="say")  # tp_good has `say` already
    make_plugin(plugin_root, "tp_core", task="container")
    make_plugin(plugin_root, "tp_extra", init="TASK_TYPES = {'undeclared': object()}\n")
    make_plugin(plugin_root, "tp_wrong", init="TASK_TYPES = {'say2': object()}\n", task="say2")
    reg = discover([ep(n, n) for n in ("tp_good", "tp_import", "tp_noversion", "tp_misnamed", "tp_zdup", "tp_core",
                                       "tp_extra", "tp_wrong")])
    assert list(reg.plugins) == ["tp_good"]
    assert reg.plugins["tp_good"].version == "1.2.0" and reg.task_type("say") is not None
    why = {p.plugin: p.message for p in reg.problems}
    assert "No module named 'not_a_module_anywhere'" in why["tp_import"]
    assert "'version' is a required property" in why["tp_noversion"]
    assert "the manifest's name is 'other'" in why["tp_misnamed"]
    assert "provided by plugin 'tp_good' already" in why["tp_zdup"]
    assert "task type 'container' is Clarity's own" in why["tp_core"]
    assert "undeclared, which the manifest does not declare" in why["tp_extra"]
    assert "has no compile(config, base, ctx)" in why["tp_wrong"]


def lint(text: str, registry: Registry, grants: dict[str, frozenset[str]] | None = None) -> tuple[Any, list[str]]:
    wf, diags = lint_text(textwrap.dedent(text), "w.yaml", plugins=registry, grants=grants)
    return wf, [d.format() for d in diags]


def test_lint_checks_plugin_config_with_positions(registry: Registry) -> None:
    _, found = lint("""\
        workflow:
          name: w
          tasks:
            - name: a
              type: say
              config: {message: 3, extra: x}
            - name: b
              type: nope
        """, registry)
    assert any(f.startswith("w.yaml:6:") and "message" in f for f in found), found
    assert any(f.startswith("w.yaml:6:") and "extra" in f for f in found), found
    assert any(f.startswith("w.yaml:8:") and "nope" in f for f in found), found


def test_lint_checks_version_pins(registry: Registry) -> None:
    wf, found = lint("""\
        workflow:
          name: w
          tasks:
            - {name: a, type: say@^1, config: {message: hi}}
        """, registry)
    assert found == [] and wf.tasks[0].type == "say" and wf.tasks[0].version_range == "^1"
    _, found = lint("""\
        workflow:
          name: w
          tasks:
            - {name: a, type: say@^2, config: {message: hi}}
        """, registry)
    assert found[0].startswith("w.yaml:4:23: error: task 'a' asks for say@^2, but plugin tp_say 1.2.0 is installed")
    assert "hint: change the range (e.g. say@^1)" in found[0] and len(found) == 1
    _, found = lint("""\
        workflow:
          name: w
          tasks:
            - {name: b, type: say@soon, config: {message: hi}}
        """, registry)
    assert found == ["w.yaml:4:23: error: task type 'say@soon': 'soon' is not a version range; write ^1, ~1.2, "
                     "1.2.3 or >=1.1,<2"]


def test_lint_checks_permissions(registry: Registry) -> None:
    text = """\
        workflow:
          name: w
          tasks:
            - {name: a, type: say, network: host, config: {message: "${secrets.TOKEN}"}}
            - {name: b, type: fetch, network: host, config: {message: "${secrets.TOKEN}"}}
        """
    _, found = lint(text, registry, grants={"tp_net": frozenset({"network"})})
    assert "w.yaml:4:37: error: task 'a': plugin tp_say does not ask for the network permission" in found[0]
    assert "w.yaml:4:51: error: task 'a': plugin tp_say does not ask for the secrets permission" in found[1]
    assert found[2].startswith("w.yaml:5:53: error: task 'b': plugin tp_net needs the secrets permission here, "
                               "which is not granted")
    assert "clarity repo set REPO --allow-plugin tp_net=secrets" in found[2]
    assert len(found) == 3
    _, found = lint(text.replace("- {name: a, type: say, network: host, ", "- {name: a, type: say, "
                                 ).replace('"${secrets.TOKEN}"}}\n            - {name: b', '"hi"}}\n            - {name: b'),
                    registry, grants={"tp_net": frozenset({"network", "secrets"})})
    assert found == []


def _ctx(registry: Registry, wf: Any, grants: dict[str, frozenset[str]] | None = None) -> RunContext:
    return RunContext(run_id=7, workflow=wf, workspace=Workspace(repo="/r", commit="a" * 40),
                      git=GitInfo(sha="a" * 40), event="webhook", trigger={"payload": {"k": [1, 2]}},
                      secrets={"TOKEN": "s3cret"}, grants=grants or {}, plugins=registry)


def test_compile_resolves_config_values_and_copies_the_code(registry: Registry) -> None:
    wf, found = lint("""\
        workflow:
          name: w
          tasks:
            - {name: up, image: clarity-busybox:latest, commands: ["true"]}
            - {name: a, type: say, config: {message: "run ${workflow.id}", data: "${tasks.up.output}",
                                            count: 2}}
        """, registry)
    assert found == []
    up = TaskResult(Outcome.SUCCEEDED, output={"rows": [1, 2]})
    spec = render_plugin_task(wf.task("a"), _ctx(registry, wf), {"up": up}, ("up",))
    files = {f.path: f.content for f in spec.files}
    config = json.loads(files["/clarity/plugin/config.json"])
    assert config == {"message": "run 7", "data": {"rows": [1, 2]}, "count": 2}  # the upstream output as JSON
    context = json.loads(files["/clarity/plugin/context.json"])
    assert context["trigger"]["payload"] == {"k": [1, 2]} and context["plugin"] == "tp_say"
    assert "/clarity/plugin/code/tp_say/work.py" in files and "/clarity/plugin/code/plugins/sdk/runtime.py" in files
    assert spec.argv == ("python3", "-m", "tp_say.work") and spec.image == "clarity-busybox:latest"
    assert spec.network == "none" and spec.mounts == () and spec.labels["io.clarity.plugin"] == "tp_say@1.2.0"


def test_compile_refuses_what_is_not_granted_and_bad_plugins(plugin_root: Path, registry: Registry) -> None:
    wf, _ = lint("""\
        workflow:
          name: w
          tasks:
            - {name: a, type: fetch, network: host, config: {message: "${secrets.TOKEN}"}}
        """, registry)
    with pytest.raises(RenderError, match="not granted the secrets permission"):
        render_plugin_task(wf.task("a"), _ctx(registry, wf, {"tp_net": frozenset({"network"})}), {})
    spec = render_plugin_task(wf.task("a"), _ctx(registry, wf, {"tp_net": frozenset({"network", "secrets"})}), {})
    assert spec.network == "host" and "s3cret" in spec.mask

    # A plugin whose compile misbehaves: the task errors with the plugin named; nothing else breaks.
    make_plugin(plugin_root, "tp_bad", task="bad", init=textwrap.dedent("""\
        import dataclasses
        from runner.spec import Mount
        class Bad:
            def compile(self, config, base, ctx):
                if config["message"] == "boom":
                    raise KeyError("oops")
                if config["message"] == "mount":
                    return dataclasses.replace(base, image="x", mounts=(Mount("/", "/host"),))
                return dataclasses.replace(base, image="x", run_id="999")
        TASK_TYPES = {"bad": Bad()}
        """))
    reg = discover([ep("tp_bad", "tp_bad")])
    for message, error in (("boom", "plugin tp_bad 1.2.0 failed to compile it: KeyError"),
                           ("mount", "asked for host paths without the host_paths permission"),
                           ("other", "changed the task's run_id, which only Clarity sets")):
        wf, _ = lint(f"workflow: {{name: w, tasks: [{{name: a, type: bad, config: {{message: {message}}}}}]}}", reg)
        with pytest.raises(RenderError, match=error):
            render_plugin_task(wf.task("a"), _ctx(reg, wf), {})
