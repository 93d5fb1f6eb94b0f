"""Operational helpers for the AWS target: move packaged model versions, read an endpoint's version.

Every function takes the region (and optionally a ``boto3.Session`` for an assumed role)
explicitly; nothing falls back to ``AWS_REGION``/``AWS_DEFAULT_REGION`` or a profile default, so
a promotion can never verify or copy in the wrong region by accident.

Layout contract shared with ``components/aws/endpoint.py``: a registry version's servable
package lives at ``s3://<env artifact bucket>/models/<name>/<version>/model.tar.gz``.
Packages are immutable: re-uploading different bytes for an existing version is refused.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from shipway_core.names import model_artifact_key

_VERSIONED = re.compile(r"-v(?P<version>\d+)$")
SOURCE_META = "shipway-source"
SHA_META = "shipway-sha256"


class AwsOpsError(RuntimeError):
    """An operation could not be carried out; the message says what to fix."""


def _client(service: str, region: str, session: boto3.Session | None) -> Any:
    if not region:
        raise ValueError("region: '' is not valid; pass the stack's region explicitly")
    # The default session caches service models: a fresh Session per call costs ~0.5 s each.
    if session is None:
        return boto3.client(service, region_name=region)
    return session.client(service, region_name=region)


# ------------------------------------------------------------------------- endpoints
# Endpoint status, verification and alarms live in the AWS target adapter (shipway/targets/aws.py),
# the one path the CLI and CI use; these two helpers read what components/aws/endpoint.py writes.


def served_model_version(sm: Any, config_name: str) -> str | None:
    """The version the config's model container was told it serves (SHIPWAY_MODEL_VERSION)."""
    config = sm.describe_endpoint_config(EndpointConfigName=config_name)
    variants = config.get("ProductionVariants") or []
    if not variants:
        return None
    model = sm.describe_model(ModelName=variants[0]["ModelName"])
    return (model.get("PrimaryContainer") or {}).get("Environment", {}).get("SHIPWAY_MODEL_VERSION")


def config_version(config_name: str) -> int | None:
    """The version in a versioned endpoint config name (``shipway-prod-churn-v4`` -> 4)."""
    match = _VERSIONED.search(config_name)
    return int(match["version"]) if match else None


# ------------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class CopyResult:
    """Where a package came from and went to; ``copied`` is False when it was already there."""

    source_uri: str
    target_uri: str
    size: int
    copied: bool
    metadata: dict[str, str] = field(default_factory=dict)


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def copy_model_artifacts(
    model_name: str,
    model_version: int,
    *,
    source_bucket: str,
    target_bucket: str,
    region: str,
    target_kms_key_id: str,
    session: boto3.Session | None = None,
) -> CopyResult:
    """Copy one version's package to the next environment's bucket (cross-account promotion).

    Runs as the *target* environment's deploy role, which the source bucket and key policies
    allow to read ``models/``. Server-side copy (no bytes through the runner), re-encrypted
    with the target's key, stamped with its source so a rerun is a no-op and a conflicting
    package is refused instead of silently replacing a released version.
    """
    if source_bucket == target_bucket:
        raise ValueError(
            f"target_bucket: {target_bucket!r} is the source bucket; promote to another environment"
        )
    key = model_artifact_key(model_name, model_version)
    s3 = _client("s3", region, session)
    source = _head(s3, source_bucket, key)
    if source is None:
        raise AwsOpsError(
            f"s3://{source_bucket}/{key} does not exist; package version {model_version} of "
            f"{model_name!r} in the source environment first"
        )
    stamp = {SOURCE_META: f"s3://{source_bucket}/{key}#{source['ETag'].strip(chr(34))}"}
    if source.get("Metadata", {}).get(SHA_META):
        stamp[SHA_META] = source["Metadata"][SHA_META]
    target_uri = f"s3://{target_bucket}/{key}"
    existing = _head(s3, target_bucket, key)
    if existing is not None:
        if existing.get("Metadata", {}).get(SOURCE_META) == stamp[SOURCE_META]:
            return CopyResult(
                stamp[SOURCE_META], target_uri, existing["ContentLength"], False, existing.get("Metadata", {})
            )
        raise AwsOpsError(
            f"{target_uri} already holds a different package; versions are immutable, "
            "register a new version instead"
        )
    s3.copy(
        {"Bucket": source_bucket, "Key": key},
        target_bucket,
        key,
        ExtraArgs={
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": target_kms_key_id,
            "MetadataDirective": "REPLACE",
            "Metadata": stamp,
            "ContentType": "application/gzip",
        },
    )
    copied = s3.head_object(Bucket=target_bucket, Key=key)
    if copied["ContentLength"] != source["ContentLength"]:
        raise AwsOpsError(
            f"{target_uri} has {copied['ContentLength']} bytes, source has {source['ContentLength']}"
        )
    return CopyResult(
        stamp[SOURCE_META], target_uri, copied["ContentLength"], True, copied.get("Metadata", {})
    )


def package_model_dir(model_dir: Path) -> bytes:
    """A reproducible model.tar.gz of an MLflow model directory (sorted, zeroed owners and times)."""
    if not (model_dir / "MLmodel").is_file():
        raise ValueError(f"model_dir: {str(model_dir)!r} has no MLmodel file; pass a downloaded MLflow model")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(model_dir)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    raw = buffer.getvalue()
    # gzip stores a timestamp in bytes 4-8; zero it so equal trees give equal bytes.
    return raw[:4] + b"\x00\x00\x00\x00" + raw[8:]


def upload_model_package(
    model_dir: Path,
    model_name: str,
    model_version: int,
    *,
    bucket: str,
    region: str,
    kms_key_id: str,
    session: boto3.Session | None = None,
) -> CopyResult:
    """Package a registry version into the environment's bucket (first environment of a promotion)."""
    key = model_artifact_key(model_name, model_version)
    body = package_model_dir(model_dir)
    digest = hashlib.sha256(body).hexdigest()
    s3 = _client("s3", region, session)
    uri = f"s3://{bucket}/{key}"
    existing = _head(s3, bucket, key)
    if existing is not None:
        if existing.get("Metadata", {}).get(SHA_META) == digest:
            return CopyResult(
                str(model_dir), uri, existing["ContentLength"], False, existing.get("Metadata", {})
            )
        raise AwsOpsError(
            f"{uri} already holds a different package (sha256 "
            f"{existing.get('Metadata', {}).get(SHA_META)}); versions are immutable"
        )
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=kms_key_id,
        ContentType="application/gzip",
        Metadata={SHA_META: digest},
    )
    return CopyResult(str(model_dir), uri, len(body), True, {SHA_META: digest})
