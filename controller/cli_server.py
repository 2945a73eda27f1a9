"""The `clarity` commands of the controller service: `up`, `controller`, `apikey`, and the ones that
manage a running controller through its API (`repo`, `trigger`, `cancel`, `rerun`, `runner-token`,
`runners`). `clarity runner` (the agent) is `runner.main`, dispatched before any of this loads: it is
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

from controller.settings import PERMISSIONS, Settings

if TYPE_CHECKING:
    from controller.client import Client
    from controller.store.repos import ApiKeys

DEFAULT_CONTROLLER = "http://127.0.0.1:8080"
URL_FILE = "controller-url"  # in CLARITY_HOME: where the last `clarity up`/`controller` listens


def _user_error(message: str) -> Exception:
    from controller.errors import UserError

    return UserError(message)


def _check_port(host: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise _user_error(f"--port {port}: a port is a number from 1 to 65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise _user_error(f"cannot listen on {host}:{port}: {exc.strerror} (another controller? use --port)") from None


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
            raise _user_error(f"cannot serve HTTPS with {settings.tls_cert_file} and {settings.tls_key_file}: "
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
            raise _user_error("apikey create needs a NAME (who or what uses the key)")
        try:
            key, secret = keys.create(args.name, args.role)
        except ValueError as exc:
            raise _user_error(str(exc)) from None
        print(secret)
        print(f"clarity: API key {key.prefix}… ({key.role}) for {key.name}; it is shown only now", file=sys.stderr)
    elif args.action == "list":
        print(f"{'PREFIX':<14}  {'ROLE':<6}  {'STATE':<8}  NAME")
        for key in keys.list():
            print(f"{key.prefix:<14}  {key.role:<6}  {'revoked' if key.revoked_at else 'active':<8}  {key.name}")
    else:
        if not args.name:
            raise _user_error("apikey revoke needs the key's PREFIX (see `clarity apikey list`)")
        try:
            keys.revoke(args.name)
        except LookupError as exc:
            raise _user_error(str(exc)) from None
        print(f"revoked {args.name}")
    return 0


def _base_url(args: argparse.Namespace) -> str:
    """--controller, CLARITY_CONTROLLER, the one the last `clarity up` on this machine saved, or the default."""
    saved = Settings.from_env().home / URL_FILE
    url: str = (args.controller or os.environ.get("CLARITY_CONTROLLER")
                or (saved.read_text().strip() if saved.exists() else DEFAULT_CONTROLLER))
    return url.rstrip("/")


def _client(args: argparse.Namespace) -> Client:
    from controller.client import Client, find_key

    return Client(_base_url(args), find_key(Settings.from_env().home, args.api_key))


def remote_call(args: argparse.Namespace, method: str, path: str, body: Any = None,
                params: dict[str, Any] | None = None) -> Any:
    return _call(args, method, path, body, params)


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
    from controller.client import ClientError

    try:
        return _client(args).call(method, path, body, params)
    except ClientError as exc:
        raise _user_error(str(exc)) from None


def _repo_path(name: str) -> str:
    if name.count("/") < 1:
        raise _user_error(f"repository names are the forge's owner/repo, like acme/app (got {name!r})")
    return "/api/v1/repos/" + name


def _read_secret(value: str, option: str) -> str:
    """`value`, or for "-" the secret from stdin (asked for without echo on a terminal)."""
    if value != "-":
        return value
    if sys.stdin.isatty():
        import getpass

        secret = getpass.getpass(f"{option}: ")
    else:
        secret = sys.stdin.read()
    secret = secret.strip()
    if not secret:
        raise _user_error(f"{option} -: nothing was read from stdin")
    return secret


def _forge_body(args: argparse.Namespace, patch: bool) -> dict[str, Any]:
    """The forge settings given on the command line, as API fields. With `patch`, an empty text
    value (and `--poll off`) resets a setting to its default (null)."""
    body: dict[str, Any] = {}

    def text(field: str, value: str | None) -> None:
        if value is not None:
            body[field] = None if patch and value == "" else value

    text("forge_url", args.forge_url)
    if args.forge_token is not None:
        body["forge_token"] = _read_secret(args.forge_token, "--forge-token")
    text("forge_token_file", args.forge_token_file)
    for field in ("github_app_id", "github_installation_id"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    text("github_app_key_file", args.github_app_key_file)
    text("status_context", args.status_context)
    if args.notes is not None:
        body["notes"] = args.notes
    if patch:
        if args.clear_forge_token:
            if "forge_token" in body or "forge_token_file" in body:
                raise _user_error("--clear-forge-token clears the token: not with --forge-token or --forge-token-file")
            body["forge_token"] = body["forge_token_file"] = None
        if args.clear_github_app:
            if any(k.startswith("github_") for k in body):
                raise _user_error("--clear-github-app: not with --github-app-* options")
            body["github_app_id"] = None
    elif args.clear_forge_token or args.clear_github_app:
        raise _user_error("--clear-forge-token and --clear-github-app are for `clarity repo set`")
    return body


def _webhook_secret(args: argparse.Namespace) -> str | None:
    secret: str | None = args.webhook_secret
    if args.webhook_secret_file:
        try:
            secret = Path(args.webhook_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _user_error(f"--webhook-secret-file {args.webhook_secret_file}: {exc.strerror}") from None
        if not secret:
            raise _user_error(f"--webhook-secret-file {args.webhook_secret_file}: the file is empty")
    return secret


def _allow_plugin(values: list[str]) -> dict[str, list[str]]:
    """The --allow-plugin NAME=PERM[,PERM] options as {plugin: [permission, ...]}; a later option
    for the same plugin replaces an earlier one, `NAME=` grants it nothing."""
    grants: dict[str, list[str]] = {}
    for value in values:
        plugin, eq, perms = value.partition("=")
        plugin = plugin.strip()
        if not eq or not plugin:
            raise _user_error(f"--allow-plugin {value!r}: expected NAME=PERMISSION[,PERMISSION] (e.g. "
                              "notification=network,secrets; NAME= grants it nothing)")
        items = {p.strip() for p in perms.split(",") if p.strip()}
        unknown = sorted(items - set(PERMISSIONS))
        if unknown:
            raise _user_error(f"--allow-plugin {value}: unknown permission(s) {', '.join(unknown)} "
                              f"(known: {', '.join(PERMISSIONS)})")
        grants[plugin] = sorted(items)
    return grants


def _grants_text(repo: dict[str, Any]) -> str:
    """The plugin grants a repository's runs get, and where they come from."""
    effective = repo.get("effective_plugin_permissions")
    own = repo.get("plugin_permissions")
    if effective is None:  # a controller that does not say
        effective = own
    if own is None:
        where = "the controller's setting plugin_permissions"
    else:
        where = "this repository's own (clarity repo set --allow-plugin)"
    if effective is None:
        return where
    text = "; ".join(f"{plugin}={','.join(perms) or '(none)'}" for plugin, perms in sorted(effective.items()))
    return f"{text or 'none'} (from {where})"


