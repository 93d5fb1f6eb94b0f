"""What every target's components share: the per-capability Args and their validators.

Each target (``components/aws``, ``azure``, ``kubernetes``, ``local``) builds the same
capabilities from the same Args dataclasses, so a stack moves between targets by changing
``shipway:cloud`` and nothing else. Target-only knobs live in the target's own ``*Settings``
in ``shipway_core/config.py`` and are passed separately, never added here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

# Re-exported: the components validate pins with the one rule the stack parser uses.
from shipway_core.config import SloSettings
from shipway_core.names import validate_model_pin as validate_model_pin
from shipway_core.observability.drift import DEFAULT_THRESHOLDS as DEFAULT_DRIFT_THRESHOLDS

REQUIRED_TAGS = ("owner", "cost-center", "environment", "data-classification")


def validate_tags(tags: Mapping[str, str]) -> None:
    """Compliance tags must all be present and non-empty."""
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    if missing:
        raise ValueError(
            f"tags: missing {', '.join(missing)}; every Shipway resource carries "
            f"{', '.join(REQUIRED_TAGS)}"
        )


def reject_unsupported(target: str, field: str, value: object, why: str) -> None:
    """An Arg a target cannot honour is an error naming it, never silently ignored."""
    if value is not None:
        raise ValueError(f"{field}: {value!r} is not supported on the {target} target; {why}")


def validate_instance_count(environment: str, instance_count: int) -> None:
    """Prod endpoints run at least two instances so one can fail or roll without an outage."""
    if isinstance(instance_count, bool) or not isinstance(instance_count, int) or instance_count < 1:
        raise ValueError(f"instance_count: {instance_count!r} is not valid; use a positive integer")
    if environment == "prod" and instance_count < 2:
        raise ValueError(
            f"instance_count: {instance_count} is not valid in prod; use at least 2 for availability"
        )


def validate_drift_thresholds(thresholds: Mapping[str, float]) -> None:
    """Every drift threshold positive; distances and rates at most 1 (the stack parser checks the
    same on slo.drift*, this catches args built in code)."""
    for statistic, value in thresholds.items():
        upper = None if statistic == "wasserstein" else 1.0
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or (
                upper is not None and value > upper):
            raise ValueError(
                f"drift_{statistic}: {value!r} is not valid; use a positive threshold"
                + (f" no larger than {upper:g}" if upper is not None else "")
                + f" (default {DEFAULT_DRIFT_THRESHOLDS[statistic]:g}, set slo.drift* in the stack)")


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
    # The drift rollback alarm's effect-size thresholds (slo.driftWasserstein / driftJensenShannon /
    # driftNullRate; shipway_core.observability.drift decides with them).
    drift_wasserstein: float = DEFAULT_DRIFT_THRESHOLDS["wasserstein"]
    drift_jensen_shannon: float = DEFAULT_DRIFT_THRESHOLDS["jensen_shannon"]
    drift_null_rate: float = DEFAULT_DRIFT_THRESHOLDS["null_rate"]
    # Serve POST /explain (per-feature attributions) beside /invocations; off costs nothing.
    explain: bool = False

    def drift_thresholds(self) -> dict[str, float]:
        """Threshold per drift statistic, as shipway_core.observability.drift.effect_thresholds gives them."""
        return {"wasserstein": self.drift_wasserstein, "jensen_shannon": self.drift_jensen_shannon,
                "null_rate": self.drift_null_rate}


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
    latency_objective: float = 0.99
    max_error_rate: float = 0.01
    drift_psi: float = 0.2
    # The drift alert's effect-size thresholds (slo.driftWasserstein / driftJensenShannon / driftNullRate)
    drift_wasserstein: float = DEFAULT_DRIFT_THRESHOLDS["wasserstein"]
    drift_jensen_shannon: float = DEFAULT_DRIFT_THRESHOLDS["jensen_shannon"]
    drift_null_rate: float = DEFAULT_DRIFT_THRESHOLDS["null_rate"]
    min_requests: int = 100  # low-traffic guard of the burn-rate alerts (slo.minRequests)
    # Days the environment's logs are kept; None: the target's default. Targets that keep no
    # logs themselves (kubernetes, local) reject a value instead of ignoring it.
    log_retention_days: int | None = None

    def slo(self) -> SloSettings:
        """The stack's SLOs as the shared rule generators take them (one place, every target)."""
        return SloSettings(availability=self.availability, latency_p99_ms=self.latency_p99_ms,
                           latency_objective=self.latency_objective, max_error_rate=self.max_error_rate,
                           drift_psi=self.drift_psi, drift_wasserstein=self.drift_wasserstein,
                           drift_jensen_shannon=self.drift_jensen_shannon, drift_null_rate=self.drift_null_rate,
                           min_requests=self.min_requests)
