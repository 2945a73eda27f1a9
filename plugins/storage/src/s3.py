"""The S3 destination: objects in a bucket (AWS, or an S3-compatible server at `endpoint_url`)."""

from __future__ import annotations

import mimetypes
from typing import Any, Mapping

from plugins.sdk.runtime import PluginError

from .common import SourceFile


def store(spec: Mapping[str, Any], *, data: bytes | None = None, filename: str | None = None,
          content_type: str | None = None, files: list[SourceFile] | None = None) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise PluginError("destination s3: give {bucket, key or prefix, ...}")
    bucket = spec.get("bucket")
    if not isinstance(bucket, str) or not bucket:
        raise PluginError("destination s3: give the bucket's name (bucket: NAME)")
    key, prefix = spec.get("key"), spec.get("prefix")
    if key is not None and prefix is not None:
        raise PluginError("destination s3: give key or prefix, not both")
    prefix = (prefix or "").strip("/") if isinstance(prefix, str) or prefix is None else None
    if prefix is None:
        raise PluginError("destination s3: prefix must be a string, like backups/42")
    at = f"{prefix}/" if prefix else ""

    if files is None:
        assert data is not None and filename is not None
        if key is None and spec.get("prefix") is None:
            raise PluginError("destination s3: give the object's key (key: reports/42.json) or a prefix "
                              "(prefix: reports/42, stored as prefix/FILENAME)")
        if key is not None and (not isinstance(key, str) or not key.strip("/")):
            raise PluginError(f"destination s3: key '{key}' is not an object key, like reports/42.json")
        name = key.lstrip("/") if isinstance(key, str) else at + filename
        uploads: list[tuple[str, Any, str]] = [(name, data, content_type or "application/octet-stream")]
        shown = f"s3://{bucket}/{name}"
    else:
        if key is not None:
            raise PluginError("destination s3: files are stored under a prefix (prefix: backups/42), not a key")
        uploads = [(at + f.relative, f, mimetypes.guess_type(f.relative)[0] or "application/octet-stream")
                   for f in files]
        shown = f"s3://{bucket}/{prefix}"

    client = _client(spec)
    endpoint = spec.get("endpoint_url") or "AWS S3"
    written: list[str] = []
    for name, body, ctype in uploads:
        try:
            if isinstance(body, SourceFile):
                with body.path.open("rb") as stream:
                    client.put_object(Bucket=bucket, Key=name, Body=stream, ContentType=ctype)
                size = body.path.stat().st_size
            else:
                client.put_object(Bucket=bucket, Key=name, Body=body, ContentType=ctype)
                size = len(body)
        except Exception as e:  # botocore's errors, said plainly
            after = f" (already uploaded: {', '.join(written)})" if written else ""
            raise PluginError(_message(e, bucket, name, endpoint) + after) from None
        print(f"uploaded s3://{bucket}/{name} ({size} bytes)", flush=True)
        written.append(name)
    what = "object" if len(written) == 1 else "objects"
    print(f"stored {len(written)} {what} in {shown} ({endpoint})", flush=True)
    return {"destination": shown, "kind": "s3", "written": written}


def _client(spec: Mapping[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    key_id, secret = spec.get("access_key_id"), spec.get("secret_access_key")
    if bool(key_id) != bool(secret):
        raise PluginError("destination s3: give access_key_id and secret_access_key together (or neither, "
                          "for boto3's default credentials)")
    endpoint = spec.get("endpoint_url")
    options: dict[str, Any] = {"connect_timeout": 10, "read_timeout": 120,
                               "retries": {"max_attempts": 3, "mode": "standard"}}
    if endpoint:
        options["s3"] = {"addressing_style": "path"}  # what S3-compatible servers (MinIO, Ceph...) take
    try:
        return boto3.client("s3", endpoint_url=endpoint or None, region_name=spec.get("region") or "us-east-1",
                            aws_access_key_id=key_id or None, aws_secret_access_key=secret or None,
                            config=Config(**options))
    except ValueError as e:  # a malformed endpoint_url
        raise PluginError(f"destination s3: {e}") from None


def _message(e: Exception, bucket: str, key: str, endpoint: str) -> str:
    from botocore import exceptions as bx

    if isinstance(e, bx.ClientError):
        error = e.response.get("Error", {})
        code, text = str(error.get("Code", "")), str(error.get("Message", "")).strip()
        known = {
            "NoSuchBucket": f"bucket '{bucket}' does not exist at {endpoint}; create it, or fix the bucket's name",
            "AccessDenied": f"access denied writing {key} to bucket '{bucket}': the credentials may not write there",
            "AllAccessDisabled": f"access to bucket '{bucket}' is disabled",
            "InvalidAccessKeyId": f"{endpoint} does not know the access key id; check access_key_id",
            "SignatureDoesNotMatch": f"{endpoint} refused the signature: secret_access_key does not match "
                                     "access_key_id",
            "PermanentRedirect": f"bucket '{bucket}' is in another region; set region",
            "AuthorizationHeaderMalformed": f"bucket '{bucket}' is in another region; set region",
            "InvalidBucketName": f"'{bucket}' is not a valid bucket name",
        }
        said = known.get(code, f"writing {key} to bucket '{bucket}' failed")
        return f"S3 {code or 'error'}: {said}" + (f" (the server said: {text})" if text else "")
    if isinstance(e, bx.NoCredentialsError):
        return ("S3: no credentials: set access_key_id and secret_access_key (from the repository's secrets, "
                "like ${secrets.S3_ACCESS_KEY_ID}), or give the runner boto3's default credentials")
    if isinstance(e, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return f"S3: could not reach {endpoint}: {e}"
    if isinstance(e, bx.ParamValidationError):
        return f"S3: {' '.join(str(e).split())}"
    if isinstance(e, bx.BotoCoreError):
        return f"S3: {e}"
    if isinstance(e, OSError):
        return f"S3: could not read {key}: {e.strerror or e}"
    raise e