def _warn(repo: dict[str, Any]) -> None:
    for warning in repo.get("warnings") or ():
        print(f"clarity: warning: {warning}", file=sys.stderr)


def _show(repo: dict[str, Any]) -> list[tuple[str, str]]:
    """A repository's settings as (label, value) lines; never a secret, only whether it is set."""
    if repo.get("forge_token_set"):
        token = "set (sealed in the controller's database)"
    elif repo.get("forge_token_file"):
        token = f"read from {repo['forge_token_file']} (on the controller)"
    else:
        token = "not set"
    app = "none"
    if repo.get("github_app_id"):
        installation = repo.get("github_installation_id")
        app = (f"{repo['github_app_id']}, key {repo.get('github_app_key_file')}, installation "
               + (str(installation) if installation else "looked up"))
    poll = repo.get("poll_interval_s")
    return [
        ("name", repo["name"]), ("url", repo["url"]), ("forge", repo["forge"]),
        ("enabled", "yes" if repo.get("enabled") else "no"),
        ("webhook secret", "set" if repo.get("webhook_secret_set") else "not set"),
        ("polling", f"every {poll:g}s" if poll else "off"),
        ("forge API URL", repo.get("forge_url") or "the forge's default"),
        ("forge token", token),
        ("GitHub App", app),
        ("status context", repo.get("status_context") or "clarity/{workflow} (default)"),
        ("git notes", "on" if repo.get("notes") else "off"),
        ("plugin grants", _grants_text(repo)),
    ]


