"""The `clarity` commands of the controller service: `up`, `controller`, `apikey`, and the ones that
manage its runs, runners and schedules through its API (`trigger`, `event`, `cancel`, `rerun`,
`runner-token`, `runners`, `schedules`, `backfill`); the repository commands are controller.cli_repo. `clarity runner` (the agent) is `runner.main`, dispatched before any of this loads: it is
listed here for `clarity --help` only."""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from controller.cli_remote import (URL_FILE, ago, base_url, json_option, print_json, remote_call,
                                   remote_options, repo_path, user_error)
from controller.settings import Settings

if TYPE_CHECKING:
    from controller.client import Client
    from controller.store.repos import ApiKeys





def _check_port(host: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise user_error(f"--port {port}: a port is a number from 1 to 65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise user_error(f"cannot listen on {host}:{port}: {exc.strerror} (another controller? use --port)") from None


def _serve(args: argparse.Namespace, builtin_runner: bool) -> int:
    import uvicorn

    from controller.app import create_app
    from controller.client import KEY_FILE
    from controller.logs import configure

    settings = Settings.from_env()
    settings = settings.with_(host=args.host or settings.host, port=args.port or settings.port)
    configure(settings.log_format)
    _check_port(settings.host, settings.port)
    if settings.tls_cert_file is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                settings.tls_cert_file, settings.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise user_error(f"cannot serve HTTPS with {settings.tls_cert_file} and {settings.tls_key_file}: "
                              f"{getattr(exc, 'strerror', None) or exc} (a PEM certificate and its own private key)") from None
    app = create_app(settings, builtin_runner=builtin_runner)
    keys = app.state.services.keys
    if not keys.list():  # the first start: make the admin key the command line will use
        _key, secret = keys.create("admin (made by clarity up)", "admin")
        path = settings.home / KEY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        print(f"clarity: made the first admin API key, saved to {path} (the CLI on this machine uses it):\n"
              f"  {secret}", file=sys.stderr)
    url_file = settings.home / URL_FILE  # so the CLI on this machine finds it without --controller
    url_file.parent.mkdir(parents=True, exist_ok=True)
    url_file.write_text(f"{settings.scheme}://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}"
                        f":{settings.port}\n")
    print(f"clarity: controller on {settings.scheme}://{settings.host}:{settings.port} "
          f"({'with' if builtin_runner else 'without'} the built-in runner; API docs: /api/v1/docs)", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=30,
                ssl_certfile=None if settings.tls_cert_file is None else str(settings.tls_cert_file),
                ssl_keyfile=None if settings.tls_key_file is None else str(settings.tls_key_file))
    return 0


def _cmd_runner(args: argparse.Namespace) -> int:
    from runner.main import main

    return main(args.args)


def _cmd_up(args: argparse.Namespace) -> int:
    return _serve(args, builtin_runner=True)


def _cmd_controller(args: argparse.Namespace) -> int:
    return _serve(args, builtin_runner=False)


def _keys() -> ApiKeys:
    from controller.store.repos import ApiKeys
    from controller.store.runs import Store

    return ApiKeys(Store.open(Settings.from_env().database_url).engine)


def _cmd_apikey(args: argparse.Namespace) -> int:
    keys = _keys()
    if args.action == "create":
        if not args.name:
            raise user_error("apikey create needs a NAME (who or what uses the key)")
        try:
            key, secret = keys.create(args.name, args.role)
        except ValueError as exc:
            raise user_error(str(exc)) from None
        print(secret)
        print(f"clarity: API key {key.prefix}… ({key.role}) for {key.name}; it is shown only now", file=sys.stderr)
    elif args.action == "list":
        print(f"{'PREFIX':<14}  {'ROLE':<6}  {'STATE':<8}  NAME")
        for key in keys.list():
            print(f"{key.prefix:<14}  {key.role:<6}  {'revoked' if key.revoked_at else 'active':<8}  {key.name}")
    else:
        if not args.name:
            raise user_error("apikey revoke needs the key's PREFIX (see `clarity apikey list`)")
        try:
            keys.revoke(args.name)
        except LookupError as exc:
            raise user_error(str(exc)) from None
        print(f"revoked {args.name}")
    return 0






























def _run_line(args: argparse.Namespace, run: dict[str, Any], why: str) -> str:
    """One run a command started, in a line: its number, state, workflow, cause and address."""
    about = f"{run['workflow']} of {run['repo']}, {why}" if run.get("workflow") else why
    return f"run {run['id']} {run.get('state') or 'started'} ({about}): {base_url(args)}/api/v1/runs/{run['id']}"


def _print_started(args: argparse.Namespace, answer: dict[str, Any], why: str) -> None:
    """The runs a trigger or an event started (a line each), then why the other workflows did not run.
    (A controller before `started` answered only the run numbers: those are shown alone.)"""
    shown = answer.get("started") or [{"id": run_id} for run_id in answer.get("runs") or ()]
    for run in shown:
        print(_run_line(args, run, why))
    for where, reason in (answer.get("skipped") or {}).items():
        print(f"not run: {where}: {reason}")
    if not answer.get("runs") and not answer.get("message"):
        print("no run started")


def _cmd_trigger(args: argparse.Namespace) -> int:
    from controller.cli import _parse_pairs

    body: dict[str, Any] = {"ref": args.ref, "inputs": _parse_pairs(args.input, "--input")}
    if args.workflow:
        body["workflow"] = args.workflow
    result = remote_call(args, "POST", repo_path(args.repo) + "/trigger", body)
    if args.json:
        print_json(result)
    else:
        _print_started(args, result, f"manual, at {args.ref}")
    return 0


def _cmd_event(args: argparse.Namespace) -> int:
    payload: Any = {}
    if args.payload is not None or args.payload_file is not None:
        what = "--payload" if args.payload is not None else f"--payload-file {args.payload_file}"
        try:
            text = args.payload if args.payload is not None else (
                sys.stdin.read() if args.payload_file == "-" else Path(args.payload_file).read_text(encoding="utf-8"))
            payload = json.loads(text)
        except OSError as exc:
            raise user_error(f"{what}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise user_error(f"{what}: not JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise user_error(f"{what}: the payload must be a JSON object, like '{{\"version\": \"1.2\"}}'")
    params = {"repo": args.repo} if args.repo else None
    if args.repo:
        repo_path(args.repo)  # the same check of the name as elsewhere
    result = remote_call(args, "POST", "/api/v1/events/" + quote(args.name, safe=""), payload, params)
    if args.json:
        print_json(result)
    else:
        _print_started(args, result, f"event {args.name}")
    if not result.get("runs") and result.get("message"):
        print(f"clarity: {result['message']}", file=sys.stderr)
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    remote_call(args, "POST", f"/api/v1/runs/{args.run}/cancel")
    print(f"run {args.run}: cancel requested")
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    run = remote_call(args, "POST", f"/api/v1/runs/{args.run}/rerun", {"failed_only": args.failed})
    if args.json:
        print_json(run)
    else:
        print(_run_line(args, run, f"re-run of run {args.run}" + (", failed tasks only" if args.failed else "")))
    return 0




def _cmd_runner_token(args: argparse.Namespace) -> int:
    if args.action == "create":
        body = {} if args.labels is None else {"labels": [x.strip() for x in args.labels.split(",") if x.strip()]}
        token = remote_call(args, "POST", "/api/v1/runner-tokens", body)
        print(token["token"])
        labels = ",".join(token.get("labels") or ()) or "none (the runner's --labels)"
        print(f"clarity: runner registration token {token['prefix']}… (labels: {labels}); it works once and is "
              "shown only now:\n  clarity runner --controller URL --token TOKEN", file=sys.stderr)
    elif args.action == "list":
        tokens = remote_call(args, "GET", "/api/v1/runner-tokens")["tokens"]
        print(f"{'PREFIX':<14}  {'STATE':<8}  {'USED BY':<20}  LABELS")
        for t in tokens:
            labels = ",".join(t.get("labels") or ()) or "-"
            print(f"{t['prefix']:<14}  {t['state']:<8}  {t.get('used_by') or '-':<20}  {labels}")
    else:
        if not args.prefix:
            raise user_error("runner-token revoke needs the token's PREFIX (see `clarity runner-token list`)")
        remote_call(args, "DELETE", f"/api/v1/runner-tokens/{args.prefix}")
        print(f"revoked {args.prefix}")
    return 0







def _cmd_runners(args: argparse.Namespace) -> int:
    if args.action == "list":
        runners = remote_call(args, "GET", "/api/v1/runners")["runners"]
        print(f"{'NAME':<20}  {'STATE':<8}  {'RUNNING':>7}  {'SEEN':<9}  {'VERSION':<8}  LABELS")
        for r in runners:
            state = "disabled" if r["disabled"] else ("online" if r.get("online") else "offline")
            print(f"{r['name']:<20}  {state:<8}  {r.get('running', 0):>3}/{r['capacity']:<3}  "
                  f"{ago(r.get('last_seen_at')):<9}  {r.get('version') or '-':<8}  {','.join(r['labels']) or '-'}")
        return 0
    if not args.name:
        raise user_error(f"runners {args.action} needs the runner's NAME (see `clarity runners list`)")
    remote_call(args, "POST", f"/api/v1/runners/{args.name}/{args.action}")
    print(f"{args.action}d runner {args.name}")
    return 0


def _cmd_schedules(args: argparse.Namespace) -> int:
    schedules = remote_call(args, "GET", "/api/v1/schedules")["schedules"]
    if not schedules:
        print("no schedules: no workflow on a default branch declares `type: schedule`")
        return 0
    print(f"{'REPO':<24}  {'WORKFLOW':<28}  {'CRON':<16}  {'ZONE':<16}  NEXT TICK")
    for s in schedules:
        cfg = s["config"]
        print(f"{s.get('repo') or '-':<24}  {s['workflow_file']:<28}  {cfg.get('cron', ''):<16}  "
              f"{cfg.get('timezone') or 'UTC':<16}  {s.get('next_tick') or s.get('error') or '-'}")
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    if args.action == "start":
        if not (args.repo and args.workflow and args.start and args.end):
            raise user_error("backfill start needs REPO WORKFLOW_FILE --from TIME --to TIME "
                              "(e.g. clarity backfill start acme/app .clarity/nightly.yaml --from 2026-11-01 --to 2026-11-08)")
        body: dict[str, Any] = {"repo": args.repo, "workflow": args.workflow, "from": args.start, "to": args.end}
        if args.trigger is not None:
            body["trigger"] = args.trigger
        made = remote_call(args, "POST", "/api/v1/backfills", body)
        if args.json:
            print_json(made)
            return 0
        print(f"backfill {made['id']}: {made['ticks']} tick(s) of {args.workflow} from {args.start} to {args.end}, "
              f"fired a few at a time (clarity backfill show {made['id']})")
        return 0
    if args.action == "list":
        listing = remote_call(args, "GET", "/api/v1/backfills")
        if args.json:
            print_json(listing)
            return 0
        rows = listing["backfills"]
        print(f"{'ID':>4}  {'STATE':<9}  {'FIRED':>5}  WORKFLOW")
        for b in rows:
            print(f"{b['id']:>4}  {b['state']:<9}  {b['fired']:>5}  {b['workflow_file']}")
        return 0
    if not args.repo or not args.repo.isdigit():
        raise user_error(f"backfill {args.action} needs the backfill's ID (see `clarity backfill list`)")
    if args.action == "show":
        shown = remote_call(args, "GET", f"/api/v1/backfills/{args.repo}")
        if args.json:
            print_json(shown)
        else:
            _show_backfill(shown)
        return 0
    moved = remote_call(args, "POST", f"/api/v1/backfills/{args.repo}/{args.action}")
    if args.json:
        print_json(moved)
    else:
        print(f"backfill {moved['id']}: {moved['state']}")
    return 0


def _utc(epoch: float) -> str:
    """An instant as the ISO 8601 UTC text `backfill start --from/--to` take (whole seconds)."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(round(epoch), timezone.utc).isoformat().replace("+00:00", "Z")


def _show_backfill(b: dict[str, Any]) -> None:
    """A backfill as `backfill show` prints it: the times as `backfill start` takes them, not epochs."""
    print(f"backfill {b['id']}: {b['state']}, {b['fired']} run(s) fired")
    print(f"  workflow   {b['workflow_file']}")
    print(f"  window     {_utc(b['from'])} to {_utc(b['to'])}")
    if b["state"] in ("running", "paused"):
        print(f"  reached    {_utc(b['cursor'])}")
    print(f"  started    {_utc(b['created_at'])}" + (f" by {b['created_by']}" if b.get("created_by") else ""))






def add_commands(sub: Any) -> None:
    from controller import cli_repo

    for name, func, what in (("up", _cmd_up, "start a controller with a built-in runner: one command, a working CI"),
                             ("controller", _cmd_controller, "start a controller (runners connect to it)")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--host", help="address to listen on (default: CLARITY_HOST or 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (default: CLARITY_PORT or 8080)")
        p.set_defaults(func=func)

    # `clarity runner ...` is dispatched to runner.main before this parser is built: listed here for --help
    runner = sub.add_parser("runner", add_help=False, help="a runner agent: runs a controller's tasks in this "
                            "machine's Docker (clarity runner --help)")
    runner.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    runner.set_defaults(func=_cmd_runner)

    key = sub.add_parser("apikey", help="API keys (works on the database directly: bootstraps the first key)")
    key.add_argument("action", choices=["create", "list", "revoke"])
    key.add_argument("name", nargs="?", metavar="NAME|PREFIX")
    key.add_argument("--role", default="admin", choices=["admin", "read"])
    key.set_defaults(func=_cmd_apikey)

    cli_repo.add_repo(sub)

    trig = sub.add_parser("trigger", help="start a manual run on a running controller")
    trig.add_argument("repo", metavar="REPO")
    trig.add_argument("--ref", default="main")
    trig.add_argument("--workflow", metavar="FILE")
    trig.add_argument("--input", action="append", default=[], metavar="K=V")
    json_option(trig)
    remote_options(trig)
    trig.set_defaults(func=_cmd_trigger)

    event = sub.add_parser("event", help="send a custom event: it starts the workflows with an event trigger of "
                           "that name")
    event.add_argument("action", choices=["send"])
    event.add_argument("name", metavar="NAME", help="the event's name (`- {type: event, name: NAME}`)")
    given = event.add_mutually_exclusive_group()
    given.add_argument("--payload", metavar="JSON", help="a JSON object, read by the runs as ${trigger.payload.KEY}")
    given.add_argument("--payload-file", metavar="FILE", help="the payload from a file ('-': stdin)")
    event.add_argument("--repo", metavar="REPO", help="only the workflows of this repository (default: every one)")
    json_option(event)
    remote_options(event)
    event.set_defaults(func=_cmd_event)

    cancel = sub.add_parser("cancel", help="cancel a run on a running controller")
    cancel.add_argument("run", type=int, metavar="RUN")
    remote_options(cancel)
    cancel.set_defaults(func=_cmd_cancel)

    token = sub.add_parser("runner-token", help="one-time tokens that register runner agents (clarity runner --token)")
    token.add_argument("action", choices=["create", "list", "revoke"])
    token.add_argument("prefix", nargs="?", metavar="PREFIX", help="the token to revoke")
    token.add_argument("--labels", metavar="A,B", help="labels of a runner that registers without --labels")
    remote_options(token)
    token.set_defaults(func=_cmd_runner_token)

    cli_repo.add_webhook_key(sub)

    cli_repo.add_secret(sub)

    runners = sub.add_parser("runners", help="runner agents registered with a running controller")
    runners.add_argument("action", choices=["list", "disable", "enable"])
    runners.add_argument("name", nargs="?", metavar="NAME")
    remote_options(runners)
    runners.set_defaults(func=_cmd_runners)

    sched = sub.add_parser("schedules", help="the schedules the repositories declare, with their next tick")
    remote_options(sched)
    sched.set_defaults(func=_cmd_schedules)

    backfill = sub.add_parser("backfill", help="fire a schedule's ticks over a past window; list, pause, resume, "
                              "cancel backfills")
    backfill.add_argument("action", choices=["start", "list", "show", "pause", "resume", "cancel"])
    backfill.add_argument("repo", nargs="?", metavar="REPO|ID", help="start: the repository; others: the backfill's ID")
    backfill.add_argument("workflow", nargs="?", metavar="WORKFLOW_FILE", help="start: e.g. .clarity/nightly.yaml")
    backfill.add_argument("--from", dest="start", metavar="TIME", help="first instant, ISO 8601 (UTC without a zone)")
    backfill.add_argument("--to", dest="end", metavar="TIME", help="last instant, not in the future")
    backfill.add_argument("--trigger", type=int, metavar="N", help="which schedule of the file (default the first)")
    json_option(backfill)
    remote_options(backfill)
    backfill.set_defaults(func=_cmd_backfill)

    rerun = sub.add_parser("rerun", help="run a run again on the same commit (--failed: only what failed)")
    rerun.add_argument("run", type=int, metavar="RUN")
    rerun.add_argument("--failed", action="store_true", help="only the tasks that failed, errored, timed out or "
                       "were canceled, and the tasks that need them")
    json_option(rerun)
    remote_options(rerun)
    rerun.set_defaults(func=_cmd_rerun)
