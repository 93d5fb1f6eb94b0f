"""shipway.aws_ops against moto: served-version helpers and cross-account artifact promotion
(endpoint status and verification: the AWS target adapter, tests/unit/promotion/test_aws_flow.py)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from shipway.aws_ops import (
    SHA_META,
    SOURCE_META,
    AwsOpsError,
    config_version,
    copy_model_artifacts,
    package_model_dir,
    served_model_version,
    upload_model_package,
)
from shipway_core.names import model_artifact_key

ACCOUNT = "000000000000"
REGION = "eu-west-1"
OTHER_REGION = "ap-southeast-2"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/shipway-prod-churn-role"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shipway-serving:1.4.0"


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch):
    """Fake credentials and account; the ambient default region deliberately points elsewhere."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", OTHER_REGION)
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    with mock_aws():
        yield


def test_artifact_key_layout_and_validation():
    assert model_artifact_key("churn", 4) == "models/churn/4/model.tar.gz"
    with pytest.raises(ValueError) as error:
        model_artifact_key("churn", True)
    assert str(error.value) == (
        "model_version: True is not valid; pin an exact registry version (a positive integer), "
        "never 'latest' or an alias"
    )
    with pytest.raises(ValueError) as error:
        model_artifact_key("Churn", 1)
    assert str(error.value) == (
        "model_name: 'Churn' is not valid; use lowercase letters, digits and '-', 2-63 chars, starting with a letter"
    )


# ------------------------------------------------------------------------ endpoints