def _cmd_repo(args: argparse.Namespace) -> int:
    if args.action == "add":
        if not args.name or not args.url:
            raise _user_error("repo add needs NAME (owner/repo) and --url URL")
        if args.enabled is not None:
            raise _user_error("--enable and --disable are for `clarity repo set` (a new repository is enabled)")
        if args.plugin_permissions_default:
            raise _user_error("--plugin-permissions-default is for `clarity repo set` (a new repository without "
                              "--allow-plugin follows the controller's setting)")
        body = {"name": args.name, "url": args.url, "forge": args.forge or "generic",
                "webhook_secret": _webhook_secret(args), "poll_interval": args.poll, **_forge_body(args, patch=False)}
        if args.allow_plugin:
            body["plugin_permissions"] = _allow_plugin(args.allow_plugin)
        repo = _call(args, "POST", "/api/v1/repos", {k: v for k, v in body.items() if v is not None})
        _warn(repo)
        print(f"added {repo['name']} ({repo['forge']}, {repo['url']})"
              + (f", polled every {repo['poll_interval_s']:g}s" if repo.get("poll_interval_s") else ""))
    elif args.action == "set":
        if not args.name:
            raise _user_error("repo set needs NAME (owner/repo) and the settings to change")
        if args.url is not None or args.forge is not None:
            raise _user_error("repo set cannot change --url or --forge: `clarity repo remove` it and add it again "
                              "(its past runs stay)")
        body = _forge_body(args, patch=True)
        secret = _webhook_secret(args)
        if secret is not None:
            body["webhook_secret"] = secret or None
        if args.poll is not None:
            body["poll_interval"] = None if args.poll in ("", "off") else args.poll
        if args.enabled is not None:
            body["enabled"] = args.enabled
        if args.plugin_permissions_default:
            if args.allow_plugin:
                raise _user_error("--plugin-permissions-default goes back to the controller's setting: not with "
                                  "--allow-plugin")
            body["plugin_permissions"] = None
        elif args.allow_plugin:
            given = _allow_plugin(args.allow_plugin)
            stored = _call(args, "GET", _repo_path(args.name))
            base = stored.get("plugin_permissions")
            if base is None:  # following the setting: start from what it grants now
                base = stored.get("effective_plugin_permissions") or {}
            body["plugin_permissions"] = {**base, **given}
        if not body:
            raise _user_error("repo set: nothing to change (see `clarity repo --help`)")
        repo = _call(args, "PATCH", _repo_path(args.name), body)
        _warn(repo)
        print(f"changed {repo['name']}: {', '.join(sorted(body))}")
        if "plugin_permissions" in body:
            print(f"plugin grants: {_grants_text(repo)}")
    elif args.action == "show":
        if not args.name:
            raise _user_error("repo show needs NAME (owner/repo)")
        repo = _call(args, "GET", _repo_path(args.name))
        if args.json:
            print(json.dumps(repo, indent=2))
        else:
            for label, value in _show(repo):
                print(f"{label + ':':<16} {value}")
    elif args.action == "list":
        repos = _call(args, "GET", "/api/v1/repos")
        items = repos["repos"] if isinstance(repos, dict) else repos
        print(f"{'NAME':<30}  {'FORGE':<8}  {'POLL':>6}  URL")
        for r in items:
            poll = f"{r['poll_interval_s']:g}s" if r.get("poll_interval_s") else "-"
            print(f"{r['name']:<30}  {r['forge']:<8}  {poll:>6}  {r['url']}")
    elif args.action == "remove":
        _call(args, "DELETE", _repo_path(args.name))
        print(f"removed {args.name}")
    return 0


def _print_json(value: Any) -> None:
    """--json: the API's answer as it is, for scripts."""
    print(json.dumps(value, indent=2))


