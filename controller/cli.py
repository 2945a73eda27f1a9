"""The `clarity` command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Iterable, Sequence

from controller import __version__
from controller.errors import UserError
from controller.settings import Settings, SettingsError
from controller.workflow.schema import SECRET_NAME_PATTERN

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELED = 0, 1, 2, 130


_SECRET_NAME = re.compile(SECRET_NAME_PATTERN)



def _payload(path: str) -> dict[str, Any]:
    import json

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        value = json.loads(text)
    except OSError as exc:
        raise UserError(f"--payload {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError(f"--payload {path}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UserError(f"--payload {path}: the payload must be a JSON object, like {{\"orders\": []}}")
    return value


def _parse_pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{what} '{item}' must look like NAME=VALUE")
        out[key] = value
    return out


def collect_secrets(
    pairs: Sequence[str], files: Sequence[str], environ: dict[str, str]
) -> dict[str, str]:
    """--secret NAME=VALUE, --secret NAME (value from $NAME), --secret-file NAME=PATH, and
    CLARITY_SECRET_<NAME> variables."""
    secrets = {k.removeprefix("CLARITY_SECRET_"): v for k, v in environ.items() if k.startswith("CLARITY_SECRET_")}
    for item in pairs:
        if "=" in item:
            secrets.update(_parse_pairs([item], "--secret"))
        elif item in environ:
            secrets[item] = environ[item]
        else:
            raise UserError(f"--secret {item}: no environment variable {item} (use --secret {item}=VALUE)")
    for name, path in _parse_pairs(files, "--secret-file").items():
        try:
            secrets[name] = Path(path).read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise UserError(f"--secret-file {name}={path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UserError(f"--secret-file {name}={path}: not UTF-8 text (encode a binary secret, e.g. base64)") from None
    for name in secrets:
        if not _SECRET_NAME.fullmatch(name):
            raise UserError(f"secret name {name!r} is not valid: use capital letters, digits and _, not starting "
                            "with a digit, as workflows name them (e.g. DEPLOY_KEY)")
    return secrets


def _lint_sources(settings: Settings) -> Any:
    """(path, text) -> the sources of the file's working tree and the file as Loaded (`extends:`)."""
    from controller.workflow.sources import LocalSources

    return lambda path, text: LocalSources.around(path, text, str(path), cache=settings.cache,
                                                  repositories=settings.repositories)


def _cmd_explain(path: Path, settings: Settings) -> int:
    """`clarity lint --explain FILE`: the workflow after inheritance, each value with where it came from."""
    from controller.workflow.extends import explain, resolve
    from controller.workflow.lint import lint_text
    from controller.workflow.load import load

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    sources, own = _lint_sources(settings)(path, text)
    _wf, diagnostics = lint_text(text, str(path), grants=settings.plugin_permissions, sources=sources, loaded=own)
    for d in diagnostics:
        print(d.format(), file=sys.stderr)
    doc, _ = load(text, str(path))
    resolved, _ = resolve(doc, sources, own) if doc is not None else (None, [])
    if resolved is not None:
        print(f"# {path}, resolved: every value with the file:line it comes from")
        for base in resolved.bases:
            at = f"commit {base.commit[:12]}, blob {(base.blob or '')[:12]}" if base.commit else "working tree"
            print(f"# base: {base.file} ({at})")
        print(explain(resolved), end="")
    errors = sum(d.severity == "error" for d in diagnostics)
    print(f"{path}: {errors} error(s), {len(diagnostics) - errors} warning(s)", file=sys.stderr)
    return EXIT_FAILED if errors or resolved is None else EXIT_OK


