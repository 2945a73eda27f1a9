"""The file-system destination: a directory under the storage root, run as the container runs it."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import yaml

from plugins.storage.tests.conftest import Task, tree

# What `${tasks.process-data.output}` resolves to: the upstream task's output, a JSON value.
UPSTREAM = {"records": [{"id": 1, "name": "ada", "score": 9.5}, {"id": 2, "name": "bob", "score": 7.0}],
            "count": 2}


def test_the_standards_example_stores_the_upstream_output_in_backups_42(task: Task) -> None:
    done = task.run({"data": UPSTREAM, "destination": "backups/42"})
    assert done.returncode == 0, done.stderr
    stored = task.root / "backups" / "42" / "data.json"
    assert json.loads(stored.read_text()) == UPSTREAM
    assert done.output == {"destination": "backups/42", "kind": "filesystem", "written": ["backups/42/data.json"]}
    assert done.stdout.splitlines() == [f"wrote backups/42/data.json ({stored.stat().st_size} bytes)",
                                        "stored 1 file in backups/42 (storage root)"]
    assert tree(task.root) == ["backups", "backups/42", "backups/42/data.json"]  # no temporary file left


def test_an_existing_file_is_replaced_whole(task: Task) -> None:
    (task.root / "backups" / "42").mkdir(parents=True)
    (task.root / "backups" / "42" / "data.json").write_text("old and much longer than the new content" * 50)
    done = task.run({"data": [1, 2], "destination": "backups/42"})
    assert done.returncode == 0, done.stderr
    assert json.loads((task.root / "backups/42/data.json").read_text()) == [1, 2]
    assert tree(task.root / "backups" / "42") == ["data.json"]


def test_yaml_by_the_filename(task: Task) -> None:
    done = task.run({"data": UPSTREAM, "destination": "reports", "filename": "summary.yml"})
    assert done.returncode == 0, done.stderr
    text = (task.root / "reports" / "summary.yml").read_text()
    assert yaml.safe_load(text) == UPSTREAM
    assert not text.lstrip().startswith("{")  # block YAML, not JSON


def test_csv_by_the_filename(task: Task) -> None:
    done = task.run({"data": UPSTREAM["records"], "destination": "reports", "filename": "records.csv"})
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO((task.root / "reports" / "records.csv").read_text())))
    assert rows == [{"id": "1", "name": "ada", "score": "9.5"}, {"id": "2", "name": "bob", "score": "7.0"}]


def test_format_overrides_the_extension(task: Task) -> None:
    done = task.run({"data": {"a": 1}, "destination": "out", "filename": "result.txt", "format": "json"})
    assert done.returncode == 0, done.stderr
    assert json.loads((task.root / "out" / "result.txt").read_text()) == {"a": 1}


def test_a_string_under_another_extension_is_written_as_text(task: Task) -> None:
    done = task.run({"data": "# Report\nall green\n", "destination": "out", "filename": "report.md"})
    assert done.returncode == 0, done.stderr
    assert (task.root / "out" / "report.md").read_text() == "# Report\nall green\n"


def test_an_object_under_an_unknown_extension_asks_for_the_format(task: Task) -> None:
    done = task.run({"data": {"a": 1}, "destination": "out", "filename": "result.bin"})
    assert done.returncode == 1
    assert "cannot tell the format from the name 'result.bin'; set format" in done.stderr
    assert tree(task.root) == []


def test_csv_of_something_else_than_rows_is_refused(task: Task) -> None:
    done = task.run({"data": [1, 2, 3], "destination": "out", "filename": "x.csv"})
    assert done.returncode == 1
    assert "data as csv: csv needs a list of objects" in done.stderr
    assert "Traceback" not in done.stderr
    assert tree(task.root) == []


def test_data_from_a_workspace_file_is_converted(task: Task) -> None:
    (task.workspace / "results.csv").write_text("id,ok\n1,yes\n2,no\n")
    done = task.run({"data": "./results.csv", "destination": "backups/7"})
    assert done.returncode == 0, done.stderr
    assert json.loads((task.root / "backups/7/data.json").read_text()) == [{"id": "1", "ok": "yes"},
                                                                           {"id": "2", "ok": "no"}]


def test_a_missing_workspace_file_is_a_clear_error(task: Task) -> None:
    done = task.run({"data": "./nope.json", "destination": "backups/7"})
    assert done.returncode == 1
    assert "no file './nope.json' in the workspace" in done.stderr
    assert tree(task.root) == []


def test_files_are_copied_keeping_their_paths(task: Task) -> None:
    dist = task.workspace / "dist"
    dist.mkdir()
    (dist / "clarity-1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04wheel")
    (dist / "clarity-1.0.tar.gz").write_bytes(b"\x1f\x8bsdist")
    (task.workspace / "reports" / "html").mkdir(parents=True)
    (task.workspace / "reports" / "html" / "index.html").write_text("<h1>ok</h1>")
    script = task.workspace / "deploy.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    done = task.run({"files": ["dist/*.whl", "reports", "deploy.sh", "dist/*.whl"], "destination": "releases/42"})
    assert done.returncode == 0, done.stderr
    out = task.root / "releases" / "42"
    assert (out / "dist" / "clarity-1.0-py3-none-any.whl").read_bytes() == b"PK\x03\x04wheel"
    assert (out / "reports" / "html" / "index.html").read_text() == "<h1>ok</h1>"
    assert (out / "deploy.sh").stat().st_mode & 0o777 == 0o755
    assert not (out / "dist" / "clarity-1.0.tar.gz").exists()  # not matched
    assert done.output["written"] == ["releases/42/deploy.sh", "releases/42/dist/clarity-1.0-py3-none-any.whl",
                                      "releases/42/reports/html/index.html"]
    assert done.stdout.splitlines()[-1] == "stored 3 files in releases/42 (storage root)"


def test_a_glob_that_matches_nothing_is_an_error(task: Task) -> None:
    done = task.run({"files": ["dist/*.whl"], "destination": "releases/42"})
    assert done.returncode == 1
    assert "'dist/*.whl' matches no file in the workspace" in done.stderr
    assert tree(task.root) == []


@pytest.mark.parametrize("pattern", ["../*", "/etc/*"])
def test_a_glob_out_of_the_workspace_is_refused(task: Task, pattern: str) -> None:
    done = task.run({"files": [pattern], "destination": "releases/42"})
    assert done.returncode == 1
    assert f"files: '{pattern}' is outside the workspace" in done.stderr
    assert tree(task.root) == []


def test_a_workspace_symlink_leading_out_is_refused(task: Task) -> None:
    secret = task.tmp / "secret.txt"
    secret.write_text("not for storage")
    (task.workspace / "ok.txt").write_text("fine")
    (task.workspace / "leak.txt").symlink_to(secret)
    done = task.run({"files": ["*.txt"], "destination": "releases/42"})
    assert done.returncode == 1
    assert "is outside" in done.stderr and "leak.txt" in done.stderr
    assert tree(task.root) == []  # not even ok.txt


ESCAPES = ["../../etc", "/etc", "backups/../../outside", "~/x"]


@pytest.mark.parametrize("destination", ESCAPES)
def test_a_destination_outside_the_root_is_refused_and_nothing_written(task: Task, destination: str) -> None:
    (task.workspace / "a.txt").write_text("a")
    for config in ({"data": {"a": 1}}, {"files": ["a.txt"]}):
        done = task.run({**config, "destination": destination})
        assert done.returncode == 1
        assert (f"error: destination '{destination}' is outside the storage root; give a path inside it, "
                "like backups/${workflow.id}") in done.stderr
        assert done.output is None
        assert tree(task.root) == []
        assert not (task.tmp / "outside").exists()


def test_the_root_itself_given_absolutely_is_refused(task: Task) -> None:
    done = task.run({"data": 1, "destination": str(task.root / "backups")})
    assert done.returncode == 1
    assert "is outside the storage root" in done.stderr
    assert tree(task.root) == []


def test_a_symlink_in_the_root_leading_out_is_refused_and_nothing_written(task: Task) -> None:
    outside = task.tmp / "outside"
    outside.mkdir()
    (task.root / "backups").symlink_to(outside)
    done = task.run({"data": {"a": 1}, "destination": "backups/42"})
    assert done.returncode == 1
    assert "destination 'backups/42' is outside the storage root" in done.stderr
    assert tree(outside) == []
    assert tree(task.root) == ["backups"]


def test_a_symlinked_file_name_leading_out_is_refused(task: Task) -> None:
    target = task.tmp / "victim.json"
    target.write_text("untouched")
    (task.root / "backups").mkdir()
    (task.root / "backups" / "data.json").symlink_to(target)
    done = task.run({"data": {"a": 1}, "destination": "backups"})
    assert done.returncode == 1
    assert "is outside the storage root" in done.stderr
    assert target.read_text() == "untouched"


def test_a_symlink_inside_the_root_is_followed(task: Task) -> None:
    (task.root / "real").mkdir()
    (task.root / "latest").symlink_to(task.root / "real")
    done = task.run({"data": {"a": 1}, "destination": "latest"})
    assert done.returncode == 0, done.stderr
    assert json.loads((task.root / "real" / "data.json").read_text()) == {"a": 1}


def test_without_a_storage_root_the_error_names_the_setting(task: Task) -> None:
    done = task.run({"data": {"a": 1}, "destination": "backups/42"}, root=False)
    assert done.returncode == 1
    assert "the controller has no storage root configured (setting `storage_root`)" in done.stderr
    assert done.output is None


def test_a_storage_root_that_is_not_mounted(task: Task) -> None:
    done = task.run({"data": 1, "destination": "b"}, env={"CLARITY_STORAGE_ROOT": str(task.tmp / "missing")})
    assert done.returncode == 1
    assert "is not a directory in the container (is it mounted?)" in done.stderr
    assert not (task.tmp / "missing").exists()


def test_a_destination_that_is_a_file(task: Task) -> None:
    (task.root / "backups").write_text("a file")
    done = task.run({"data": 1, "destination": "backups"})
    assert done.returncode == 1
    assert "destination 'backups' is a file in the storage root, not a directory" in done.stderr
    assert (task.root / "backups").read_text() == "a file"


@pytest.mark.parametrize("config, message", [
    ({"destination": "b"}, "give exactly one of data"),
    ({"data": 1, "files": ["x"], "destination": "b"}, "give exactly one of data"),
    ({"data": 1}, "give a destination"),
    ({"data": 1, "destination": "b", "filename": "../x.json"}, "must be a file name without a directory"),
    ({"files": ["x"], "destination": "b", "format": "json"}, "format applies to data"),
    ({"data": 1, "destination": "b", "colour": "red"}, "unknown config key colour"),
    ({"data": 1, "destination": 7}, "destination must be a directory under the storage root"),
])
def test_config_mistakes_are_said_plainly(task: Task, config: dict[str, Any], message: str) -> None:
    done = task.run(config)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert tree(task.root) == []