def _run_line(args: argparse.Namespace, run: dict[str, Any], why: str) -> str:
    """One run a command started, in a line: its number, state, workflow, cause and address."""
    about = f"{run['workflow']} of {run['repo']}, {why}" if run.get("workflow") else why
    return f"run {run['id']} {run.get('state') or 'started'} ({about}): {_base_url(args)}/api/v1/runs/{run['id']}"


def _print_started(args: argparse.Namespace, answer: dict[str, Any], why: str) -> None:
    """The runs a trigger or an event started (a line each), then why the other workflows did not run.
    The answer holds only run numbers: each run is read for its workflow, or shown by number alone
    when it cannot be (the runs have started: that is no reason to fail the command)."""
    from controller.client import ClientError

    client = _client(args)
    for run_id in answer.get("runs") or ():
        try:
            run = client.call("GET", f"/api/v1/runs/{run_id}")
        except ClientError:
            run = {"id": run_id}
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
    result = _call(args, "POST", _repo_path(args.repo) + "/trigger", body)
    if args.json:
        _print_json(result)
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
            raise _user_error(f"{what}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise _user_error(f"{what}: not JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise _user_error(f"{what}: the payload must be a JSON object, like '{{\"version\": \"1.2\"}}'")
    params = {"repo": args.repo} if args.repo else None
    if args.repo:
        _repo_path(args.repo)  # the same check of the name as elsewhere
    result = _call(args, "POST", "/api/v1/events/" + quote(args.name, safe=""), payload, params)
    if args.json:
        _print_json(result)
    else:
        _print_started(args, result, f"event {args.name}")
    if not result.get("runs") and result.get("message"):
        print(f"clarity: {result['message']}", file=sys.stderr)
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    _call(args, "POST", f"/api/v1/runs/{args.run}/cancel")
    print(f"run {args.run}: cancel requested")
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    run = _call(args, "POST", f"/api/v1/runs/{args.run}/rerun", {"failed_only": args.failed})
    if args.json:
        _print_json(run)
    else:
        print(_run_line(args, run, f"re-run of run {args.run}" + (", failed tasks only" if args.failed else "")))
    return 0


def _ago(ts: float | None) -> str:
    import time

    if ts is None:
        return "never"
    s = max(0.0, time.time() - ts)
    return f"{s:.0f}s ago" if s < 120 else (f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.0f}h ago")


def _cmd_runner_token(args: argparse.Namespace) -> int:
    if args.action == "create":
        body = {} if args.labels is None else {"labels": [x.strip() for x in args.labels.split(",") if x.strip()]}
        token = _call(args, "POST", "/api/v1/runner-tokens", body)
        print(token["token"])
        labels = ",".join(token.get("labels") or ()) or "none (the runner's --labels)"
        print(f"clarity: runner registration token {token['prefix']}… (labels: {labels}); it works once and is "
              "shown only now:\n  clarity runner --controller URL --token TOKEN", file=sys.stderr)
    elif args.action == "list":
        tokens = _call(args, "GET", "/api/v1/runner-tokens")["tokens"]
        print(f"{'PREFIX':<14}  {'STATE':<8}  {'USED BY':<20}  LABELS")
        for t in tokens:
            labels = ",".join(t.get("labels") or ()) or "-"
            print(f"{t['prefix']:<14}  {t['state']:<8}  {t.get('used_by') or '-':<20}  {labels}")
    else:
        if not args.prefix:
            raise _user_error("runner-token revoke needs the token's PREFIX (see `clarity runner-token list`)")
        _call(args, "DELETE", f"/api/v1/runner-tokens/{args.prefix}")
        print(f"revoked {args.prefix}")
    return 0


def _cmd_webhook_key(args: argparse.Namespace) -> int:
    if args.action == "create":
        if not args.target or not args.workflow:
            raise _user_error("webhook-key create needs REPO and WORKFLOW_FILE "
                              "(e.g. clarity webhook-key create acme/app .clarity/deploy.yaml)")
        body = {"repo": args.target, "workflow": args.workflow, **({"name": args.name} if args.name else {})}
        key = _call(args, "POST", "/api/v1/webhook-keys", body)
        print(key["key"])
        paths = ", ".join(key.get("paths") or ()) or "none yet"
        print(f"clarity: webhook key {key['prefix']}… ({key['name']}) for {key['workflow_file']} of {key['repo']}; "
              f"it is shown only now. Its webhook paths: {paths}. Send it as 'Authorization: Bearer KEY' or "
              "'X-Clarity-Key: KEY'", file=sys.stderr)
        for warning in key.get("warnings") or ():
            print(f"clarity: warning: {warning}", file=sys.stderr)
    elif args.action == "list":
        if args.workflow:
            raise _user_error("webhook-key list takes one REPO at most")
        keys = _call(args, "GET", "/api/v1/webhook-keys", params={"repo": args.target} if args.target else None)["keys"]
        print(f"{'PREFIX':<14}  {'STATE':<8}  {'REPO':<24}  {'WORKFLOW':<28}  {'LAST USED':<9}  NAME")
        for k in keys:
            print(f"{k['prefix']:<14}  {k['state']:<8}  {k.get('repo') or '-':<24}  {k['workflow_file']:<28}  "
                  f"{_ago(k.get('last_used_at')):<9}  {k['name']}")
    else:
        if not args.target or args.workflow:
            raise _user_error("webhook-key revoke needs the key's PREFIX (see `clarity webhook-key list`)")
        _call(args, "DELETE", f"/api/v1/webhook-keys/{args.target}")
        print(f"revoked {args.target}")
    return 0

def _secret_value(args: argparse.Namespace) -> str:
    """The value of `secret set`: from --value-file, else stdin (asked for, unshown, on a terminal);
    never from the command line, where it would stay in the shell's history. One final newline is
    dropped (`echo ... |`)."""
    if args.value_file:
        try:
            text = Path(args.value_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _user_error(f"cannot read the secret's value from {args.value_file}: {exc}") from None
    elif sys.stdin.isatty():
        import getpass

        text = getpass.getpass(f"value of {args.name} (not shown): ")
    else:
        text = sys.stdin.read()
    text = text[:-1] if text.endswith("\n") else text
    if not text:
        raise _user_error(f"the value of {args.name} is empty: give it on stdin or with --value-file FILE")
    return text


def _cmd_secret(args: argparse.Namespace) -> int:
    base = _repo_path(args.repo) + "/secrets"
    if args.action == "list":
        if args.name:
            raise _user_error("secret list takes the REPO only")
        rows = _call(args, "GET", base)["secrets"]
        print(f"{'NAME':<32}  {'UPDATED':<9}  BY")
        for r in rows:
            print(f"{r['name']:<32}  {_ago(r.get('updated_at')):<9}  {r.get('updated_by') or '-'}")
        return 0
    if not args.name:
        raise _user_error(f"secret {args.action} needs REPO and NAME (e.g. clarity secret {args.action} acme/app DEPLOY_KEY)")
    if args.action == "set":
        made = _call(args, "PUT", f"{base}/{quote(args.name, safe='')}", {"value": _secret_value(args)})
        print(f"secret {args.name} of {args.repo} {'set' if made.get('created') else 'replaced'}; tasks that name it "
              f"(secrets: [{args.name}] or ${{secrets.{args.name}}}) get it")
    else:
        _call(args, "DELETE", f"{base}/{quote(args.name, safe='')}")
        print(f"secret {args.name} of {args.repo} removed")
    return 0


def _cmd_runners(args: argparse.Namespace) -> int:
    if args.action == "list":
        runners = _call(args, "GET", "/api/v1/runners")["runners"]
        print(f"{'NAME':<20}  {'STATE':<8}  {'RUNNING':>7}  {'SEEN':<9}  {'VERSION':<8}  LABELS")
        for r in runners:
            state = "disabled" if r["disabled"] else ("online" if r.get("online") else "offline")
            print(f"{r['name']:<20}  {state:<8}  {r.get('running', 0):>3}/{r['capacity']:<3}  "
                  f"{_ago(r.get('last_seen_at')):<9}  {r.get('version') or '-':<8}  {','.join(r['labels']) or '-'}")
        return 0
    if not args.name:
        raise _user_error(f"runners {args.action} needs the runner's NAME (see `clarity runners list`)")
    _call(args, "POST", f"/api/v1/runners/{args.name}/{args.action}")
    print(f"{args.action}d runner {args.name}")
    return 0


def _cmd_schedules(args: argparse.Namespace) -> int:
    schedules = _call(args, "GET", "/api/v1/schedules")["schedules"]
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
            raise _user_error("backfill start needs REPO WORKFLOW_FILE --from TIME --to TIME "
                              "(e.g. clarity backfill start acme/app .clarity/nightly.yaml --from 2026-11-01 --to 2026-11-08)")
        body: dict[str, Any] = {"repo": args.repo, "workflow": args.workflow, "from": args.start, "to": args.end}
        if args.trigger is not None:
            body["trigger"] = args.trigger
        made = _call(args, "POST", "/api/v1/backfills", body)
        if args.json:
            _print_json(made)
            return 0
        print(f"backfill {made['id']}: {made['ticks']} tick(s) of {args.workflow} from {args.start} to {args.end}, "
              f"fired a few at a time (clarity backfill show {made['id']})")
        return 0
    if args.action == "list":
        listing = _call(args, "GET", "/api/v1/backfills")
        if args.json:
            _print_json(listing)
            return 0
        rows = listing["backfills"]
        print(f"{'ID':>4}  {'STATE':<9}  {'FIRED':>5}  WORKFLOW")
        for b in rows:
            print(f"{b['id']:>4}  {b['state']:<9}  {b['fired']:>5}  {b['workflow_file']}")
        return 0
    if not args.repo or not args.repo.isdigit():
        raise _user_error(f"backfill {args.action} needs the backfill's ID (see `clarity backfill list`)")
    if args.action == "show":
        shown = _call(args, "GET", f"/api/v1/backfills/{args.repo}")
        if args.json:
            _print_json(shown)
        else:
            _show_backfill(shown)
        return 0
    moved = _call(args, "POST", f"/api/v1/backfills/{args.repo}/{args.action}")
    if args.json:
        _print_json(moved)
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


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the API's answer as JSON (for scripts)")


def _remote(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controller", metavar="URL", help=f"the controller's URL (default: CLARITY_CONTROLLER or {DEFAULT_CONTROLLER})")
    p.add_argument("--api-key", metavar="KEY", help="API key (default: CLARITY_API_KEY, CLARITY_API_KEY_FILE, or the key `clarity up` saved)")


def add_commands(sub: Any) -> None:
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

    repo = sub.add_parser(
        "repo", help="repositories a running controller watches",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="add: register a repository; set: change its settings (only the options given); show: its "
                    "settings (never a secret); list; remove.",
        epilog="Reporting results to the forge (docs/reporting.md), for --forge github, gitlab or gitea:\n"
               "  clarity repo add acme/app --url URL --forge github --forge-token - <token.txt\n"
               "  clarity repo add acme/app --url URL --forge github --forge-token-file /etc/clarity/acme.token\n"
               "  clarity repo set acme/app --github-app-id 123 --github-app-key-file /etc/clarity/app.pem\n"
               "A token given with --forge-token is sealed with the controller's key and never shown again.\n"
               "--forge-token TOKEN is visible to other users in `ps`: prefer --forge-token - (stdin).\n"
               "With `set`, an empty value ('') resets --forge-url, --forge-token-file, --status-context and\n"
               "--webhook-secret; --poll off stops polling.\n"
               "\n"
               "Plugin grants (docs/plugins.md): a repository's own grants replace the controller's setting\n"
               "plugin_permissions for it:\n"
               "  clarity repo set acme/app --allow-plugin notification=network,secrets --allow-plugin storage=\n"
               "With `set`, each --allow-plugin replaces that plugin's entry and the others are kept: the\n"
               "command reads the repository's grants (or, while it follows the controller's setting, a copy of\n"
               "what the setting grants now), changes those entries and sends the whole result. NAME= grants\n"
               "that plugin nothing; --plugin-permissions-default goes back to the setting. `show` prints the\n"
               "grants in effect and where they come from.")
    repo.add_argument("action", choices=["add", "set", "show", "list", "remove"])
    repo.add_argument("name", nargs="?", metavar="NAME", help="the forge's owner/repo")
    repo.add_argument("--url", help="any git URL: https, ssh, file (add only)")
    repo.add_argument("--forge", choices=["github", "gitlab", "gitea", "generic"], help="default: generic (add only)")
    repo.add_argument("--webhook-secret", help="the secret the forge signs deliveries with")
    repo.add_argument("--webhook-secret-file", metavar="PATH", help="a local file holding the webhook secret")
    repo.add_argument("--poll", metavar="DURATION", help="also poll for new commits, e.g. 60s (set: off to stop)")
    forge = repo.add_argument_group("reporting results to the forge (github, gitlab, gitea)")
    forge.add_argument("--forge-url", metavar="URL", help="the forge's API base URL, e.g. https://HOST/api/v3 "
                       "(default: the forge's own)")
    forge.add_argument("--forge-token", metavar="TOKEN", help="a token allowed to set commit statuses, sealed "
                       "in the controller's database; '-' reads it from stdin (a TOKEN on the command line is "
                       "visible in `ps`)")
    forge.add_argument("--forge-token-file", metavar="PATH", help="or: an absolute path, on the controller's "
                       "machine, of a file holding the token; the controller reads it each time it sends")
    forge.add_argument("--github-app-id", type=int, metavar="N", help="github: report check runs as this GitHub App")
    forge.add_argument("--github-app-key-file", metavar="PATH", help="the App's private key (PEM): an absolute path "
                       "on the controller's machine")
    forge.add_argument("--github-installation-id", type=int, metavar="N", help="the App's installation "
                       "(default: looked up)")
    forge.add_argument("--status-context", metavar="TEMPLATE", help="the status' name: fixed, or with the "
                       "placeholder {workflow} (default: clarity/{workflow})")
    forge.add_argument("--notes", action=argparse.BooleanOptionalAction, default=None,
                       help="write each run's result as a git note (refs/notes/clarity) and push it")
    forge.add_argument("--clear-forge-token", action="store_true", help="set: forget the token (or token file)")
    forge.add_argument("--clear-github-app", action="store_true", help="set: forget the GitHub App settings")
    repo.add_argument("--enable", dest="enabled", action="store_const", const=True, default=None,
                      help="set: run its workflows again")
    repo.add_argument("--disable", dest="enabled", action="store_const", const=False,
                      help="set: no runs from webhooks or polling")
    grants = repo.add_argument_group("plugin grants (docs/plugins.md)")
    grants.add_argument("--allow-plugin", action="append", default=[], metavar="NAME=PERM[,PERM]",
                        help="add, set: the permissions (network, secrets, host_paths) plugin NAME's tasks may have "
                             "in this repository, replacing the controller's setting for it; repeatable; NAME= grants "
                             "nothing; with set, replaces that plugin's entry and keeps the others")
    grants.add_argument("--plugin-permissions-default", action="store_true",
                        help="set: forget the repository's own grants: the controller's setting plugin_permissions "
                             "applies again")
    repo.add_argument("--json", action="store_true", help="show: print the API's JSON")
    _remote(repo)
    repo.set_defaults(func=_cmd_repo)

    trig = sub.add_parser("trigger", help="start a manual run on a running controller")
    trig.add_argument("repo", metavar="REPO")
    trig.add_argument("--ref", default="main")
    trig.add_argument("--workflow", metavar="FILE")
    trig.add_argument("--input", action="append", default=[], metavar="K=V")
    _json_option(trig)
    _remote(trig)
    trig.set_defaults(func=_cmd_trigger)

    event = sub.add_parser("event", help="send a custom event: it starts the workflows with an event trigger of "
                           "that name")
    event.add_argument("action", choices=["send"])
    event.add_argument("name", metavar="NAME", help="the event's name (`- {type: event, name: NAME}`)")
    given = event.add_mutually_exclusive_group()
    given.add_argument("--payload", metavar="JSON", help="a JSON object, read by the runs as ${trigger.payload.KEY}")
    given.add_argument("--payload-file", metavar="FILE", help="the payload from a file ('-': stdin)")
    event.add_argument("--repo", metavar="REPO", help="only the workflows of this repository (default: every one)")
    _json_option(event)
    _remote(event)
    event.set_defaults(func=_cmd_event)

    cancel = sub.add_parser("cancel", help="cancel a run on a running controller")
    cancel.add_argument("run", type=int, metavar="RUN")
    _remote(cancel)
    cancel.set_defaults(func=_cmd_cancel)

    token = sub.add_parser("runner-token", help="one-time tokens that register runner agents (clarity runner --token)")
    token.add_argument("action", choices=["create", "list", "revoke"])
    token.add_argument("prefix", nargs="?", metavar="PREFIX", help="the token to revoke")
    token.add_argument("--labels", metavar="A,B", help="labels of a runner that registers without --labels")
    _remote(token)
    token.set_defaults(func=_cmd_runner_token)

    hook_key = sub.add_parser("webhook-key", help="keys that start a workflow's webhook triggers "
                              "(POST /api/v1/webhook...; docs/triggers.md)")
    hook_key.add_argument("action", choices=["create", "list", "revoke"])
    hook_key.add_argument("target", nargs="?", metavar="REPO|PREFIX", help="create, list: the repository (owner/repo); "
                          "revoke: the key's prefix")
    hook_key.add_argument("workflow", nargs="?", metavar="WORKFLOW_FILE", help="create: e.g. .clarity/deploy.yaml")
    hook_key.add_argument("--name", help="create: who or what uses the key; runs say webhook-key:NAME "
                          "(default: the key's prefix)")
    _remote(hook_key)
    hook_key.set_defaults(func=_cmd_webhook_key)

    secret = sub.add_parser("secret", help="a repository's secrets for its runs on the controller (values never shown)")
    secret.add_argument("action", choices=["set", "list", "remove"])
    secret.add_argument("repo", metavar="REPO", help="the repository (owner/repo)")
    secret.add_argument("name", nargs="?", metavar="NAME", help="set, remove: the secret's name, e.g. DEPLOY_KEY")
    secret.add_argument("--value-file", metavar="FILE", help="set: read the value from FILE (default: stdin)")
    _remote(secret)
    secret.set_defaults(func=_cmd_secret)

    runners = sub.add_parser("runners", help="runner agents registered with a running controller")
    runners.add_argument("action", choices=["list", "disable", "enable"])
    runners.add_argument("name", nargs="?", metavar="NAME")
    _remote(runners)
    runners.set_defaults(func=_cmd_runners)

    sched = sub.add_parser("schedules", help="the schedules the repositories declare, with their next tick")
    _remote(sched)
    sched.set_defaults(func=_cmd_schedules)

    backfill = sub.add_parser("backfill", help="fire a schedule's ticks over a past window; list, pause, resume, "
                              "cancel backfills")
    backfill.add_argument("action", choices=["start", "list", "show", "pause", "resume", "cancel"])
    backfill.add_argument("repo", nargs="?", metavar="REPO|ID", help="start: the repository; others: the backfill's ID")
    backfill.add_argument("workflow", nargs="?", metavar="WORKFLOW_FILE", help="start: e.g. .clarity/nightly.yaml")
    backfill.add_argument("--from", dest="start", metavar="TIME", help="first instant, ISO 8601 (UTC without a zone)")
    backfill.add_argument("--to", dest="end", metavar="TIME", help="last instant, not in the future")
    backfill.add_argument("--trigger", type=int, metavar="N", help="which schedule of the file (default the first)")
    _json_option(backfill)
    _remote(backfill)
    backfill.set_defaults(func=_cmd_backfill)

    rerun = sub.add_parser("rerun", help="run a run again on the same commit (--failed: only what failed)")
    rerun.add_argument("run", type=int, metavar="RUN")
    rerun.add_argument("--failed", action="store_true", help="only the tasks that failed, errored, timed out or "
                       "were canceled, and the tasks that need them")
    _json_option(rerun)
    _remote(rerun)
    rerun.set_defaults(func=_cmd_rerun)
