"""Settings, read once from a config file and `CLARITY_*` environment variables into a frozen value.

The file is TOML (`CLARITY_CONFIG`, else `$CLARITY_HOME/config.toml` when it exists), its keys the
setting names in lower case (`port = 9090`); an environment variable beats the file. Nothing
reads the environment after start-up: the value is passed in explicitly.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping


def _default_home(env: Mapping[str, str]) -> Path:
    if env.get("CLARITY_HOME"):
        return Path(env["CLARITY_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "clarity"


class SettingsError(ValueError):
    """A setting has a value Clarity cannot use; the message names it."""


def _count(minimum: int) -> Callable[[str, Any], int]:
    def parse(name: str, raw: Any) -> int:
        text = str(raw)
        if not text.isdigit() or int(text) < minimum:
            raise SettingsError(f"{name}={text!r}: expected a whole number, at least {minimum}")
        return int(text)
    return parse


def _seconds(name: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r}: expected a positive number of seconds")
    return value


def _days(name: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}={raw!r}: expected a number of days (0: keep forever)") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r}: expected a number of days, 0 or more (0: keep forever)")
    return value


def _choice(*options: str) -> Callable[[str, Any], str]:
    def parse(name: str, raw: Any) -> str:
        if str(raw) not in options:
            raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(options)}")
        return str(raw)
    return parse


def _text(name: str, raw: Any) -> str:
    return str(raw)


def _url(name: str, raw: Any) -> str:
    text = str(raw).rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={str(raw)!r}: expected an http:// or https:// URL")
    return text


def _dirs(name: str, raw: Any) -> tuple[Path, ...]:
    """A list of absolute directories: a TOML list, or the environment's `a:b:c`."""
    items = [str(x) for x in raw] if isinstance(raw, list) else [x for x in str(raw).split(os.pathsep) if x]
    paths = tuple(Path(x).expanduser() for x in items)
    for path in paths:
        if not path.is_absolute():
            raise SettingsError(f"{name}: {str(path)!r} is not an absolute path")
    return paths


def _file(name: str, raw: Any) -> Path:
    path = Path(str(raw)).expanduser()
    if not path.is_file():
        raise SettingsError(f"{name}={str(raw)!r}: no such file")
    return path


PERMISSIONS = ("network", "secrets", "host_paths")


def parse_grants(name: str, raw: Any) -> dict[str, frozenset[str]]:
    """Plugin permissions: a TOML table {plugin = ["network", ...]}, or `plugin=perm,perm;plugin2=`
    (the environment, the CLI)."""
    if isinstance(raw, Mapping):
        items = {str(k): v for k, v in raw.items()}
    else:
        items = {}
        for part in (p.strip() for p in str(raw).split(";")):
            if not part:
                continue
            plugin, eq, perms = part.partition("=")
            if not eq or not plugin.strip():
                raise SettingsError(f"{name}: expected PLUGIN=PERMISSION[,PERMISSION] (e.g. notification=network,secrets), "
                                    f"got {part!r}")
            items[plugin.strip()] = [x.strip() for x in perms.split(",") if x.strip()]
    grants: dict[str, frozenset[str]] = {}
    for plugin, perms in items.items():
        if not isinstance(perms, (list, tuple)):
            raise SettingsError(f"{name}: {plugin}: expected a list of permissions, like [\"network\"]")
        unknown = sorted(set(map(str, perms)) - set(PERMISSIONS))
        if unknown:
            raise SettingsError(f"{name}: {plugin}: unknown permission(s) {', '.join(unknown)} "
                                f"(known: {', '.join(PERMISSIONS)})")
        grants[plugin] = frozenset(map(str, perms))
    return grants


_permissions = parse_grants


def parse_repositories(name: str, raw: Any) -> dict[str, str]:
    """Repositories by name (the `repo` of `extends:` on `clarity run`): a TOML table
    {name = "url"}, or `name=url;name2=url2` (the environment)."""
    if isinstance(raw, Mapping):
        items = {str(k): v for k, v in raw.items()}
    else:
        items = {}
        for part in (p.strip() for p in str(raw).split(";")):
            if not part:
                continue
            repo, eq, url = part.partition("=")
            if not eq or not repo.strip() or not url.strip():
                raise SettingsError(f"{name}: expected NAME=URL[;NAME=URL] (e.g. acme/ci-templates=https://git.example.org/"
                                    f"acme/ci-templates.git), got {part!r}")
            items[repo.strip()] = url.strip()
    for repo, url in items.items():
        if not isinstance(url, str) or not url.strip():
            raise SettingsError(f"{name}: {repo}: expected a git URL or path")
    return {repo: str(url).strip() for repo, url in items.items()}


def _dir(name: str, raw: Any) -> Path:
    path = Path(str(raw)).expanduser()
    if not path.is_absolute():
        raise SettingsError(f"{name}={str(raw)!r}: not an absolute path")
    return path


