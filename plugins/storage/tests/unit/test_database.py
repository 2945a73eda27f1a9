"""The database destination, against real SQLite files (under the storage root) and a real
PostgreSQL (tests/conftest.py's throwaway cluster)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa

from plugins.storage.tests.conftest import Task, tree

ROWS = [
    {"id": 1, "name": "ada", "score": 9.5, "passed": True, "tags": ["a", "b"], "meta": {"k": 1}},
    {"id": 2, "name": "bob", "score": 7, "passed": False, "tags": [], "meta": None},
]


@pytest.fixture
def db(database_url: str, task: Task) -> Iterator[tuple[str, sa.Engine]]:
    """(the URL the task is given, an engine on the same database). SQLite: a relative path, which
    the plugin resolves under the storage root."""
    if database_url.startswith("sqlite"):
        given, real = "sqlite:///results/runs.db", f"sqlite:///{task.root / 'results' / 'runs.db'}"
        (task.root / "results").mkdir()  # for the test's own engine; the plugin makes it when missing
    else:
        given = real = database_url
    engine = sa.create_engine(real, poolclass=sa.pool.NullPool)
    yield given, engine
    engine.dispose()


def rows(engine: sa.Engine, table: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))]


def test_append_creates_the_table_with_a_column_per_key(task: Task, db: tuple[str, sa.Engine]) -> None:
    url, engine = db
    done = task.run({"data": ROWS, "destination": {"database": url, "table": "results"}})
    assert done.returncode == 0, done.stderr
    assert done.output["kind"] == "database" and done.output["rows"] == 2 and done.output["written"] == ["results"]
    columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("results")}
    assert list(columns) == ["id", "name", "score", "passed", "tags", "meta"]  # nothing else
    assert isinstance(columns["id"], sa.Integer)
    assert isinstance(columns["score"], sa.Float)  # 9.5 and 7: numbers, not all integers
    assert isinstance(columns["passed"], sa.Boolean)
    assert all(isinstance(columns[k], sa.Text) for k in ("name", "tags", "meta"))
    got = rows(engine, "results")
    assert [(r["id"], r["name"], r["score"], bool(r["passed"])) for r in got] == [(1, "ada", 9.5, True),
                                                                                  (2, "bob", 7.0, False)]
    assert json.loads(got[0]["tags"]) == ["a", "b"] and json.loads(got[0]["meta"]) == {"k": 1}
    assert got[1]["meta"] is None
    assert "wrote 2 rows to results" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("stored 2 rows in table results of ")


def test_append_adds_to_the_rows_there(task: Task, db: tuple[str, sa.Engine]) -> None:
    url, engine = db
    assert task.run({"data": ROWS, "destination": {"database": url, "table": "results"}}).returncode == 0
    done = task.run({"data": {"id": 3, "name": "cy"}, "destination": {"database": url, "table": "results",
                                                                       "mode": "append"}})
    assert done.returncode == 0, done.stderr
    got = rows(engine, "results")
    assert [r["id"] for r in got] == [1, 2, 3]
    assert got[2]["score"] is None and got[2]["name"] == "cy"  # a key left out: NULL
    assert done.output["rows"] == 1


def test_replace_deletes_the_rows_first(task: Task, db: tuple[str, sa.Engine]) -> None:
    url, engine = db
    assert task.run({"data": ROWS, "destination": {"database": url, "table": "results"}}).returncode == 0
    done = task.run({"data": [{"id": 9, "name": "zed"}],
                     "destination": {"database": url, "table": "results", "mode": "replace"}})
    assert done.returncode == 0, done.stderr
    assert [(r["id"], r["name"]) for r in rows(engine, "results")] == [(9, "zed")]
    assert "deleted 2 rows of results (mode replace)" in done.stdout


def test_a_new_key_is_an_error_naming_it_and_nothing_changes(task: Task, db: tuple[str, sa.Engine]) -> None:
    url, engine = db
    assert task.run({"data": ROWS, "destination": {"database": url, "table": "results"}}).returncode == 0
    done = task.run({"data": [{"id": 3, "colour": "red", "size": 2}],
                     "destination": {"database": url, "table": "results", "mode": "replace"}})
    assert done.returncode == 1
    assert "table results has no columns 'colour', 'size'" in done.stderr
    assert "its columns: id, name, score, passed, tags, meta" in done.stderr
    assert [r["id"] for r in rows(engine, "results")] == [1, 2]  # replace did not delete either


def test_all_rows_go_in_one_transaction(task: Task, db: tuple[str, sa.Engine]) -> None:
    url, engine = db
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE strict (id INTEGER NOT NULL, note TEXT)"))
        conn.execute(sa.text("INSERT INTO strict VALUES (1, 'kept')"))
    done = task.run({"data": [{"id": 2, "note": "a"}, {"note": "no id"}],
                     "destination": {"database": url, "table": "strict", "mode": "replace"}})
    assert done.returncode == 1
    assert "error: database " in done.stderr and "null" in done.stderr.lower()
    assert "Traceback" not in done.stderr
    assert rows(engine, "strict") == [{"id": 1, "note": "kept"}]  # neither the delete nor row 1 happened


def test_values_of_other_types_go_into_a_text_column_as_json(task: Task, db: tuple[str, sa.Engine]) -> None:
    url, engine = db
    done = task.run({"data": [{"k": "a"}, {"k": 3}, {"k": True}],
                     "destination": {"database": url, "table": "mixed"}})
    assert done.returncode == 0, done.stderr
    assert sorted(r["k"] for r in rows(engine, "mixed")) == ["3", "a", "true"]


def test_rows_from_a_workspace_csv(task: Task, db: tuple[str, sa.Engine]) -> None:
    url, engine = db
    (task.workspace / "people.csv").write_text("First Name,age\nAda,36\nBob,41\n")
    done = task.run({"data": "./people.csv", "destination": {"database": url, "table": "people"}})
    assert done.returncode == 0, done.stderr
    assert [(r["First Name"], r["age"]) for r in rows(engine, "people")] == [("Ada", "36"), ("Bob", "41")]


@pytest.mark.parametrize("table", ["results; DROP TABLE x", "1abc", "rés", "a-b", "x" * 64])
def test_a_bad_table_name_is_refused(task: Task, db: tuple[str, sa.Engine], table: str) -> None:
    url, engine = db
    done = task.run({"data": ROWS, "destination": {"database": url, "table": table}})
    assert done.returncode == 1
    assert f"destination table '{table}' is not a table name: letters, digits and _ only" in done.stderr
    assert sa.inspect(engine).get_table_names() == []


@pytest.mark.parametrize("data, message", [
    ("just text", "needs a list of objects (one per row) or one object; the data is a string"),
    ([{"a": 1}, 2], "row 2 is a number"),
    ([{}], "row 1 is an empty object"),
])
def test_data_that_is_not_rows_is_refused(task: Task, db: tuple[str, sa.Engine], data: Any, message: str) -> None:
    url, engine = db
    done = task.run({"data": data, "destination": {"database": url, "table": "t"}})
    assert done.returncode == 1
    assert message in done.stderr
    assert sa.inspect(engine).get_table_names() == []


def test_an_empty_list_replaces_with_nothing(task: Task, db: tuple[str, sa.Engine]) -> None:
    url, engine = db
    assert task.run({"data": ROWS, "destination": {"database": url, "table": "results"}}).returncode == 0
    done = task.run({"data": [], "destination": {"database": url, "table": "results", "mode": "replace"}})
    assert done.returncode == 0, done.stderr
    assert rows(engine, "results") == [] and done.output["rows"] == 0


def test_a_table_with_a_mixed_case_name(task: Task, db: tuple[str, sa.Engine]) -> None:
    url, engine = db
    for _ in range(2):
        done = task.run({"data": {"n": 1}, "destination": {"database": url, "table": "BuildResults"}})
        assert done.returncode == 0, done.stderr
    assert "BuildResults" in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT count(*) FROM "BuildResults"')).scalar() == 2


# SQLite only: where the file may be.

def test_an_absolute_sqlite_path_inside_the_root(task: Task) -> None:
    path = task.root / "db" / "abs.db"
    done = task.run({"data": {"n": 1}, "destination": {"database": f"sqlite:///{path}", "table": "t"}})
    assert done.returncode == 0, done.stderr
    engine = sa.create_engine(f"sqlite:///{path}")
    assert rows(engine, "t") == [{"n": 1}]
    engine.dispose()


@pytest.mark.parametrize("url", ["sqlite:///../escape.db", "sqlite:///{tmp}/escape.db", "sqlite:///link/escape.db"])
def test_a_sqlite_path_out_of_the_root_is_refused(task: Task, url: str) -> None:
    outside = task.tmp / "outside"
    outside.mkdir()
    (task.root / "link").symlink_to(outside)
    url = url.format(tmp=task.tmp)
    done = task.run({"data": {"n": 1}, "destination": {"database": url, "table": "t"}})
    assert done.returncode == 1
    shown = url.removeprefix("sqlite:///")
    assert (f"the SQLite database '{shown}' is outside the storage root; give a path inside it, "
            "like sqlite:///results/runs.db") in done.stderr
    assert not (task.tmp / "escape.db").exists()
    assert tree(outside) == [] and tree(task.root) == ["link"]


@pytest.mark.parametrize("url, message", [
    ("sqlite://", "give the SQLite file's path under the storage root"),
    ("sqlite:///:memory:", "an in-memory database keeps nothing"),
    ("sqlite:///x.db?uri=true", "the `uri` option is not allowed"),
    ("mysql://u@h/db", "mysql databases are not supported"),
    ("postgresql+psycopg2://u@h/db", "the driver psycopg2 is not in the plugin's image"),
    ("not a url", "not a database URL"),
])
def test_unusable_database_urls(task: Task, url: str, message: str) -> None:
    done = task.run({"data": {"n": 1}, "destination": {"database": url, "table": "t"}})
    assert done.returncode == 1
    assert message in done.stderr
    assert tree(task.root) == []


def test_sqlite_without_a_storage_root(task: Task) -> None:
    done = task.run({"data": {"n": 1}, "destination": {"database": "sqlite:///r.db", "table": "t"}}, root=False)
    assert done.returncode == 1
    assert "the controller has no storage root configured (setting `storage_root`)" in done.stderr


@pytest.mark.postgres
def test_an_unreachable_postgresql_says_so_without_the_password(task: Task) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://clarity:hunter2@127.0.0.1:{port}/nowhere?connect_timeout=3"
    done = task.run({"data": {"n": 1}, "destination": {"database": url, "table": "t"}})
    assert done.returncode == 1
    assert f"error: database postgresql+psycopg://clarity:***@127.0.0.1:{port}/nowhere" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_files_cannot_go_into_a_database(task: Task) -> None:
    (task.workspace / "a.txt").write_text("a")
    done = task.run({"files": ["a.txt"], "destination": {"database": "sqlite:///r.db", "table": "t"}})
    assert done.returncode == 1
    assert "files cannot go into a database" in done.stderr
    assert tree(task.root) == []


def test_the_postgres_fixture_is_used(database_url: str) -> None:
    """The re-exported fixture runs both ways here: once on SQLite, once on PostgreSQL."""
    assert database_url.split(":")[0] in ("sqlite", "postgresql+psycopg")
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    engine.dispose()
