"""What every target's components share: the per-capability Args and their validators.

Each target (``components/aws``, ``azure``, ``kubernetes``, ``local``) builds the same
capabilities from the same Args dataclasses, so a stack moves between targets by changing
``shipway:cloud`` and nothing else. Target-only knobs live in the target's own ``*Settings``
in ``infra/config.py`` and are passed separately, never added here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

REQUIRED_TAGS = ("owner", "cost-center", "environment", "data-classification")
_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")


def validate_model_pin(model_name: str, model_version: int) -> None:
    """A served model is an exact registry version: no aliases, no artifact paths."""
    if not isinstance(model_name, str) or not _NAME.match(model_name):
        raise ValueError(
            f"model_name: {model_name!r} is not valid; use lowercase letters, digits and '-', "
            "2-63 chars, starting with a letter"
        )
    if isinstance(model_version, bool) or not isinstance(model_version, int) or model_version < 1:
        raise ValueError(
            f"model_version: {model_version!r} is not valid; pin an exact registry version "
            "(a positive integer), never 'latest' or an alias"
        )


def validate_tags(tags: Mapping[str, str]) -> None:
    """Compliance tags must all be present and non-empty."""
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    if missing:
        raise ValueError(
            f"tags: missing {', '.join(missing)}; every Shipway resource carries "
            f"{', '.join(REQUIRED_TAGS)}"
        )


def validate_instance_count(environment: str, instance_count: int) -> None:
    """Prod endpoints run at least two instances so one can fail or roll without an outage."""
    if isinstance(instance_count, bool) or not isinstance(instance_count, int) or instance_count < 1:
        raise ValueError(f"instance_count: {instance_count!r} is not valid; use a positive integer")
    if environment == "prod" and instance_count < 2:
        raise ValueError(
            f"instance_count: {instance_count} is not valid in prod; use at least 2 for availability"
        )


@dataclass
class TrackingServerArgs:
    """An MLflow tracking server + model registry for one environment."""

    environment: str
    tags: Mapping[str, str]
    # Retain registry data on `pulumi destroy` (always on in prod).
    protect: bool = False


@dataclass
class InferenceEndpointArgs:
    """One model served at one exact registry version."""

    environment: str
    model_name: str
    model_version: int
    tracking_uri: pulumi.Input[str]
    tags: Mapping[str, str]
    instance_count: int = 1
    # Secret (e.g. the endpoint API key); never written to plain state or process args.
    api_key: pulumi.Input[str] | None = None
    # OTLP/HTTP traces endpoint; None turns trace export off.
    otlp_endpoint: pulumi.Input[str] | None = None
    latency_p99_ms: float = 250.0
    max_error_rate: float = 0.01
    drift_psi: float = 0.2


@dataclass
class SecretsArgs:
    """Named secret values for one environment, read by the components that need them."""

    environment: str
    tags: Mapping[str, str]
    values: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


@dataclass
class ObservabilityArgs:
    """Metrics, alert rules, dashboards and trace collection for one environment."""

    environment: str
    tags: Mapping[str, str]
    endpoints: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)  # model -> scrape target
    availability: float = 0.995
    latency_p99_ms: float = 250.0
    drift_psi: float = 0.2
    log_retention_days: int = 365
