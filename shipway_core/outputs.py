"""The platform contract: what every target's stack exports, under one spelling.

Every target's ``build_platform`` returns these fields (as Pulumi outputs) and ``infra``
exports them with :func:`export_key` names; the CLI reads a stack's outputs back with
:meth:`PlatformOutputs.from_exports`, so ``shipway env status``, promotion and verification
work the same way on local, AWS, Azure and Kubernetes. Target-only coordinates (a region,
a namespace, a resource group) live in ``target`` and nowhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shipway_core.config import CLOUDS, ENVIRONMENTS
from shipway_core.names import is_model_name, is_version

# How a client reaches an endpoint's status, per target (EndpointOutputs.status):
#   local       http://127.0.0.1:<port>            the serving process (/ready, /version)
#   aws         sagemaker:<region>:<endpoint-name> DescribeEndpoint / InvokeEndpoint
#   azure       azureml:<resource-group>/<workspace>/<endpoint-name>
#   kubernetes  kubernetes:<namespace>/<deployment>
STATUS_SCHEMES = {"local": "http://", "aws": "sagemaker:", "azure": "azureml:", "kubernetes": "kubernetes:"}


class OutputsError(ValueError):
    """A stack's outputs do not follow the platform contract (or the stack is not deployed)."""


def export_key(field_name: str) -> str:
    """The exported (camelCase) spelling of a contract field: ``tracking_uri`` -> ``trackingUri``."""
    head, *rest = field_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass(frozen=True)
class EndpointOutputs:
    """One served model in one environment."""

    url: str
    """Where scoring requests go (the target's invocation URL)."""
    version: int
    """The exact registry version the stack pins (what the endpoint is deployed with)."""
    status: str
    """How to reach the endpoint's status; scheme per target in STATUS_SCHEMES."""
    api_key_ref: str | None = None
    """Where the endpoint API key lives (file path, secret ARN, Key Vault secret id, Secret name)."""
    request_log: str | None = None
    """Where the request log (inputs + predictions) lands, when the CLI can read it."""


@dataclass(frozen=True)
class ObservabilityOutputs:
    """Where the environment's signals are read."""

    metrics_url: str | None = None
    """Prometheus-compatible query endpoint."""
    alerts_url: str | None = None
    """Alert manager / alert topic / action group."""
    traces_url: str | None = None
    """Trace search (Jaeger query, X-Ray, Application Insights)."""
    dashboards_url: str | None = None
    """Grafana (or the cloud console) where the generated dashboards live."""
    log_store_url: str | None = None
    """The searchable log store's base URL (VictoriaLogs on local: its web UI is ``<url>/select/vmui``)."""
    log_query_url: str | None = None
    """The log store's query API (VictoriaLogs ``<url>/select/logsql/query``), what ``shipway logs`` calls."""


@dataclass(frozen=True)
class PlatformOutputs:
    """Everything a stack exports; the same keys on every target."""

    cloud: str
    environment: str
    tracking_uri: str
    """MLflow tracking server (http(s) URI, SageMaker MLflow ARN or azureml:// URI)."""
    registry_uri: str
    """The MLflow model registry the stack's pins refer to."""
    endpoints: Mapping[str, EndpointOutputs] = field(default_factory=dict)
    observability: ObservabilityOutputs = field(default_factory=ObservabilityOutputs)
    target: Mapping[str, Any] = field(default_factory=dict)
    """Target-only coordinates the CLI needs (region, namespace, resource group, ...)."""

    @classmethod
    def from_exports(cls, exports: Mapping[str, Any], *, stack: str = "?") -> PlatformOutputs:
        """Read a stack's outputs; raise :class:`OutputsError` naming every missing/bad key."""
        if not exports:
            raise OutputsError(f"stack '{stack}' has no outputs: it is not deployed (run `pulumi up` on it)")
        problems: list[str] = []
        for name in ("cloud", "environment", "tracking_uri", "registry_uri"):
            if not isinstance(exports.get(export_key(name)), str) or not exports.get(export_key(name)):
                problems.append(f"{export_key(name)}: {exports.get(export_key(name))!r} (expected a non-empty string)")
        cloud = exports.get("cloud")
        if isinstance(cloud, str) and cloud not in CLOUDS:
            problems.append(f"cloud: {cloud!r} (expected one of {', '.join(CLOUDS)})")
        environment = exports.get("environment")
        if isinstance(environment, str) and environment not in ENVIRONMENTS:
            problems.append(f"environment: {environment!r} (expected one of {', '.join(ENVIRONMENTS)})")
        endpoints = _endpoints(exports.get("endpoints"), cloud if isinstance(cloud, str) else "", problems)
        observability = _section(ObservabilityOutputs, exports.get("observability"), "observability", problems)
        target = exports.get("target", {})
        if not isinstance(target, Mapping):
            problems.append(f"target: {target!r} (expected a mapping)")
            target = {}
        if problems:
            raise OutputsError(
                f"stack '{stack}' outputs do not follow the platform contract "
                f"(redeploy it with this version of Shipway):\n" + "\n".join(f"  - {p}" for p in problems))
        return cls(cloud=str(cloud), environment=str(environment),
                   tracking_uri=str(exports["trackingUri"]), registry_uri=str(exports["registryUri"]),
                   endpoints=endpoints, observability=observability, target=dict(target))

    def to_exports(self) -> dict[str, Any]:
        """The exported form (camelCase keys, nested mappings), as ``infra`` exports it."""
        return {
            "cloud": self.cloud,
            "environment": self.environment,
            "trackingUri": self.tracking_uri,
            "registryUri": self.registry_uri,
            "endpoints": {m: _camel(dataclasses.asdict(e)) for m, e in self.endpoints.items()},
            "observability": _camel(dataclasses.asdict(self.observability)),
            "target": dict(self.target),
        }


