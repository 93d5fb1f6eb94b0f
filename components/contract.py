"""The platform contract on the Pulumi side: what every target's ``build_platform`` returns.

``PlatformExports`` mirrors :class:`shipway_core.outputs.PlatformOutputs` field for field,
holding Pulumi inputs instead of plain values; ``exports()`` spells the keys the way the core
reads them back. The capability protocols name the outputs each target's components must
provide; ``build_platform`` annotates its components with them, so mypy rejects a target
whose component lacks one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi

from shipway_core.outputs import export_key


class TrackingCapability(Protocol):
    """An MLflow tracking server + registry."""

    tracking_uri: pulumi.Output[str]


class EndpointCapability(Protocol):
    """One model served at its pinned version."""

    endpoint_url: pulumi.Output[str]
    model_version: pulumi.Output[int]


def tracking_uri_of(tracking: TrackingCapability) -> pulumi.Output[str]:
    """The tracking server's URI; typed on the protocol so mypy checks every target's component."""
    return tracking.tracking_uri


@dataclass
class EndpointExports:
    """Mirrors :class:`shipway_core.outputs.EndpointOutputs`."""

    url: pulumi.Input[str]
    version: pulumi.Input[int]
    status: pulumi.Input[str]
    api_key_ref: pulumi.Input[str] | None = None
    request_log: pulumi.Input[str] | None = None

    @classmethod
    def of(cls, endpoint: EndpointCapability, status: pulumi.Input[str],
           api_key_ref: pulumi.Input[str] | None = None,
           request_log: pulumi.Input[str] | None = None) -> EndpointExports:
        """From a target's endpoint component and its status handle (STATUS_SCHEMES)."""
        return cls(url=endpoint.endpoint_url, version=endpoint.model_version, status=status,
                   api_key_ref=api_key_ref, request_log=request_log)


@dataclass
class ObservabilityExports:
    """Mirrors :class:`shipway_core.outputs.ObservabilityOutputs`."""

    metrics_url: pulumi.Input[str | None] | None = None
    alerts_url: pulumi.Input[str | None] | None = None
    traces_url: pulumi.Input[str | None] | None = None
    dashboards_url: pulumi.Input[str | None] | None = None
    log_store_url: pulumi.Input[str | None] | None = None
    log_query_url: pulumi.Input[str | None] | None = None


@dataclass
class PlatformExports:
    """Mirrors :class:`shipway_core.outputs.PlatformOutputs`; every target returns one."""

    cloud: str
    environment: str
    tracking_uri: pulumi.Input[str]
    registry_uri: pulumi.Input[str]
    endpoints: Mapping[str, EndpointExports] = field(default_factory=dict)
    observability: ObservabilityExports = field(default_factory=ObservabilityExports)
    target: Mapping[str, pulumi.Input[Any]] = field(default_factory=dict)

    def exports(self) -> dict[str, pulumi.Input[Any]]:
        """Stack outputs, keyed as ``PlatformOutputs.from_exports`` reads them."""
        return {
            "cloud": self.cloud,
            "environment": self.environment,
            "trackingUri": self.tracking_uri,
            "registryUri": self.registry_uri,
            "endpoints": {m: _section(e) for m, e in sorted(self.endpoints.items())},
            "observability": _section(self.observability),
            "target": dict(self.target),
        }


def _section(obj: Any) -> dict[str, Any]:
    return {export_key(name): value for name, value in vars(obj).items()}
