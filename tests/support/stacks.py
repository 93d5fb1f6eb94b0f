"""Example values for the placeholders a user fills in a cloud stack (VPC, subnets, image
digests, subscription, secrets). They live here, in test fixtures, and never in the committed
stack files: a committed stack with a placeholder left empty fails with the one config error
that names it (tests/unit/test_committed_stacks.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32

AWS_NETWORK: dict[str, Any] = {
    "vpcId": "vpc-0123456789abcdef0",
    "subnetIds": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    "servingImage": f"000000000000.dkr.ecr.eu-west-1.amazonaws.com/shipway-serving@{DIGEST}",
}
AZURE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
AZURE_REGISTRY = "shipway-models"
KUBERNETES_IMAGES: dict[str, Any] = {
    "servingImage": f"registry.example.internal/shipway/serving@{DIGEST}",
    "mlflowImage": f"registry.example.internal/shipway/mlflow@{DIGEST}",
    "postgresImage": f"registry.example.internal/library/postgres@{DIGEST}",
    "otelCollectorImage": f"registry.example.internal/otel/opentelemetry-collector-k8s@{DIGEST}",
}
KUBERNETES_REGISTRY_STORES: dict[str, Any] = {
    "artifactStore": "s3",
    "artifactUri": "s3://shipway-ml-artifacts/mlflow",
    "trackingDatabaseUri": "postgresql://mlflow@mlflow-db.example.internal:5432/mlflow",
}
# Decrypted secret values, as the engine hands them to the program.
SECRETS = {"endpointApiKey": "0123456789abcdef0123456789abcdef", "trackingDbPassword": "not-a-real-password"}


def with_target_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` with the example placeholders of its target filled in (explicit keys win)."""
    out = dict(raw)
    cloud = out.get("cloud")
    if cloud == "aws":
        out["aws"] = {**AWS_NETWORK, **(out.get("aws") or {})}
    elif cloud == "azure":
        out["azure"] = {"subscriptionId": AZURE_SUBSCRIPTION, "registryName": AZURE_REGISTRY,
                        **(out.get("azure") or {})}
    elif cloud == "kubernetes":
        out["kubernetes"] = {**KUBERNETES_IMAGES, **(out.get("kubernetes") or {})}
        if out.get("environment") in ("test", "prod"):
            # test and prod keep the registry on object storage and a managed database (config.py)
            out["kubernetes"] = {**KUBERNETES_REGISTRY_STORES, **out["kubernetes"]}
    return out


def example_config(stack: str, raw: Mapping[str, Any]) -> Any:
    """``parse_stack_config`` of ``raw`` with its target's example placeholders filled in."""
    from shipway_core.config import parse_stack_config

    return parse_stack_config(stack, with_target_settings(raw))