@dataclass(frozen=True)
class Settings:
    home: Path
    """State directory: the embedded database, mirror cache, artifacts, task scratch space."""
    database_url: str
    parallel: int
    """Tasks the built-in runner runs at once."""
    pull: bool = True
    """Pull an image that is not present locally (CLARITY_PULL=missing, the default) or not (never)."""
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 25 * 1024 * 1024
    """Largest webhook delivery or API request body accepted (413 above it)."""
    max_artifact_bytes: int = 4 * 1024**3
    """Largest artifacts upload of a remote runner's task (a tar.gz, streamed to disk)."""
    artifact_retention_days: float = 30.0
    """How long a run's stored artifacts are kept after it finished (0: forever)."""
    reap_interval_s: float = 5.0
    """How often expired runner leases are taken back."""
    lease_s: float = 30.0
    """How long a runner's lease on a task lives without a heartbeat."""
    log_format: str = "console"
    """Controller logs: console (for people) or json (for log collectors)."""
    watch_dirs: tuple[Path, ...] = ()
    """Directories `file_watch` triggers may watch (they and what is below them); none by default."""
    public_url: str = ""
    """The controller's URL as users reach it, for the links in forge statuses (default: from host and port)."""
    tls_cert_file: Path | None = None
    """Serve HTTPS with this certificate (PEM, chain included); needs `tls_key_file`."""
    tls_key_file: Path | None = None
    """The private key (PEM) of `tls_cert_file`."""
    rate_limit: int = 1200
    """API requests a minute per API key (and per client address with a missing or bad key, and per
    webhook key); 0: no limit. Counted by each controller process on its own."""
    storage_root: Path | None = None
    """Where `storage` tasks write (file system destinations), on the runners' machines (default HOME/storage)."""
    plugin_permissions: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: {"storage": frozenset({"host_paths"})})
    """What each plugin may have, of what its manifest asks (network, secrets, host_paths), unless a
    repository says otherwise (`clarity repo set NAME --allow-plugin ...`). Default: storage=host_paths."""
    repositories: Mapping[str, str] = field(default_factory=dict)
    """Repositories by name for `extends: {repo: NAME, ...}` on `clarity run` (name -> git URL or
    path); a controller uses its registered repositories instead."""

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert_file else "http"

    @property
    def base_url(self) -> str:
        """`public_url`, or the URL this controller listens on."""
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def cache(self) -> Path:
        """Mirror cache root (WorkspaceCache keeps `mirrors/` under it)."""
        return self.home

    @property
    def work_root(self) -> Path:
        return self.home / "work"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = _default_home(env)
        config_path = env.get("CLARITY_CONFIG") or (str(home / "config.toml") if (home / "config.toml").exists() else "")
        file: dict[str, Any] = {}
        if config_path:
            try:
                file = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise SettingsError(f"config file {config_path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"config file {config_path}: {exc}") from None
            known = {f.name for f in fields(cls)} - {"home"}
            unknown = sorted(set(file) - known)
            if unknown:
                close = [f"{u} -> {c[0]}" for u in unknown if (c := difflib.get_close_matches(u, known, n=1))]
                raise SettingsError(f"config file {config_path}: unknown setting(s) {', '.join(unknown)} "
                                    + (f"(did you mean: {', '.join(close)}?) " if close else "")
                                    + f"(known: {', '.join(sorted(known))})")

        def get(name: str, parse: Callable[[str, Any], Any], default: Any) -> Any:
            var = f"CLARITY_{name.upper()}"
            if env.get(var):
                return parse(var, env[var])
            if name in file:
                try:
                    return parse(name, file[name])
                except SettingsError as exc:
                    raise SettingsError(f"config file {config_path}: {exc}") from None
            return default

        return cls(
            home=home,
            database_url=get("database_url", _text, f"sqlite:///{home / 'clarity.db'}"),
            parallel=get("parallel", _count(1), max(4, os.cpu_count() or 4)),
            pull=get("pull", _choice("missing", "never"), "missing") == "missing",
            host=get("host", _text, "127.0.0.1"),
            port=get("port", _count(1), 8080),
            max_body_bytes=get("max_body_bytes", _count(1024), 25 * 1024 * 1024),
            max_artifact_bytes=get("max_artifact_bytes", _count(1024), 4 * 1024**3),
            artifact_retention_days=get("artifact_retention_days", _days, 30.0),
            reap_interval_s=get("reap_interval_s", _seconds, 5.0),
            lease_s=get("lease_s", _seconds, 30.0),
            log_format=get("log_format", _choice("console", "json"), "console"),
            watch_dirs=get("watch_dirs", _dirs, ()),
            public_url=get("public_url", _url, ""),
            tls_cert_file=get("tls_cert_file", _file, None),
            tls_key_file=get("tls_key_file", _file, None),
            rate_limit=get("rate_limit", _count(0), 1200),
            storage_root=get("storage_root", _dir, home / "storage"),
            plugin_permissions=get("plugin_permissions", _permissions, {"storage": frozenset({"host_paths"})}),
            repositories=get("repositories", parse_repositories, {}),
        )._checked()

    def _checked(self) -> Settings:

        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            given, missing = ("tls_cert_file", "tls_key_file") if self.tls_cert_file else ("tls_key_file", "tls_cert_file")
            raise SettingsError(f"{given} is set but {missing} is not: HTTPS needs both the certificate and its key "
                                f"(CLARITY_TLS_CERT_FILE, CLARITY_TLS_KEY_FILE)")
        return self

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)
