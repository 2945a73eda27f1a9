"""The S3 destination, against moto's S3 server on 127.0.0.1 (a real HTTP server the task's
subprocess reaches, as the container reaches MinIO or AWS)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from plugins.storage.tests.conftest import Task

CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


def s3(endpoint: str, bucket: str, **more: Any) -> dict[str, Any]:
    return {"s3": {"bucket": bucket, "endpoint_url": endpoint, "region": "us-east-1", **CREDENTIALS, **more}}


def keys(client: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_data_is_uploaded_as_the_key(task: Task, s3_endpoint: str, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    data = {"records": [{"id": 1}], "count": 1}
    done = task.run({"data": data, "destination": s3(s3_endpoint, bucket, key="reports/42.json")})
    assert done.returncode == 0, done.stderr
    got = client.get_object(Bucket=bucket, Key="reports/42.json")
    assert json.loads(got["Body"].read()) == data
    assert got["ContentType"] == "application/json"
    assert done.output == {"destination": f"s3://{bucket}/reports/42.json", "kind": "s3",
                           "written": ["reports/42.json"]}
    assert done.stdout.splitlines()[0].startswith(f"uploaded s3://{bucket}/reports/42.json (")
    assert done.stdout.splitlines()[-1] == f"stored 1 object in s3://{bucket}/reports/42.json ({s3_endpoint})"


def test_the_format_follows_the_key(task: Task, s3_endpoint: str, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    done = task.run({"data": {"a": [1, 2]}, "destination": s3(s3_endpoint, bucket, key="r/summary.yaml")})
    assert done.returncode == 0, done.stderr
    got = client.get_object(Bucket=bucket, Key="r/summary.yaml")
    assert yaml.safe_load(got["Body"].read()) == {"a": [1, 2]} and got["ContentType"] == "application/yaml"


def test_data_under_a_prefix_takes_the_filename(task: Task, s3_endpoint: str, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    done = task.run({"data": [{"id": 1, "ok": "yes"}], "filename": "rows.csv",
                     "destination": s3(s3_endpoint, bucket, prefix="/backups/42/")})
    assert done.returncode == 0, done.stderr
    assert keys(client, bucket) == ["backups/42/rows.csv"]
    assert client.get_object(Bucket=bucket, Key="backups/42/rows.csv")["Body"].read() == b"id,ok\n1,yes\n"


def test_files_are_uploaded_under_the_prefix(task: Task, s3_endpoint: str, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    (task.workspace / "dist").mkdir()
    (task.workspace / "dist" / "app-1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04" + bytes(range(256)))
    (task.workspace / "dist" / "notes.txt").write_text("left out")
    (task.workspace / "site" / "css").mkdir(parents=True)
    (task.workspace / "site" / "index.html").write_text("<h1>ok</h1>")
    (task.workspace / "site" / "css" / "a.css").write_text("h1{}")
    done = task.run({"files": ["dist/*.whl", "site"], "destination": s3(s3_endpoint, bucket, prefix="releases/42")})
    assert done.returncode == 0, done.stderr
    expected = ["releases/42/dist/app-1.0-py3-none-any.whl", "releases/42/site/css/a.css",
                "releases/42/site/index.html"]
    assert keys(client, bucket) == expected
    assert done.output == {"destination": f"s3://{bucket}/releases/42", "kind": "s3", "written": expected}
    wheel = client.get_object(Bucket=bucket, Key=expected[0])["Body"].read()
    assert wheel == b"PK\x03\x04" + bytes(range(256))
    assert client.get_object(Bucket=bucket, Key=expected[2])["ContentType"] == "text/html"
    assert len([line for line in done.stdout.splitlines() if line.startswith("uploaded ")]) == 3


def test_a_missing_bucket_is_said_plainly(task: Task, s3_endpoint: str, s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    done = task.run({"data": {"a": 1}, "destination": s3(s3_endpoint, "no-such-bucket-here", key="x.json")})
    assert done.returncode == 1
    assert (f"error: S3 NoSuchBucket: bucket 'no-such-bucket-here' does not exist at {s3_endpoint}; "
            "create it, or fix the bucket's name") in done.stderr
    assert "Traceback" not in done.stderr and "testing" not in done.stderr
    assert done.output is None
    assert keys(client, bucket) == []


def test_an_unreachable_endpoint(task: Task) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = task.run({"data": 1, "destination": s3(f"http://127.0.0.1:{port}", "b", key="x.json")})
    assert done.returncode == 1
    assert f"S3: could not reach http://127.0.0.1:{port}" in done.stderr


@pytest.mark.parametrize("destination, config, message", [
    ({"bucket": "b"}, {"data": 1}, "give the object's key (key: reports/42.json) or a prefix"),
    ({"bucket": "b", "key": "k.json"}, {"files": ["a.txt"]}, "files are stored under a prefix"),
    ({"bucket": "b", "key": "k.json", "prefix": "p"}, {"data": 1}, "give key or prefix, not both"),
    ({"bucket": "b", "prefix": "p", "access_key_id": "x"}, {"data": 1},
     "give access_key_id and secret_access_key together"),
    ({"bucket": "b", "key": "k.json"}, {"data": 1, "filename": "x.json"}, "the key names the object"),
])
def test_s3_config_mistakes(task: Task, destination: dict[str, Any], config: dict[str, Any], message: str) -> None:
    (task.workspace / "a.txt").write_text("a")
    done = task.run({**config, "destination": {"s3": destination}})
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_without_credentials_the_default_chain_is_used(task: Task, s3_endpoint: str,
                                                       s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    spec = {"bucket": bucket, "endpoint_url": s3_endpoint, "key": "env.json"}
    done = task.run({"data": {"from": "env"}, "destination": {"s3": spec}},
                    env={"AWS_ACCESS_KEY_ID": "envkey", "AWS_SECRET_ACCESS_KEY": "envsecret"})
    assert done.returncode == 0, done.stderr
    assert json.loads(client.get_object(Bucket=bucket, Key="env.json")["Body"].read()) == {"from": "env"}
    none = task.run({"data": 1, "destination": {"s3": {**spec, "key": "none.json"}}},
                    env={"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                         "AWS_EC2_METADATA_DISABLED": "true"})
    assert none.returncode == 1
    assert "S3: no credentials: set access_key_id and secret_access_key" in none.stderr
    assert keys(client, bucket) == ["env.json"]
