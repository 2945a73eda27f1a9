"""The `clarity` commands that configure a running controller's repositories through its API:
`repo` (add, set, show, list, remove: URL, forge reporting, polling, plugin grants), `webhook-key`
(keys for `webhook` triggers) and `secret` (the secrets its runs get)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from controller.cli_remote import ago, remote_call, remote_options, repo_path, user_error
from controller.settings import PERMISSIONS


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
        raise user_error(f"{option} -: nothing was read from stdin")
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
                raise user_error("--clear-forge-token clears the token: not with --forge-token or --forge-token-file")
            body["forge_token"] = body["forge_token_file"] = None
        if args.clear_github_app:
            if any(k.startswith("github_") for k in body):
                raise user_error("--clear-github-app: not with --github-app-* options")
            body["github_app_id"] = None
    elif args.clear_forge_token or args.clear_github_app:
        raise user_error("--clear-forge-token and --clear-github-app are for `clarity repo set`")
    return body


def _webhook_secret(args: argparse.Namespace) -> str | None:
    secret: str | None = args.webhook_secret
    if args.webhook_secret_file:
        try:
            secret = Path(args.webhook_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise user_error(f"--webhook-secret-file {args.webhook_secret_file}: {exc.strerror}") from None
        if not secret:
            raise user_error(f"--webhook-secret-file {args.webhook_secret_file}: the file is empty")
    return secret


def _allow_plugin(values: list[str]) -> dict[str, list[str]]:
    """The --allow-plugin NAME=PERM[,PERM] options as {plugin: [permission, ...]}; a later option
    for the same plugin replaces an earlier one, `NAME=` grants it nothing."""
    grants: dict[str, list[str]] = {}
    for value in values:
        plugin, eq, perms = value.partition("=")
        plugin = plugin.strip()
        if not eq or not plugin:
            raise user_error(f"--allow-plugin {value!r}: expected NAME=PERMISSION[,PERMISSION] (e.g. "
                              "notification=network,secrets; NAME= grants it nothing)")
        items = {p.strip() for p in perms.split(",") if p.strip()}
        unknown = sorted(items - set(PERMISSIONS))
        if unknown:
            raise user_error(f"--allow-plugin {value}: unknown permission(s) {', '.join(unknown)} "
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
            raise user_error("repo add needs NAME (owner/repo) and --url URL")
        if args.enabled is not None:
            raise user_error("--enable and --disable are for `clarity repo set` (a new repository is enabled)")
        if args.plugin_permissions_default:
            raise user_error("--plugin-permissions-default is for `clarity repo set` (a new repository without "
                              "--allow-plugin follows the controller's setting)")
        body = {"name": args.name, "url": args.url, "forge": args.forge or "generic",
                "webhook_secret": _webhook_secret(args), "poll_interval": args.poll, **_forge_body(args, patch=False)}
        if args.allow_plugin:
            body["plugin_permissions"] = _allow_plugin(args.allow_plugin)
        repo = remote_call(args, "POST", "/api/v1/repos", {k: v for k, v in body.items() if v is not None})
        _warn(repo)
        print(f"added {repo['name']} ({repo['forge']}, {repo['url']})"
              + (f", polled every {repo['poll_interval_s']:g}s" if repo.get("poll_interval_s") else ""))
    elif args.action == "set":
        if not args.name:
            raise user_error("repo set needs NAME (owner/repo) and the settings to change")
        if args.url is not None or args.forge is not None:
            raise user_error("repo set cannot change --url or --forge: `clarity repo remove` it and add it again "
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
                raise user_error("--plugin-permissions-default goes back to the controller's setting: not with "
                                  "--allow-plugin")
            body["plugin_permissions"] = None
        elif args.allow_plugin:
            given = _allow_plugin(args.allow_plugin)
            stored = remote_call(args, "GET", repo_path(args.name))
            base = stored.get("plugin_permissions")
            if base is None:  # following the setting: start from what it grants now
                base = stored.get("effective_plugin_permissions") or {}
            body["plugin_permissions"] = {**base, **given}
        if not body:
            raise user_error("repo set: nothing to change (see `clarity repo --help`)")
        repo = remote_call(args, "PATCH", repo_path(args.name), body)
        _warn(repo)
        print(f"changed {repo['name']}: {', '.join(sorted(body))}")
        if "plugin_permissions" in body:
            print(f"plugin grants: {_grants_text(repo)}")
    elif args.action == "show":
        if not args.name:
            raise user_error("repo show needs NAME (owner/repo)")
        repo = remote_call(args, "GET", repo_path(args.name))
        if args.json:
            print(json.dumps(repo, indent=2))
        else:
            for label, value in _show(repo):
                print(f"{label + ':':<16} {value}")
    elif args.action == "list":
        repos = remote_call(args, "GET", "/api/v1/repos")
        items = repos["repos"] if isinstance(repos, dict) else repos
        print(f"{'NAME':<30}  {'FORGE':<8}  {'POLL':>6}  URL")
        for r in items:
            poll = f"{r['poll_interval_s']:g}s" if r.get("poll_interval_s") else "-"
            print(f"{r['name']:<30}  {r['forge']:<8}  {poll:>6}  {r['url']}")
    elif args.action == "remove":
        remote_call(args, "DELETE", repo_path(args.name))
        print(f"removed {args.name}")
    return 0


def _cmd_webhook_key(args: argparse.Namespace) -> int:
    if args.action == "create":
        if not args.target or not args.workflow:
            raise user_error("webhook-key create needs REPO and WORKFLOW_FILE "
                              "(e.g. clarity webhook-key create acme/app .clarity/deploy.yaml)")
        body = {"repo": args.target, "workflow": args.workflow, **({"name": args.name} if args.name else {})}
        key = remote_call(args, "POST", "/api/v1/webhook-keys", body)
        print(key["key"])
        paths = ", ".join(key.get("paths") or ()) or "none yet"
        print(f"clarity: webhook key {key['prefix']}… ({key['name']}) for {key['workflow_file']} of {key['repo']}; "
              f"it is shown only now. Its webhook paths: {paths}. Send it as 'Authorization: Bearer KEY' or "
              "'X-Clarity-Key: KEY'", file=sys.stderr)
        for warning in key.get("warnings") or ():
            print(f"clarity: warning: {warning}", file=sys.stderr)
    elif args.action == "list":
        if args.workflow:
            raise user_error("webhook-key list takes one REPO at most")
        keys = remote_call(args, "GET", "/api/v1/webhook-keys", params={"repo": args.target} if args.target else None)["keys"]
        print(f"{'PREFIX':<14}  {'STATE':<8}  {'REPO':<24}  {'WORKFLOW':<28}  {'LAST USED':<9}  NAME")
        for k in keys:
            print(f"{k['prefix']:<14}  {k['state']:<8}  {k.get('repo') or '-':<24}  {k['workflow_file']:<28}  "
                  f"{ago(k.get('last_used_at')):<9}  {k['name']}")
    else:
        if not args.target or args.workflow:
            raise user_error("webhook-key revoke needs the key's PREFIX (see `clarity webhook-key list`)")
        remote_call(args, "DELETE", f"/api/v1/webhook-keys/{args.target}")
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
            raise user_error(f"cannot read the secret's value from {args.value_file}: {exc}") from None
    elif sys.stdin.isatty():
        import getpass

        text = getpass.getpass(f"value of {args.name} (not shown): ")
    else:
        text = sys.stdin.read()
    text = text[:-1] if text.endswith("\n") else text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # stdin's bytes that are not UTF-8 arrive as surrogates
        raise user_error(f"the value of {args.name} is not UTF-8 text: give a text value (base64-encode binary "
                         "data and decode it in the task)") from None
    if not text:
        raise user_error(f"the value of {args.name} is empty: give it on stdin or with --value-file FILE")
    return text


def _cmd_secret(args: argparse.Namespace) -> int:
    base = repo_path(args.repo) + "/secrets"
    if args.action == "list":
        if args.name:
            raise user_error("secret list takes the REPO only")
        rows = remote_call(args, "GET", base)["secrets"]
        if not rows:
            print(f"{args.repo} has no secrets (clarity secret set {args.repo} NAME)")
            return 0
        print(f"{'NAME':<32}  {'UPDATED':<9}  BY")
        for r in rows:
            print(f"{r['name']:<32}  {ago(r.get('updated_at')):<9}  {r.get('updated_by') or '-'}")
        return 0
    if not args.name:
        raise user_error(f"secret {args.action} needs REPO and NAME (e.g. clarity secret {args.action} acme/app DEPLOY_KEY)")
    if args.action == "set":
        from runner.masking import MIN_LEN

        value = _secret_value(args)
        made = remote_call(args, "PUT", f"{base}/{quote(args.name, safe='')}", {"value": value})
        if len(value) < MIN_LEN:
            print(f"clarity: warning: a value shorter than {MIN_LEN} characters cannot be masked in logs",
                  file=sys.stderr)
        print(f"secret {args.name} of {args.repo} {'set' if made.get('created') else 'replaced'}; tasks that name it "
              f"(secrets: [{args.name}] or ${{secrets.{args.name}}}) get it")
    else:
        remote_call(args, "DELETE", f"{base}/{quote(args.name, safe='')}")
        print(f"secret {args.name} of {args.repo} removed")
    return 0


def add_repo(sub: Any) -> None:
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
    remote_options(repo)
    repo.set_defaults(func=_cmd_repo)


def add_webhook_key(sub: Any) -> None:
    hook_key = sub.add_parser("webhook-key", help="keys that start a workflow's webhook triggers "
                              "(POST /api/v1/webhook...; docs/triggers.md)")
    hook_key.add_argument("action", choices=["create", "list", "revoke"])
    hook_key.add_argument("target", nargs="?", metavar="REPO|PREFIX", help="create, list: the repository (owner/repo); "
                          "revoke: the key's prefix")
    hook_key.add_argument("workflow", nargs="?", metavar="WORKFLOW_FILE", help="create: e.g. .clarity/deploy.yaml")
    hook_key.add_argument("--name", help="create: who or what uses the key; runs say webhook-key:NAME "
                          "(default: the key's prefix)")
    remote_options(hook_key)
    hook_key.set_defaults(func=_cmd_webhook_key)


def add_secret(sub: Any) -> None:
    secret = sub.add_parser("secret", help="a repository's secrets for its runs on the controller (values never shown)")
    secret.add_argument("action", choices=["set", "list", "remove"])
    secret.add_argument("repo", metavar="REPO", help="the repository (owner/repo)")
    secret.add_argument("name", nargs="?", metavar="NAME", help="set, remove: the secret's name, e.g. DEPLOY_KEY")
    secret.add_argument("--value-file", metavar="FILE", help="set: read the value from FILE (default: stdin)")
    remote_options(secret)
    secret.set_defaults(func=_cmd_secret)
