"""Database fixtures shared by every test directory: SQLite, and a throwaway PostgreSQL cluster.

`database_url` runs a test once per database: `sqlite` (a file in tmp_path) and `postgresql` (a
fresh database on one cluster started for the whole session, marked `postgres`, so
`-m "not postgres"` leaves it out).

The cluster: initdb refuses root, so as root it runs as user `nobody` (`runuser`); its data and
socket directories are in a temporary directory owned by nobody; it listens on 127.0.0.1 only,
on a free port, with trust authentication (nothing but this test session can reach it), and
fsync off. It is stopped and removed at the end of the session, also when the session fails.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A test that runs a CLI command in-process configures logging (controller.logs) with a
    handler on the stream of that moment (pytest's captured stderr, closed after the test): put
    the root logger and structlog back as they were, for the tests that follow."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


PG_USER = "nobody"  # the cluster's superuser: the OS user it runs as when the tests run as root


def _pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<ver>/bin with initdb and pg_ctl (Debian), or PATH's."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    found.sort(key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else -1)
    for initdb in reversed(found):
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists():
            return bindir
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster for the session; yields its base URL, `postgresql+psycopg://nobody@127.0.0.1:PORT/`
    (append a database name)."""
    bindir = _pg_bindir()
    if bindir is None:
        reason = ("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                  "`apt-get install postgresql`, or run .ci/setup.sh")
        # CLARITY_REQUIRE_DOCKER is how .ci/test.sh says "the real thing must be here": the same
        # variable makes a missing PostgreSQL a failure instead of a skip.
        if os.environ.get("CLARITY_REQUIRE_DOCKER"):
            pytest.fail(reason + " (CLARITY_REQUIRE_DOCKER is set)", pytrace=False)
        pytest.skip(reason)

    as_root = os.geteuid() == 0
    user = PG_USER if as_root else None
    run_as = ["runuser", "-u", PG_USER, "--"] if as_root else []
    tmp = Path(tempfile.mkdtemp(prefix="clarity-pg-"))  # in /tmp itself: nobody must reach it
    data, sockets, log = tmp / "data", tmp / "sock", tmp / "postgres.log"
    sockets.mkdir()
    if as_root:
        for p in (tmp, sockets):
            shutil.chown(p, user, None)  # type: ignore[arg-type]

    def pg(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=timeout, cwd=tmp)

    def log_tail() -> str:
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""

    started = False
    try:
        done = pg(str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust", "-E", "UTF8",
                  "--no-locale", "--no-sync", "--no-instructions")
        if done.returncode != 0:
            pytest.fail(f"initdb failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
        for _attempt in range(3):  # the free port may be taken between choosing it and binding it
            port = _free_port()
            options = (f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c synchronous_commit=off "
                       "-c full_page_writes=off -c max_connections=200")
            done = pg(str(bindir / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-t", "30",
                      "-o", options)
            if done.returncode == 0:
                started = True
                break
        if not started:
            pytest.fail(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{log_tail()}", pytrace=False)

        base = f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/"
        admin = sa.create_engine(base + "postgres", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        deadline = time.monotonic() + 15
        while True:  # pg_ctl -w checked the socket; wait for TCP too
            try:
                with admin.connect() as conn:
                    conn.execute(sa.text("CREATE DATABASE clarity"))  # a database of our own: proves we can
                break
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        admin.dispose()
        yield base
    finally:
        if started:
            pg(str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w", "-t", "30")
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for one test: a SQLite file in tmp_path, or
    a fresh PostgreSQL database on the session's cluster, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'clarity.db'}"
        return
    base: str = request.getfixturevalue("postgres_server")
    name = f"test_{uuid.uuid4().hex}"
    admin = sa.create_engine(base + "clarity", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield base + name
        with admin.connect() as conn:  # FORCE: engines the test left open must not keep it
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
