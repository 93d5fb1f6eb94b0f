"""The model-reference classifier shared by every pinning rule."""

from __future__ import annotations

import pytest

from policies.ml.pinning import classify

ARN = "arn:aws:sagemaker:eu-west-1:000000000000"


@pytest.mark.parametrize(
    ("raw", "name", "version"),
    [
        ("models:/churn/3", "churn", 3),
        ("models:/fraud-detector/12", "fraud-detector", 12),
        ("azureml://registries/shipway/models/churn/versions/3", "churn", 3),
        ("azureml:churn:7", "churn", 7),
        (
            "/subscriptions/0/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/models/churn/"
            "versions/2",
            "churn",
            2,
        ),
        (f"{ARN}:model-package/churn/5", "churn", 5),
    ],
)
def test_exact_registry_versions_are_pins(raw: str, name: str, version: int) -> None:
    ref = classify("f", raw)
    assert (ref.problem, ref.name, ref.version) == (None, name, version)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("models:/churn/0", "not a registry model version reference"),  # versions start at 1
        ("models:/churn@champion", "a floating alias 'champion'"),
        ("models:/churn/latest", "a moving reference 'latest', not an exact version"),
        ("models:/churn/Production", "a moving reference 'Production', not an exact version"),
        ("azureml:churn@latest", "a floating alias 'latest'"),
        ("azureml://registries/shipway/models/churn/labels/latest", "a floating alias 'latest'"),
        (f"{ARN}:model-package-group/churn", "a moving reference 'churn', not an exact version"),
        ("s3://bucket/churn/model.tar.gz", "a raw artifact path that bypasses the registry"),
        ("runs:/0a1b/model", "a raw artifact path that bypasses the registry"),
        ("mlflow-artifacts:/1/abc/artifacts/model", "a raw artifact path that bypasses the registry"),
        ("wasbs://models@acct.blob.core.windows.net/churn", "a raw artifact path that bypasses the registry"),
        ("/srv/models/churn", "a raw artifact path that bypasses the registry"),
        ("churn", "not a registry model version reference"),
    ],
)
def test_everything_else_is_reported_with_its_reason(raw: str, problem: str) -> None:
    ref = classify("f", raw)
    assert (ref.problem, ref.version) == (problem, None)