def _cmd_lint(args: argparse.Namespace) -> int:
    from controller.workflow.lint import lint_paths

    settings = Settings.from_env()
    if args.explain:
        return _cmd_explain(Path(args.explain), settings)
    try:  # the permissions plugins have here (as `clarity run` checks them)
        results = lint_paths([Path(p) for p in args.paths], grants=settings.plugin_permissions,
                             sources=_lint_sources(settings))
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    errors = warnings = 0
    for _file, diagnostics in results.items():
        for d in diagnostics:
            print(d.format())
            errors += d.severity == "error"
            warnings += d.severity == "warning"
    if not results:
        raise UserError("no workflow files found (looked for .clarity/*.yaml)")
    sys.stdout.flush()  # the diagnostics above it first, on a terminal too
    print(f"{len(results)} file(s) checked: {errors} error(s), {warnings} warning(s)", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


def _cmd_schema(_args: argparse.Namespace) -> int:
    from controller.workflow.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def _open_store(settings: Settings):  # type: ignore[no-untyped-def]
    from controller.store.runs import Store

    return Store.open(settings.database_url)


def _cmd_runs(args: argparse.Namespace) -> int:
    from controller.console import fmt_duration

    if args.show:
        if args.run is None:
            raise UserError("runs show needs a RUN number (see `clarity runs`)")
        return _cmd_runs_show(args)

    from runner import owner

    controller = _controller_url(args)
    if controller:
        from controller.cli_remote import remote_call

        params = {"limit": args.limit}
        rows = remote_call(args, "GET", "/api/v1/runs", params=params)["runs"]
        repo = None
        if not rows:
            print(f"no runs yet on {controller}")
            return EXIT_OK
        print(f"runs on {controller}")
    else:
        store = _open_store(Settings.from_env())
        store.reap_orphans(owner.is_orphan)
        repo = None if args.all else _current_repo()
        rows = [{"id": r.id, "state": r.state, "workflow": r.workflow, "commit_sha": r.commit_sha, "dirty": r.dirty,
                 "event": r.event, "duration_s": r.duration_s, "created_at": r.created_at, "repo": r.repo}
                for r in store.list_runs(limit=args.limit, repo=repo)]
        if not rows:
            where = f" of {repo} (`clarity runs --all` shows every repository's)" if repo else ""
            print(f"no runs yet{where}: start one with `clarity run`")
            return EXIT_OK
        if repo:
            print(f"runs of {repo}")
    print(f"{'RUN':>5}  {'STATE':<10}  {'WORKFLOW':<24}  {'COMMIT':<9}  {'EVENT':<12}  {'TIME':>7}  {'STARTED':<19}"
          + ("  REPOSITORY" if repo is None else ""))
    for r in rows:
        commit = (r["commit_sha"] or "")[:8] + ("+" if r["dirty"] else "")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created_at"]))
        print(f"{r['id']:>5}  {r['state']:<10}  {r['workflow'][:24]:<24}  {commit:<9}  {r['event']:<12}  "
              f"{fmt_duration(r['duration_s']):>7}  {started:<19}" + (f"  {r['repo']}" if repo is None else ""))
    return EXIT_OK


def describe_trigger(trigger: Any, event: str) -> str:
    """What started a run, in a line: who, which event, and which delivery, tick, file or cause."""
    t = trigger if isinstance(trigger, dict) else {}
    parts = [str(t.get("event") or event)]
    if t.get("by"):
        parts.append(f"by {t['by']}")
    for key, label in (("delivery", "delivery"), ("tick", "tick"), ("backfill", "backfill"), ("file", "file"),
                       ("name", "event"), ("ref", "ref"), ("number", "pull request #"), ("sender", "sender"),
                       ("run", "after run"), ("rerun_of", "re-run of"), ("parent_run", "sub-run of run"),
                       ("parent_task", "task")):
        if t.get(key) not in (None, ""):
            parts.append(f"{label}{'' if label.endswith('#') else ' '}{t[key]}")
    if t.get("poll"):
        parts.append("seen by polling")
    return ", ".join(parts)


def _cmd_runs_show(args: argparse.Namespace) -> int:
    from controller.api.runs import sub_runs_json
    from controller.console import fmt_duration
    from controller.store.runs import NotFound

    if _controller_url(args):
        from controller.cli_remote import remote_call

        run = remote_call(args, "GET", f"/api/v1/runs/{args.run}")
    else:
        store = _open_store(Settings.from_env())
        try:
            row = store.get_run(args.run)
        except NotFound:
            raise UserError(f"no run {args.run} (see `clarity runs`)") from None
        run = {"id": row.id, "repo": row.repo, "workflow": row.workflow, "workflow_file": row.workflow_file,
               "blob_sha": row.blob_sha, "commit_sha": row.commit_sha, "ref": row.ref, "event": row.event,
               "state": row.state, "trigger": row.trigger, "message": row.message, "duration_s": row.duration_s,
               "created_at": row.created_at, "rerun_of": row.rerun_of, "reports": [],
               "plugins": (row.context or {}).get("plugins") if isinstance(row.context, dict) else {},
               "outputs": row.outputs or {},
               "files": (row.context or {}).get("files") if isinstance(row.context, dict) else [],
               "sub_runs": sub_runs_json(store, row.id),
               "tasks": [{"name": t.name, "state": t.state, "attempt": t.attempt, "exit_code": t.exit_code,
                          "duration_s": t.duration_s, "error": t.error} for t in store.list_tasks(row.id)]}
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["created_at"]))
    print(f"run {run['id']}: {run['state']}  {run['workflow']} ({run['workflow_file']}"
          f"{' @ blob ' + run['blob_sha'][:12] if run.get('blob_sha') else ''})")
    print(f"  repository  {run['repo']}")
    print(f"  commit      {run.get('commit_sha') or '-'}  {run.get('ref') or ''}")
    print(f"  triggered   {describe_trigger(run.get('trigger'), run['event'])}")
    print(f"  created     {when}, took {fmt_duration(run.get('duration_s'))}")
    if run.get("message"):
        print("  message     " + "\n              ".join(str(run["message"]).splitlines()))
    if run.get("plugins"):
        print("  plugins     " + ", ".join(f"{task}: {used}" for task, used in run["plugins"].items()))
    if run.get("outputs"):
        print("  outputs     " + ", ".join(f"{name}={value}" for name, value in run["outputs"].items()))
    _print_files(run.get("files") or [], run.get("sub_runs") or [], "  ")
    for t in run.get("tasks") or []:
        extra = f"exit {t['exit_code']}" if t.get("exit_code") not in (None, 0) else (t.get("error") or "")
        print(f"  task {t['name']:<20} {t['state']:<10} {fmt_duration(t.get('duration_s')):>7}  "
              f"{'attempt ' + str(t['attempt']) + '  ' if t.get('attempt', 1) > 1 else ''}{extra}".rstrip())
    for r in run.get("reports") or []:
        state = "sent" if r["sent"] else f"not sent yet ({r['attempts']} attempt(s))"
        print(f"  {r['kind']:<6} {r.get('context') or r['key']}: {r.get('state')}, {state}"
              + (f"; last error: {r['last_error']}" if r.get("last_error") else ""))
    return EXIT_OK