def top_level_keys() -> tuple[str, ...]:
    """Exported top-level keys, in contract order."""
    return tuple(export_key(f.name) for f in dataclasses.fields(PlatformOutputs))


def section_keys(cls: type) -> tuple[str, ...]:
    """Exported keys of a nested section (EndpointOutputs, ObservabilityOutputs)."""
    return tuple(export_key(f.name) for f in dataclasses.fields(cls))


def _camel(values: Mapping[str, Any]) -> dict[str, Any]:
    return {export_key(k): v for k, v in values.items()}


def _section(cls: type, raw: Any, where: str, problems: list[str]) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: {raw!r} (expected a mapping)")
        return cls()
    known = {export_key(f.name): f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        problems.append(f"{where}: unknown keys {unknown} (expected {', '.join(known)})")
    values = {known[k]: v for k, v in raw.items() if k in known}
    for key, attr in known.items():
        value = values.get(attr)
        if value is not None and not isinstance(value, str):
            problems.append(f"{where}.{key}: {value!r} (expected a string or null)")
            values[attr] = None
    return cls(**values)


def _endpoints(raw: Any, cloud: str, problems: list[str]) -> dict[str, EndpointOutputs]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"endpoints: {raw!r} (expected a mapping of model -> endpoint)")
        return {}
    out: dict[str, EndpointOutputs] = {}
    for model, spec in raw.items():
        where = f"endpoints.{model}"
        if not is_model_name(model):
            problems.append(f"{where}: not a model name")
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: {spec!r} (expected a mapping with url, version, status)")
            continue
        before = len(problems)
        for key in ("url", "status"):
            if not isinstance(spec.get(key), str) or not spec.get(key):
                problems.append(f"{where}.{key}: {spec.get(key)!r} (expected a non-empty string)")
        version = spec.get("version")
        # Stack outputs travel as JSON/protobuf numbers: an integral float (3.0) is version 3.
        if isinstance(version, float) and version.is_integer():
            version = int(version)
        if not is_version(version):
            problems.append(f"{where}.version: {spec.get('version')!r} (expected a positive integer)")
        scheme = STATUS_SCHEMES.get(cloud)
        status = spec.get("status")
        if scheme and isinstance(status, str) and status and not status.startswith(scheme):
            problems.append(f"{where}.status: {status!r} (a {cloud} status handle starts with {scheme!r})")
        for key in ("apiKeyRef", "requestLog"):
            if spec.get(key) is not None and not isinstance(spec.get(key), str):
                problems.append(f"{where}.{key}: {spec.get(key)!r} (expected a string or null)")
        unknown = sorted(set(spec) - set(section_keys(EndpointOutputs)))
        if unknown:
            problems.append(f"{where}: unknown keys {unknown}")
        if len(problems) == before and isinstance(version, int):
            out[model] = EndpointOutputs(url=spec["url"], version=version, status=spec["status"],
                                         api_key_ref=spec.get("apiKeyRef"), request_log=spec.get("requestLog"))
    return out
