"""A task of a plugin's type -> its TaskSpec: the config resolved and checked, the plugin's
`compile`, and a check of what it returned against what the plugin may have here."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jsonschema

from controller.plugins import installed
from controller.plugins.registry import LoadedPlugin, Registry
from controller.plugins.versions import matches
from controller.workflow.compile import RenderError, RunContext, _Resolver, base_spec, render_config
from controller.workflow.model import Task
from plugins.sdk.task import CompileContext, CompileError
from runner.spec import TaskResult, TaskSpec


def plugin_for(task: Task, registry: Registry | None = None) -> LoadedPlugin:
    found = (registry or installed()).task_type(task.type)
    if found is None:
        raise RenderError(f"task '{task.name}': no installed plugin provides the task type '{task.type}' "
                          "(clarity plugins list shows what is installed)")
    plugin = found[0]
    if task.version_range is not None and not matches(plugin.version, task.version_range):
        raise RenderError(f"task '{task.name}' asks for {task.type}@{task.version_range}, but plugin {plugin.name} "
                          f"{plugin.version} is installed")
    return plugin


def label(task: Task, registry: Registry | None = None) -> str | None:
    """`validation 1.0.0`: the plugin and version a task uses (None for a container task, or a
    type no plugin provides)."""
    if task.type == "container":
        return None
    found = (registry or installed()).task_type(task.type)
    return f"{found[0].name} {found[0].version}" if found is not None else None


def render_plugin_task(task: Task, ctx: RunContext, results: Mapping[str, TaskResult],
                       upstream: tuple[str, ...] = (), *, attempt: int = 1) -> TaskSpec:
    registry: Registry | None = ctx.plugins
    plugin = plugin_for(task, registry)
    impl = plugin.task_types[task.type]
    granted = frozenset(ctx.grants.get(plugin.name, frozenset())) & plugin.manifest.permissions
    uses_secrets = bool(task.secrets) or "${secrets." in repr(task.config)
    if uses_secrets and "secrets" not in granted:
        raise RenderError(f"task '{task.name}': plugin {plugin.name} is not granted the secrets permission here")
    if task.network != "none" and "network" not in granted:
        raise RenderError(f"task '{task.name}': plugin {plugin.name} is not granted the network permission here")

    resolve = _Resolver(ctx, results)
    config = render_config(task.config, resolve)
    schema = plugin.manifest.task_types[task.type].config
    problems = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if problems:  # the file passed lint: a resolved value (an upstream output, an input) does not fit
        shown = "; ".join(f"config.{'.'.join(map(str, e.path))}: {e.message}" if e.path else f"config: {e.message}"
                          for e in problems[:5])
        raise RenderError(f"task '{task.name}': after its expressions were resolved, the config does not fit "
                          f"{plugin.name}'s schema: {shown}")
    base = base_spec(task, ctx, results, upstream, attempt=attempt, image=plugin.manifest.image or "",
                     with_commands=False)
    base = dataclasses.replace(base, labels={**base.labels, "io.clarity.plugin": f"{plugin.name}@{plugin.version}"})
    cctx = CompileContext(plugin=plugin.name, version=plugin.version, task_type=task.type, granted=granted,
                          storage_root=ctx.storage_root, trigger={"event": ctx.event, **ctx.trigger},
                          image=plugin.manifest.image)
    try:
        spec = impl.compile(config, base, cctx)
    except (CompileError, ValueError) as e:
        raise RenderError(f"task '{task.name}': {e}") from None
    except Exception as e:  # the plugin's bug: the task errors, the controller goes on
        raise RenderError(f"task '{task.name}': plugin {plugin.name} {plugin.version} failed to compile it: "
                          f"{type(e).__name__}: {e}") from None
    return _checked(task, plugin, granted, base, spec)


def _checked(task: Task, plugin: LoadedPlugin, granted: frozenset[str], base: TaskSpec, spec: Any) -> TaskSpec:
    who = f"plugin {plugin.name} {plugin.version}"
    if not isinstance(spec, TaskSpec):
        raise RenderError(f"task '{task.name}': {who} returned {type(spec).__name__}, not a TaskSpec")
    for name in ("run_id", "task", "workspace", "attempt", "timeout_s", "limits", "mask"):
        if getattr(spec, name) != getattr(base, name):
            raise RenderError(f"task '{task.name}': {who} changed the task's {name}, which only Clarity sets")
    if spec.network != base.network and "network" not in granted:
        raise RenderError(f"task '{task.name}': {who} asked for network {spec.network!r} without the network "
                          "permission")
    if spec.mounts and "host_paths" not in granted:
        raise RenderError(f"task '{task.name}': {who} asked for host paths without the host_paths permission")
    if not spec.image:
        raise RenderError(f"task '{task.name}': {who} names no image for it")
    return spec