def _print_files(files: Sequence[dict[str, Any]], sub_runs: Sequence[dict[str, Any]], indent: str) -> None:
    """The files that went into a run (the workflow file, its bases), then its sub-runs' (nested)."""
    for f in files:
        at = f"commit {(f.get('commit') or '')[:12]}  blob {(f.get('blob') or '')[:12]}" if f.get("commit") \
            else "working tree"
        print(f"{indent}file        {f.get('repo')}  {f.get('path')}{'@' + f['ref'] if f.get('ref') else ''}  {at}")
    for s in sub_runs:
        print(f"{indent}sub-run     {s['id']} (task {s.get('task')}): {s.get('workflow')}, {s.get('state')}")
        _print_files(s.get("files") or [], s.get("sub_runs") or [], indent + "  ")


def _controller_url(args: argparse.Namespace) -> str | None:
    """A controller to ask instead of this machine's database: --controller, or CLARITY_CONTROLLER."""
    return getattr(args, "controller", None) or os.environ.get("CLARITY_CONTROLLER") or None


def _current_repo() -> str | None:
    """The root of the git working copy around the current directory, as runs record it."""
    from controller.localrepo import LocalRepo, RepoError

    try:
        return str(LocalRepo.find(Path.cwd()).root)
    except RepoError:
        return None


def _cmd_logs(args: argparse.Namespace) -> int:
    from controller.console import printable
    from controller.store.runs import NotFound

    if _controller_url(args):
        from controller.cli_remote import remote_call

        run_json = remote_call(args, "GET", f"/api/v1/runs/{args.run}")
        tasks = [t["name"] for t in run_json["tasks"]]
        if args.task is not None and args.task not in tasks:
            raise UserError(f"run {args.run} has no task '{args.task}' (its tasks: {', '.join(tasks)})")
        params = {"task": args.task} if args.task else None
        lines = [(x["task"], x["ts"], x["line"])
                 for x in remote_call(args, "GET", f"/api/v1/runs/{args.run}/logs", params=params)["lines"]]
    else:
        store = _open_store(Settings.from_env())
        try:
            run = store.get_run(args.run)
        except NotFound:
            raise UserError(f"no run {args.run} (see `clarity runs`)") from None
        tasks = [t.name for t in store.list_tasks(run.id)]
        if args.task is not None and args.task not in tasks:
            raise UserError(f"run {run.id} has no task '{args.task}' (its tasks: {', '.join(tasks)})")
        lines = store.logs(run.id, args.task)
    width = max((len(t) for t in tasks), default=4)
    for task, _ts, line in lines:
        line = printable(line)
        print(line if args.task else f"{task.ljust(width)} │ {line}")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from controller.local import USER_ERRORS, LocalRunOptions, run_local

    settings = Settings.from_env()
    if args.parallel is not None:
        if args.parallel < 1:
            raise UserError("--parallel must be at least 1")
        settings = dataclasses.replace(settings, parallel=args.parallel)
    options = LocalRunOptions(
        files=tuple(args.files),
        tasks=tuple(args.task),
        event=args.event,
        inputs=_parse_pairs(args.input, "--input"),
        secrets=collect_secrets(args.secret, args.secret_file, dict(os.environ)),
        dirty=args.dirty,
        backend=args.backend,
        payload=_payload(args.payload) if args.payload else None,
    )
    cancel = threading.Event()

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        print("\nclarity: canceling (Ctrl-C again to quit at once)...", file=sys.stderr)
        cancel.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    previous_term = signal.signal(signal.SIGTERM, on_sigint)
    try:
        return run_local(Path.cwd(), settings, options, cancel, sys.stdout)
    except USER_ERRORS as exc:
        raise UserError(str(exc)) from None
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