def deploy(version: int, *, model_version_env: str | None = None, region: str = REGION) -> None:
    """What the InferenceEndpoint component creates, as SageMaker API calls."""
    sm = boto3.client("sagemaker", region_name=region)
    versioned = f"shipway-prod-churn-v{version}"
    sm.create_model(
        ModelName=versioned,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": f"s3://bucket/{model_artifact_key('churn', version)}",
            "Environment": {"SHIPWAY_MODEL_VERSION": model_version_env or str(version)},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=versioned,
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": versioned,
                "InitialInstanceCount": 2,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    # moto has no UpdateEndpoint; each test deploys the endpoint once, at the version it checks.
    sm.create_endpoint(EndpointName="shipway-prod-churn", EndpointConfigName=versioned)


def test_the_served_version_is_what_the_container_was_told_and_the_config_name_says():
    deploy(3, model_version_env="2")
    sm = boto3.client("sagemaker", region_name=REGION)
    assert served_model_version(sm, "shipway-prod-churn-v3") == "2"
    assert (config_version("shipway-prod-churn-v3"), config_version("hand-made-config")) == (3, None)


# ------------------------------------------------------------------------ artifacts


def make_model_dir(root: Path, content: str = "weights-v4") -> Path:
    model = root / "model"
    (model / "data").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {python_function: {loader_module: mlflow.sklearn}}\n")
    (model / "data" / "model.pkl").write_text(content)
    return model


def buckets_and_keys() -> tuple[str, str]:
    s3 = boto3.client("s3", region_name=REGION)
    kms = boto3.client("kms", region_name=REGION)
    for bucket in ("shipway-dev-artifacts-x", "shipway-prod-artifacts-y"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return kms.create_key()["KeyMetadata"]["Arn"], kms.create_key()["KeyMetadata"]["Arn"]


def test_package_is_reproducible_and_contains_the_model(tmp_path):
    model = make_model_dir(tmp_path)
    first, second = package_model_dir(model), package_model_dir(model)
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["MLmodel", "data/model.pkl"]
        assert {m.mtime for m in tar.getmembers()} == {0}
    with pytest.raises(ValueError) as error:
        package_model_dir(tmp_path)
    assert (
        str(error.value)
        == f"model_dir: {str(tmp_path)!r} has no MLmodel file; pass a downloaded MLflow model"
    )


def test_upload_then_promote_across_environments(tmp_path):
    dev_key, prod_key = buckets_and_keys()
    uploaded = upload_model_package(
        make_model_dir(tmp_path),
        "churn",
        4,
        bucket="shipway-dev-artifacts-x",
        region=REGION,
        kms_key_id=dev_key,
    )
    assert (
        uploaded.copied and uploaded.target_uri == "s3://shipway-dev-artifacts-x/models/churn/4/model.tar.gz"
    )
    copied = copy_model_artifacts(
        "churn",
        4,
        source_bucket="shipway-dev-artifacts-x",
        target_bucket="shipway-prod-artifacts-y",
        region=REGION,
        target_kms_key_id=prod_key,
    )
    assert copied.copied
    assert copied.target_uri == "s3://shipway-prod-artifacts-y/models/churn/4/model.tar.gz"
    s3 = boto3.client("s3", region_name=REGION)
    head = s3.head_object(Bucket="shipway-prod-artifacts-y", Key="models/churn/4/model.tar.gz")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", prod_key)
    assert head["Metadata"][SOURCE_META].startswith(
        "s3://shipway-dev-artifacts-x/models/churn/4/model.tar.gz#"
    )
    assert head["Metadata"][SHA_META] == uploaded.metadata[SHA_META]
    body = s3.get_object(Bucket="shipway-prod-artifacts-y", Key="models/churn/4/model.tar.gz")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == uploaded.metadata[SHA_META]


def test_promotion_is_idempotent_and_never_overwrites_a_released_version(tmp_path):
    dev_key, prod_key = buckets_and_keys()
    upload_model_package(
        make_model_dir(tmp_path),
        "churn",
        4,
        bucket="shipway-dev-artifacts-x",
        region=REGION,
        kms_key_id=dev_key,
    )
    kwargs = {
        "source_bucket": "shipway-dev-artifacts-x",
        "target_bucket": "shipway-prod-artifacts-y",
        "region": REGION,
        "target_kms_key_id": prod_key,
    }
    assert copy_model_artifacts("churn", 4, **kwargs).copied is True
    assert copy_model_artifacts("churn", 4, **kwargs).copied is False
    boto3.client("s3", region_name=REGION).put_object(
        Bucket="shipway-prod-artifacts-y", Key="models/churn/5/model.tar.gz", Body=b"something else"
    )
    upload_model_package(
        make_model_dir(tmp_path / "v5", "weights-v5"),
        "churn",
        5,
        bucket="shipway-dev-artifacts-x",
        region=REGION,
        kms_key_id=dev_key,
    )
    with pytest.raises(AwsOpsError) as error:
        copy_model_artifacts("churn", 5, **kwargs)
    assert str(error.value) == (
        "s3://shipway-prod-artifacts-y/models/churn/5/model.tar.gz already holds a different "
        "package; versions are immutable, register a new version instead"
    )


def test_reupload_with_different_bytes_is_refused(tmp_path):
    dev_key, _ = buckets_and_keys()
    upload_model_package(
        make_model_dir(tmp_path / "a"),
        "churn",
        4,
        bucket="shipway-dev-artifacts-x",
        region=REGION,
        kms_key_id=dev_key,
    )
    again = upload_model_package(
        make_model_dir(tmp_path / "b"),
        "churn",
        4,
        bucket="shipway-dev-artifacts-x",
        region=REGION,
        kms_key_id=dev_key,
    )
    assert again.copied is False  # same bytes: a no-op
    with pytest.raises(AwsOpsError) as error:
        upload_model_package(
            make_model_dir(tmp_path / "c", "tampered"),
            "churn",
            4,
            bucket="shipway-dev-artifacts-x",
            region=REGION,
            kms_key_id=dev_key,
        )
    assert str(error.value).startswith(
        "s3://shipway-dev-artifacts-x/models/churn/4/model.tar.gz already holds a different package (sha256 "
    )


def test_missing_source_and_same_bucket_are_errors():
    _, prod_key = buckets_and_keys()
    with pytest.raises(AwsOpsError) as error:
        copy_model_artifacts(
            "churn",
            9,
            source_bucket="shipway-dev-artifacts-x",
            target_bucket="shipway-prod-artifacts-y",
            region=REGION,
            target_kms_key_id=prod_key,
        )
    assert str(error.value) == (
        "s3://shipway-dev-artifacts-x/models/churn/9/model.tar.gz does not exist; package "
        "version 9 of 'churn' in the source environment first"
    )
    with pytest.raises(ValueError) as same:
        copy_model_artifacts(
            "churn", 9, source_bucket="b", target_bucket="b", region=REGION, target_kms_key_id=prod_key
        )
    assert str(same.value) == "target_bucket: 'b' is the source bucket; promote to another environment"