def _remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controller", metavar="URL",
                   help="ask a running controller (default: CLARITY_CONTROLLER; without either: this machine's runs)")
    p.add_argument("--api-key", metavar="KEY", help="API key (default: CLARITY_API_KEY, or the key `clarity up` saved)")


class CommandParser(argparse.ArgumentParser):
    """The parser of one command (`clarity run`, `clarity repo`, ...) and of its own subcommands.

    argparse parses a subcommand with `parse_known_args` and hands what it does not know up to the
    top parser, which reports it under `usage: clarity [-h] [--version] COMMAND ...`: no help at all
    for `clarity run --bogus`. This parser reports it itself, with its own usage line, exit 2, as it
    already does for a bad value."""

    def parse_known_args(self, args: Iterable[str] | None = None,
                         namespace: Any = None) -> tuple[Any, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clarity", description="Git-native CI: run the workflows in .clarity/*.yaml.")
    p.add_argument("--version", action="version", version=f"clarity {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    sub.required = True

    run = sub.add_parser("run", help="run the repository's workflows at HEAD, each task in a container")
    run.add_argument("files", nargs="*", metavar="FILE", help="workflow files (default: all of .clarity/ that answer the event)")
    run.add_argument("--task", action="append", default=[], metavar="NAME", help="run only this task (and what it needs); repeatable")
    run.add_argument("--event", default="push", choices=["push", "pull_request", "tag", "manual"], help="the event to simulate (default: push)")
    run.add_argument("--input", action="append", default=[], metavar="K=V", help="an input value; repeatable")
    run.add_argument("--payload", metavar="FILE", help="a JSON object file ('-': stdin) given to the run as the "
                     "trigger's payload (${trigger.payload.*}), as a webhook or an event would")
    run.add_argument("--secret", action="append", default=[], metavar="NAME[=VALUE]", help="a secret (value from $NAME if omitted); repeatable")
    run.add_argument("--secret-file", action="append", default=[], metavar="NAME=PATH", help="a secret read from a file; repeatable")
    run.add_argument("--dirty", action="store_true", help="run the working tree as it is, not the committed HEAD")
    run.add_argument("--parallel", type=int, default=None, metavar="N", help="tasks running at once (default: CLARITY_PARALLEL, or the number of cores but at least 4: tasks mostly wait on containers)")
    run.add_argument("--backend", default=os.environ.get("CLARITY_BACKEND", "docker"), choices=["docker", "fake"],
                     help=argparse.SUPPRESS)  # fake: host processes, no isolation; for Clarity's own tests
    run.set_defaults(func=_cmd_run)

    lint = sub.add_parser("lint", help="check workflow files: every error and warning, with positions")
    lint.add_argument("paths", nargs="*", metavar="PATH", help="files or directories (default: .clarity/)")
    lint.add_argument("--explain", metavar="FILE", help="print the workflow of FILE after inheritance (extends), "
                      "each value with the file:line it comes from")
    lint.set_defaults(func=_cmd_lint)

    schema = sub.add_parser("schema", help="print the JSON Schema of the workflow format")
    schema.set_defaults(func=_cmd_schema)

    runs = sub.add_parser("runs", help="list past runs (of the repository you are in; --all for every one); "
                          "`runs show RUN`: one run, what triggered it, its tasks and reports")
    runs.add_argument("show", nargs="?", choices=["show"], help=argparse.SUPPRESS)
    runs.add_argument("run", nargs="?", type=int, metavar="RUN", help=argparse.SUPPRESS)
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--all", action="store_true", help="runs of every repository, with a REPOSITORY column")
    _remote_options(runs)
    runs.set_defaults(func=_cmd_runs)

    logs = sub.add_parser("logs", help="print the logs of a past run")
    logs.add_argument("run", type=int, metavar="RUN")
    logs.add_argument("task", nargs="?", metavar="TASK")
    _remote_options(logs)
    logs.set_defaults(func=_cmd_logs)

    from controller.cli_plugins import add_commands as plugin_commands
    from controller.cli_server import add_commands

    add_commands(sub)
    plugin_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["runner"]:  # a build machine's agent: nothing of the controller is loaded
        from runner.main import main as runner_main

        return runner_main(argv[1:])
    args = build_parser().parse_args(argv)
    import logging

    from controller.logs import configure

    configure("console", logging.WARNING)  # `up`/`controller` raise it to INFO; `run` keeps its screen
    try:
        return int(args.func(args))
    except (UserError, SettingsError) as exc:
        print(f"clarity: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("clarity: interrupted", file=sys.stderr)
        return EXIT_CANCELED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
