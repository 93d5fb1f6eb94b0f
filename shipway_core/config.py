"""Typed stack configuration: the one place a stack file is parsed and validated.

Every key under the ``shipway:`` namespace of ``stacks/Pulumi.<env>.yaml`` is read here
into frozen dataclasses. A bad stack file raises a single :class:`StackConfigError`
listing *every* bad key, its value and what is allowed, so a reviewer fixes the file in
one pass instead of one `pulumi up` per typo.

Nothing is read from the ambient environment: a value is in the stack file or it is a
documented default.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipway_core.names import MODEL_NAME_RULE, is_model_name

NAMESPACE = "shipway"

CLOUDS = ("local", "aws", "azure", "kubernetes")
# Promotion order: a model reaches an environment from the one before it.
ENVIRONMENTS = ("local", "dev", "test", "prod")
DATA_CLASSIFICATIONS = ("public", "internal", "confidential", "restricted")
TRACKING_MODES = ("managed", "self-hosted")

_TAG_VALUE = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,256}$")


class StackConfigError(ValueError):
    """A stack file has one or more bad keys; ``problems`` lists each of them."""

    def __init__(self, stack: str, problems: list[str]):
        self.stack = stack
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"stack '{stack}' has {len(problems)} invalid config "
            f"key{'s' if len(problems) != 1 else ''} (fix them in stacks/Pulumi.{stack}.yaml):\n{lines}"
        )


@dataclass(frozen=True)
class ModelPin:
    """One served model, pinned to an exact registry version."""

    name: str
    version: int
    instances: int = 1
    # local only: the endpoint's port, fixed for the model's life in the stack (promotion
    # writes it when it adds a model), so adding or removing another model never moves it.
    port: int | None = None
    # Opt-in explainability: the endpoint serves POST /explain (per-feature attributions).
    explain: bool = False


@dataclass(frozen=True)
class LocalSettings:
    """Where the `local` target runs its processes (always on 127.0.0.1)."""

    tracking_port: int = 5000
    endpoint_base_port: int = 8100
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    # Jaeger's own OTLP/HTTP receiver: only the collector sends to it (4318 is the collector's).
    jaeger_otlp_port: int = 4320
    jaeger_query_port: int = 16686
    # Jaeger's own metrics (/metrics, scraped as job "jaeger"): Jaeger v2 is an OpenTelemetry
    # Collector, whose default metrics port 8888 is the hub collector's; 14269 is Jaeger's admin port.
    jaeger_metrics_port: int = 14269
    # The OpenTelemetry Collector (the telemetry hub): OTLP in, its own metrics for Prometheus.
    otlp_grpc_port: int = 4317
    otlp_http_port: int = 4318
    collector_metrics_port: int = 8888
    # VictoriaLogs, the searchable log store (LogsQL at /select/logsql/query).
    log_store_port: int = 9428
    log_retention: str = "7d"
    alert_sink_port: int = 9095  # the local Alertmanager receiver (`shipway alerts` reads what it records)
    backend_store_uri: str | None = None  # None: sqlite file under the state dir
    data_dir: str = ".shipway/local"


@dataclass(frozen=True)
class GateSettings:
    """Quality gates a version must pass to be pinned in this environment."""

    min_metrics: Mapping[str, float] = field(default_factory=lambda: {"accuracy": 0.8})
    max_regression: float = 0.01  # golden-set accuracy may drop at most this much
    max_null_rate_delta: float = 0.05
    max_psi: float = 0.25  # data consistency: golden data vs training baseline
    # Non-functional checks (`shipway test load|resilience|security`) whose passing evidence a
    # version must carry (registry tags shipway.nft.<kind>) before it is pinned here.
    require_nonfunctional: tuple[str, ...] = ()


# Request-duration histogram boundaries (ms) the serving app exports. The latency SLI counts requests
# under the threshold from the bucket whose ``le`` is the threshold, so a threshold must be one of these.
LATENCY_BUCKETS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 75, 100, 120, 150, 180, 200, 250, 300, 400, 500, 750,
                      1000, 1500, 2000, 2500, 5000, 10000)


@dataclass(frozen=True)
class SloSettings:
    """Service level objectives; alert rules and verification limits derive from them.

    Latency is an SLO with its own error budget: ``latency_objective`` of requests on the prediction
    route must finish within ``latency_p99_ms`` (the threshold; with the default 0.99 objective it is
    the p99 bound, hence the name).
    """

    availability: float = 0.995
    latency_p99_ms: float = 250.0
    latency_objective: float = 0.99
    max_error_rate: float = 0.01
    drift_psi: float = 0.2
    freshness_hours: float = 24.0
    # Drift decisions on effect size (shipway.drift.report.DriftThresholds): normalised
    # Wasserstein distance (numeric, in training sd), Jensen-Shannon distance (categorical),
    # null-rate change.
    drift_wasserstein: float = 0.1
    drift_jensen_shannon: float = 0.06
    drift_null_rate: float = 0.03
    # Low-traffic guard of the burn-rate alerts: a tier fires only when its long window holds at
    # least this many /invocations requests (0 turns the guard off). See docs/slos.md, "Low traffic".
    min_requests: int = 100


@dataclass(frozen=True)
class AwsSettings:
    """AWS target settings (region comes from ``shipway:region``)."""

    tracking_mode: str = "managed"
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    serving_image: str | None = None
    github_repository: str | None = None  # owner/name allowed to deploy via OIDC
    log_retention_days: int = 365
    # Self-hosted tracking only: ACM certificate for the internal ALB's HTTPS listener, the MLflow
    # image (no default: a pinned image default rots) and the client CIDRs allowed to reach the ALB.
    certificate_arn: str | None = None
    mlflow_image: str | None = None
    ingress_cidrs: tuple[str, ...] = ()
    db_instance_class: str = "db.t4g.medium"
    tracking_server_size: str = "Small"  # managed MLflow: Small | Medium | Large
    endpoint_instance_type: str = "ml.m5.large"
    target_invocations_per_instance: int = 100  # autoscaling target per instance per minute
    data_capture_percent: int = 100
    # Rotation Lambda for the secrets Shipway stores; None leaves rotation to the owning service.
    secret_rotation_lambda_arn: str | None = None
    secret_rotation_days: int = 30
    # The GitHub OIDC provider is one per account: false when another stack in the account owns it.
    create_oidc_provider: bool = True
    # Artifact bucket of the environment models are promoted from (cross-account copy source).
    promotion_source_bucket: str | None = None
    promotion_source_key_arn: str | None = None  # the KMS key that bucket encrypts with
    # Deploy-role ARNs of the environments promoted *to* from this one: they may read models/.
    promotion_reader_arns: tuple[str, ...] = ()
    # The Pulumi state backend CI uses (docs/gitops.md: s3://<stateBucket>/shipway, encrypted with
    # stateKeyArn, which is also the stack's awskms secrets provider): the deploy role reaches this
    # environment's stack objects there and nothing else. None: the deploy role gets no state access.
    state_bucket: str | None = None
    state_key_arn: str | None = None
    managed_grafana: bool = True
    # OTLP/HTTP address of the environment's ADOT collector (runs the generated config); None: no traces
    # from endpoints, which then run with network isolation.
    otlp_endpoint: str | None = None


@dataclass(frozen=True)
class AzureSettings:
    """Azure target settings (location comes from ``shipway:region``)."""

    # The subscription every resource is created in (required: never a developer's CLI default).
    subscription_id: str | None = None
    resource_group_name: str | None = None
    github_repository: str | None = None
    public_network_access: bool = False
    log_retention_days: int = 365
    # Online endpoint auth: AADToken (Entra ID tokens, no shared secret) or Key.
    endpoint_auth_mode: str = "AADToken"
    instance_type: str = "Standard_DS3_v2"
    # Azure ML environment asset id of the Shipway serving image; None: MLflow no-code deployment.
    serving_environment: str | None = None
    # model name -> version kept deployed at 0% traffic while the new pin is verified.
    previous_versions: Mapping[str, int] = field(default_factory=dict)
    managed_prometheus: bool = False
    managed_grafana: bool = False
    alert_emails: tuple[str, ...] = ()
    # The Azure ML registry every environment's deployments read models from
    # (azureml://registries/<name>/models/<m>/versions/<N>), so version N in prod is the bytes dev
    # verified. Required on azure; exactly one stack sets createRegistry and owns it.
    registry_name: str | None = None
    registry_resource_group: str | None = None  # None: this stack's resource group
    create_registry: bool = False
    # Gradual traffic shift old -> new deployment (percent of traffic on the new one, ending at 100),
    # each step held bake_minutes while the error-rate, p99 and drift alerts stay quiet.
    traffic_steps: tuple[int, ...] = (10, 50, 100)
    bake_minutes: int = 10
    # Private networking (used unless publicNetworkAccess): the VNet and the subnet holding the
    # private endpoints of the workspace, registry, storage, vaults and container registry.
    vnet_address_space: str = "10.60.0.0/16"
    private_endpoint_subnet: str = "10.60.1.0/24"


@dataclass(frozen=True)
class KubernetesSettings:
    """Kubernetes target settings."""

    namespace: str | None = None  # default: shipway-<environment>
    # The images release-image.yml builds and pushes (containers/); the MLflow one carries the
    # PostgreSQL driver the in-cluster tracking database needs. Tags are for dev: test and prod
    # stacks pin each by digest (the parser refuses a tag there).
    serving_image: str = "ghcr.io/shipway/shipway-serving:0.1.0"
    mlflow_image: str = "ghcr.io/shipway/shipway-mlflow:0.1.0"
    artifact_store: str = "pvc"  # pvc | s3 | azureblob
    external_secrets: bool = False
    kserve: bool = False
    # s3://bucket/prefix or wasbs://container@account.blob.core.windows.net/prefix (required unless pvc)
    artifact_uri: str | None = None
    # IAM role ARN (s3, via IRSA) or managed-identity client id (azureblob, via workload identity)
    artifact_identity: str | None = None
    # postgresql://user@host:5432/db (password comes from the trackingDbPassword secret);
    # None: an in-cluster PostgreSQL StatefulSet
    tracking_database_uri: str | None = None
    postgres_image: str = "docker.io/library/postgres:17"
    otel_collector_image: str = (
        "ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector-k8s:0.135.0"
    )
    otlp_export_endpoint: str | None = None  # OTLP/HTTP backend the collector forwards to; None: debug only
    storage_class: str | None = None  # None: the cluster's default StorageClass
    ingress_namespace: str = "ingress-nginx"  # only this namespace may reach inference endpoints
    monitoring_namespace: str = "monitoring"  # where Prometheus runs (scrape allow-list)
    external_secret_store: str = "shipway"  # noqa: S105 - a ClusterSecretStore name when external_secrets is true
    kserve_canary_percent: int = 10
    quota_cpu: str = "16"
    quota_memory: str = "32Gi"


@dataclass(frozen=True)
class StackConfig:
    """The whole validated configuration of one stack."""

    stack: str
    cloud: str
    environment: str
    owner: str
    cost_center: str
    data_classification: str
    models: Mapping[str, ModelPin]
    region: str | None = None
    allowed_regions: tuple[str, ...] = ()
    protect_registry: bool = False
    registry_uri: str | None = None  # None on local: the stack's own tracking server
    local: LocalSettings = field(default_factory=LocalSettings)
    gates: GateSettings = field(default_factory=GateSettings)
    slo: SloSettings = field(default_factory=SloSettings)
    aws: AwsSettings = field(default_factory=AwsSettings)
    azure: AzureSettings = field(default_factory=AzureSettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)

    @property
    def tags(self) -> dict[str, str]:
        """Compliance tags every taggable resource carries."""
        return {
            "owner": self.owner,
            "cost-center": self.cost_center,
            "environment": self.environment,
            "data-classification": self.data_classification,
            "managed-by": "shipway",
        }


# --------------------------------------------------------------------------- parsing


class _Problems:
    """Collects problems instead of raising at the first one."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, value: Any, allowed: str) -> None:
        self.items.append(f"{NAMESPACE}:{key}: {_show(value)} is not valid; {allowed}")

    def missing(self, key: str, allowed: str) -> None:
        self.items.append(f"{NAMESPACE}:{key}: is required; {allowed}")


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(raw: Mapping[str, Any], key: str, choices: tuple[str, ...], problems: _Problems,
            default: str | None = None) -> str | None:
    value = raw.get(key, default)
    if value is None:
        problems.missing(key, f"one of {', '.join(choices)}")
        return None
    if value not in choices:
        problems.add(key, value, f"allowed: {', '.join(choices)}")
        return None
    return str(value)


def _tag_text(raw: Mapping[str, Any], key: str, problems: _Problems) -> str | None:
    value = raw.get(key)
    if value is None:
        problems.missing(key, "a non-empty tag value (letters, digits, space, _.:/=+@-)")
        return None
    if not isinstance(value, str) or not _TAG_VALUE.match(value):
        problems.add(key, value, "use a non-empty tag value (letters, digits, space, _.:/=+@-)")
        return None
    return value


def _section(raw: Mapping[str, Any], key: str, problems: _Problems) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add(key, value, "expected a mapping of settings")
        return {}
    return value


def _typed_section(
    raw: Mapping[str, Any], key: str, problems: _Problems, cls: type,
    fields: Mapping[str, tuple[str, Callable[[Any], bool], str]],
) -> Any:
    """Parse a flat settings mapping: ``fields`` maps camelCase key -> (attr, check, allowed)."""
    section = _section(raw, key, problems)
    kwargs: dict[str, Any] = {}
    for sub, value in section.items():
        if sub not in fields:
            problems.add(f"{key}.{sub}", value, f"unknown key; allowed keys: {', '.join(sorted(fields))}")
            continue
        attr, check, allowed = fields[sub]
        if not check(value):
            problems.add(f"{key}.{sub}", value, allowed)
            continue
        kwargs[attr] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def _port(v: Any) -> bool:
    return _is_int(v) and 1024 <= v <= 65535


def _pos_num(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and v > 0


def _fraction(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and 0 <= v <= 1


def _opt_str(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v != "")


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


_LOCAL_FIELDS = {
    "trackingPort": ("tracking_port", _port, "use a port number 1024-65535"),
    "endpointBasePort": ("endpoint_base_port", _port, "use a port number 1024-65535"),
    "prometheusPort": ("prometheus_port", _port, "use a port number 1024-65535"),
    "alertmanagerPort": ("alertmanager_port", _port, "use a port number 1024-65535"),
    "jaegerOtlpPort": ("jaeger_otlp_port", _port, "use a port number 1024-65535"),
    "jaegerQueryPort": ("jaeger_query_port", _port, "use a port number 1024-65535"),
    "jaegerMetricsPort": ("jaeger_metrics_port", _port, "use a port number 1024-65535"),
    "alertSinkPort": ("alert_sink_port", _port, "use a port number 1024-65535"),
    "otlpGrpcPort": ("otlp_grpc_port", _port, "use a port number 1024-65535"),
    "otlpHttpPort": ("otlp_http_port", _port, "use a port number 1024-65535"),
    "collectorMetricsPort": ("collector_metrics_port", _port, "use a port number 1024-65535"),
    "logStorePort": ("log_store_port", _port, "use a port number 1024-65535"),
    "logRetention": ("log_retention",
                     lambda v: isinstance(v, str) and re.fullmatch(r"[1-9][0-9]*[hdwy]", v) is not None,
                     "use a duration of hours, days, weeks or years such as 12h, 7d, 4w "
                     "(VictoriaLogs -retentionPeriod)"),
    "backendStoreUri": (
        "backend_store_uri",
        lambda v: v is None or (isinstance(v, str) and v.split(":", 1)[0] in ("sqlite", "postgresql")),
        "use a sqlite:/// or postgresql:// URI",
    ),
    "dataDir": ("data_dir", lambda v: isinstance(v, str) and v != "", "use a relative or absolute directory path"),
}

_SLO_FIELDS = {
    "availability": ("availability", lambda v: _fraction(v) and 0.9 <= v < 1,
                     "use a fraction between 0.9 and 1 (e.g. 0.995)"),
    "latencyP99Ms": ("latency_p99_ms", lambda v: _pos_num(v) and float(v) in LATENCY_BUCKETS_MS,
                     "use one of the latency histogram boundaries (ms): "
                     + ", ".join(f"{b:g}" for b in LATENCY_BUCKETS_MS)),
    "latencyObjective": ("latency_objective", lambda v: _fraction(v) and 0.9 <= v < 1,
                         "use a fraction between 0.9 and 1 (e.g. 0.99 of requests under latencyP99Ms)"),
    "maxErrorRate": ("max_error_rate", _fraction, "use a fraction between 0 and 1"),
    "driftPsi": ("drift_psi", _pos_num, "use a positive PSI threshold (0.1 moderate, 0.25 major)"),
    "freshnessHours": ("freshness_hours", _pos_num, "use a positive number of hours"),
    "driftWasserstein": ("drift_wasserstein", _pos_num,
                         "use a positive distance in training standard deviations (0.1 = a 0.1-sd shift)"),
    "driftJensenShannon": ("drift_jensen_shannon", lambda v: _pos_num(v) and v <= 1,
                           "use a Jensen-Shannon distance between 0 and 1 (0.06 = about a 7-10 point share move)"),
    "driftNullRate": ("drift_null_rate", lambda v: _pos_num(v) and v <= 1,
                      "use a fraction between 0 and 1 (0.03 = a 3-point change of the null rate)"),
    "minRequests": ("min_requests", lambda v: _is_int(v) and v >= 0,
                    "use a whole number of requests (0 turns the low-traffic guard off)"),
}

_AWS_FIELDS = {
    "trackingMode": ("tracking_mode", lambda v: v in TRACKING_MODES, f"allowed: {', '.join(TRACKING_MODES)}"),
    "vpcId": ("vpc_id", _opt_str, "use a VPC id such as vpc-0abc..."),
    "subnetIds": ("subnet_ids", _str_list, "use a list of private subnet ids"),
    "servingImage": ("serving_image", _opt_str, "use an ECR image URI with a digest or tag"),
    "githubRepository": ("github_repository", lambda v: v is None or (isinstance(v, str) and v.count("/") == 1),
                         "use owner/name"),
    "logRetentionDays": ("log_retention_days", lambda v: _is_int(v) and v >= 1, "use a positive number of days"),
    "certificateArn": ("certificate_arn", lambda v: v is None or (
        isinstance(v, str) and v.startswith("arn:aws") and ":acm:" in v),
                       "use an ACM certificate ARN (arn:aws:acm:...)"),
    "mlflowImage": ("mlflow_image", _opt_str, "use an image URI with a digest or tag"),
    "ingressCidrs": ("ingress_cidrs", lambda v: _str_list(v) and all(
        re.match(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$", c) and c != "0.0.0.0/0" for c in v),
        "use a list of private CIDRs such as 10.0.0.0/16 (never 0.0.0.0/0)"),
    "dbInstanceClass": ("db_instance_class", lambda v: isinstance(v, str) and v.startswith("db."),
                        "use an RDS instance class such as db.t4g.medium"),
    "trackingServerSize": ("tracking_server_size", lambda v: v in ("Small", "Medium", "Large"),
                           "allowed: Small, Medium, Large"),
    "endpointInstanceType": ("endpoint_instance_type", lambda v: isinstance(v, str) and v.startswith("ml."),
                             "use a SageMaker instance type such as ml.m5.large"),
    "targetInvocationsPerInstance": ("target_invocations_per_instance", lambda v: _is_int(v) and v >= 1,
                                     "use a positive number of invocations per instance per minute"),
    "dataCapturePercent": ("data_capture_percent", lambda v: _is_int(v) and 1 <= v <= 100,
                           "use an integer percentage from 1 to 100"),
    "secretRotationLambdaArn": ("secret_rotation_lambda_arn", lambda v: v is None or (
        isinstance(v, str) and v.startswith("arn:aws") and ":lambda:" in v), "use a Lambda function ARN"),
    "secretRotationDays": ("secret_rotation_days", lambda v: _is_int(v) and 1 <= v <= 365,
                           "use a number of days from 1 to 365"),
    "createOidcProvider": ("create_oidc_provider", lambda v: isinstance(v, bool), "use true or false"),
    "promotionSourceBucket": ("promotion_source_bucket", _opt_str,
                              "use the source environment's bucket name"),
    "promotionSourceKeyArn": ("promotion_source_key_arn", lambda v: v is None or (
        isinstance(v, str) and v.startswith("arn:aws") and ":kms:" in v),
        "use a KMS key ARN (arn:aws:kms:...)"),
    "promotionReaderArns": ("promotion_reader_arns", lambda v: _str_list(v) and all(
        re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$", a) for a in v),
        "use a list of IAM role ARNs (arn:aws:iam::<account>:role/<name>)"),
    "stateBucket": ("state_bucket", lambda v: v is None or (
        isinstance(v, str) and re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", v) is not None),
        "use the S3 bucket name of the Pulumi state backend (s3://<bucket>/shipway)"),
    "stateKeyArn": ("state_key_arn", lambda v: v is None or (
        isinstance(v, str) and v.startswith("arn:aws") and ":kms:" in v),
        "use the KMS key ARN that encrypts the state bucket (arn:aws:kms:...)"),
    "managedGrafana": ("managed_grafana", lambda v: isinstance(v, bool), "use true or false"),
    "otlpEndpoint": ("otlp_endpoint", lambda v: v is None or (isinstance(v, str) and v.startswith("https://")),
                     "use the collector's https:// OTLP/HTTP address"),
}

_AZURE_FIELDS = {
    "subscriptionId": ("subscription_id", lambda v: isinstance(v, str) and re.match(
        r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", v) is not None,
        "use the subscription id (a GUID such as 00000000-0000-0000-0000-000000000000)"),
    "resourceGroupName": ("resource_group_name", _opt_str, "use an existing resource group name"),
    "githubRepository": ("github_repository",
                         lambda v: v is None or (isinstance(v, str) and v.count("/") == 1), "use owner/name"),
    "publicNetworkAccess": ("public_network_access", lambda v: isinstance(v, bool), "use true or false"),
    "logRetentionDays": ("log_retention_days", lambda v: _is_int(v) and v >= 1,
                         "use a positive number of days"),
    "endpointAuthMode": ("endpoint_auth_mode", lambda v: v in ("AADToken", "Key"), "allowed: AADToken, Key"),
    "instanceType": ("instance_type",
                     lambda v: isinstance(v, str) and re.match(r"^Standard_[A-Za-z0-9_]+$", v) is not None,
                     "use an Azure ML managed instance type such as Standard_DS3_v2"),
    "servingEnvironment": ("serving_environment", _opt_str, "use an Azure ML environment asset id"),
    "previousVersions": ("previous_versions", lambda v: isinstance(v, Mapping) and all(
        isinstance(k, str) and _is_int(n) and n >= 1 for k, n in v.items()),
        "use a mapping of model name -> previous registry version (a positive integer)"),
    "managedPrometheus": ("managed_prometheus", lambda v: isinstance(v, bool), "use true or false"),
    "managedGrafana": ("managed_grafana", lambda v: isinstance(v, bool), "use true or false"),
    "alertEmails": ("alert_emails", lambda v: _str_list(v) and all("@" in x for x in v),
                    "use a list of e-mail addresses"),
    "registryName": ("registry_name", lambda v: isinstance(v, str) and re.match(
        r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$", v) is not None,
        "use the Azure ML registry name shared by dev, test and prod (3-33 letters, digits, - or _)"),
    "registryResourceGroup": ("registry_resource_group", _opt_str, "use the registry's resource group name"),
    "createRegistry": ("create_registry", lambda v: isinstance(v, bool),
                       "use true in the one stack that owns the shared registry, false elsewhere"),
    "trafficSteps": ("traffic_steps", lambda v: isinstance(v, list) and bool(v) and all(
        _is_int(x) and 1 <= x <= 100 for x in v) and all(a < b for a, b in zip(v, v[1:], strict=False))
        and v[-1] == 100,
        "use increasing percentages of traffic on the new deployment ending at 100, e.g. [10, 50, 100] "
        "([100] moves all traffic at once)"),
    "bakeMinutes": ("bake_minutes", lambda v: _is_int(v) and 1 <= v <= 1440,
                    "use the minutes each traffic step is watched before the next (1-1440)"),
    "vnetAddressSpace": ("vnet_address_space", lambda v: _cidr(v), "use an IPv4 CIDR such as 10.60.0.0/16"),
    "privateEndpointSubnet": ("private_endpoint_subnet", lambda v: _cidr(v),
                              "use an IPv4 CIDR inside vnetAddressSpace such as 10.60.1.0/24"),
}


def _cidr(v: Any) -> bool:
    if not isinstance(v, str) or "/" not in v:
        return False
    try:
        ipaddress.IPv4Network(v)
    except ValueError:
        return False
    return True

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def _dns_label(v: Any) -> bool:
    return isinstance(v, str) and bool(_DNS_LABEL.match(v))


def _quantity(v: Any) -> bool:
    return isinstance(v, str) and bool(_QUANTITY.match(v))


def _text(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _opt_uri(pattern: str) -> Callable[[Any], bool]:
    """None, or a string matching ``pattern`` (a URI scheme check)."""
    return lambda v: v is None or (isinstance(v, str) and bool(re.match(pattern, v)))


_K8S_FIELDS = {
    "namespace": ("namespace", _dns_label, "use a DNS-1123 label"),
    "servingImage": ("serving_image", _text, "use an image reference"),
    "mlflowImage": ("mlflow_image", _text, "use an image reference"),
    "artifactStore": ("artifact_store", lambda v: v in ("pvc", "s3", "azureblob"), "allowed: pvc, s3, azureblob"),
    "externalSecrets": ("external_secrets", lambda v: isinstance(v, bool), "use true or false"),
    "kserve": ("kserve", lambda v: isinstance(v, bool), "use true or false"),
    "artifactUri": ("artifact_uri", _opt_uri(r"^(s3|wasbs)://.+"),
                    "use s3://bucket/prefix or wasbs://container@account.blob.core.windows.net/prefix"),
    "artifactIdentity": ("artifact_identity", _opt_str, "use an IAM role ARN or a managed-identity client id"),
    "trackingDatabaseUri": ("tracking_database_uri", _opt_uri(r"^postgresql://[^:@/]+@[^/]+/.+"),
                            "use postgresql://user@host:5432/db without a password "
                            "(it comes from trackingDbPassword)"),
    "postgresImage": ("postgres_image", _text, "use an image reference"),
    "otelCollectorImage": ("otel_collector_image", _text, "use an image reference"),
    "otlpExportEndpoint": ("otlp_export_endpoint", _opt_uri(r"^https?://.+"),
                           "use an http(s):// OTLP/HTTP endpoint"),
    "storageClass": ("storage_class", _opt_str, "use a StorageClass name"),
    "ingressNamespace": ("ingress_namespace", _dns_label, "use a DNS-1123 label"),
    "monitoringNamespace": ("monitoring_namespace", _dns_label, "use a DNS-1123 label"),
    "externalSecretStore": ("external_secret_store", _dns_label, "use a ClusterSecretStore name (DNS-1123 label)"),
    "kserveCanaryPercent": ("kserve_canary_percent", lambda v: _is_int(v) and 0 <= v <= 100,
                            "use an integer percentage from 0 to 100"),
    "quotaCpu": ("quota_cpu", _quantity, "use a Kubernetes quantity such as 16 or 16000m"),
    "quotaMemory": ("quota_memory", _quantity, "use a Kubernetes quantity such as 32Gi"),
}


def _parse_models(raw: Mapping[str, Any], problems: _Problems) -> dict[str, ModelPin]:
    models = raw.get("models")
    if models is None:
        return {}
    if not isinstance(models, Mapping):
        problems.add("models", models, "expected a mapping of model name -> {version: N}")
        return {}
    pins: dict[str, ModelPin] = {}
    for name, spec in models.items():
        key = f"models.{name}"
        if not isinstance(name, str) or not is_model_name(name):
            problems.add(key, name, f"model names are {MODEL_NAME_RULE}")
            continue
        if not isinstance(spec, Mapping):
            problems.add(key, spec, "expected a mapping such as {version: 3}")
            continue
        for sub in spec:
            if sub not in ("version", "instances", "port", "explain"):
                problems.add(f"{key}.{sub}", spec[sub],
                             "unknown key; allowed keys: explain, instances, port, version")
        version = spec.get("version")
        ok = True
        if version is None:
            problems.missing(f"{key}.version", "pin an exact registry version (a positive integer)")
            ok = False
        elif not _is_int(version) or version < 1:
            problems.add(f"{key}.version", version,
                         "pin an exact registry version (a positive integer); aliases such as "
                         "'latest' or 'champion' are not allowed")
            ok = False
        instances = spec.get("instances", 1)
        if not _is_int(instances) or not 1 <= instances <= 100:
            problems.add(f"{key}.instances", instances, "use an integer from 1 to 100")
            ok = False
        port = spec.get("port")
        if port is not None and not _port(port):
            problems.add(f"{key}.port", port, "use a port number 1024-65535 (local target only)")
            ok = False
        explain = spec.get("explain", False)
        if not isinstance(explain, bool):
            problems.add(f"{key}.explain", explain, "use true or false (serve POST /explain for this model)")
            ok = False
        if ok and isinstance(version, int):
            pins[name] = ModelPin(name=name, version=version, instances=int(instances), port=port,
                                  explain=explain)
    return pins


def platform_ports(local: LocalSettings) -> dict[str, int]:
    """Ports the local platform's own processes listen on (Jaeger's gRPC query is query+1)."""
    return {"local.trackingPort": local.tracking_port, "local.prometheusPort": local.prometheus_port,
            "local.alertmanagerPort": local.alertmanager_port, "local.jaegerOtlpPort": local.jaeger_otlp_port,
            "local.jaegerQueryPort": local.jaeger_query_port,
            "local.jaegerQueryPort+1": local.jaeger_query_port + 1,
            "local.jaegerMetricsPort": local.jaeger_metrics_port, "local.alertSinkPort": local.alert_sink_port,
            "local.otlpGrpcPort": local.otlp_grpc_port, "local.otlpHttpPort": local.otlp_http_port,
            "local.collectorMetricsPort": local.collector_metrics_port, "local.logStorePort": local.log_store_port}


def endpoint_ports(models: Mapping[str, ModelPin], local: LocalSettings) -> dict[str, int]:
    """Each local endpoint's port: its pinned ``port``, else the next free one from
    ``endpointBasePort`` in name order (skipping pinned ones).

    Only pinned ports are stable; promotion pins one for every model it touches, so a stack
    edited through the paved path never relies on the name-order fallback.
    """
    taken = {pin.port for pin in models.values() if pin.port is not None}
    ports: dict[str, int] = {}
    candidate = local.endpoint_base_port
    for name, pin in sorted(models.items()):
        if pin.port is not None:
            ports[name] = pin.port
            continue
        while candidate in taken:
            candidate += 1
        ports[name] = candidate
        taken.add(candidate)
    return ports


def _check_model_ports(cloud: str | None, models: Mapping[str, ModelPin], local: LocalSettings,
                       problems: _Problems) -> None:
    """Pinned ports: local only, unique, never a platform process's port; Jaeger's metrics port
    is no other platform process's port either."""
    pinned = {name: pin.port for name, pin in sorted(models.items()) if pin.port is not None}
    if cloud is not None and cloud != "local":
        for name, port in pinned.items():
            problems.add(f"models.{name}.port", port, f"ports are pinned on the local target only; remove it "
                                                      f"(the {cloud} target gives each endpoint its own address)")
        return
    others = {key: port for key, port in platform_ports(local).items() if key != "local.jaegerMetricsPort"}
    # The delivery exporter listens on the alert sink's port + 1 (components/local/platform.py).
    others["local.alertSinkPort+1"] = local.alert_sink_port + 1
    taken_by = [key for key, port in others.items() if port == local.jaeger_metrics_port]
    if taken_by:
        problems.add("local.jaegerMetricsPort", local.jaeger_metrics_port,
                     f"already used by {taken_by[0]}; pick a free port for Jaeger's own metrics (the default "
                     "14269 is free unless another key takes it)")
    owners: dict[int, str] = {port: key for key, port in platform_ports(local).items()}
    for name, port in endpoint_ports(models, local).items():
        if port in owners:
            problems.add(f"models.{name}.port", port, f"already used by {owners[port]}; pick a free port "
                                                      f"(each model keeps its port for its whole life)")
        else:
            owners[port] = f"models.{name}.port"


NONFUNCTIONAL_KINDS = ("load", "resilience", "security")


def _parse_gates(raw: Mapping[str, Any], problems: _Problems) -> GateSettings:
    section = _section(raw, "gates", problems)
    kwargs: dict[str, Any] = {}
    allowed = ("maxNullRateDelta", "maxPsi", "maxRegression", "minMetrics", "requireNonFunctional")
    for sub, value in section.items():
        key = f"gates.{sub}"
        if sub == "minMetrics":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and _fraction(v) for k, v in value.items()
            ):
                problems.add(key, value, "use a mapping of metric name -> minimum value between 0 and 1")
            else:
                kwargs["min_metrics"] = dict(value)
        elif sub in ("maxRegression", "maxNullRateDelta"):
            if not _fraction(value):
                problems.add(key, value, "use a fraction between 0 and 1")
            else:
                kwargs["max_regression" if sub == "maxRegression" else "max_null_rate_delta"] = float(value)
        elif sub == "maxPsi":
            if not _pos_num(value):
                problems.add(key, value, "use a positive PSI threshold")
            else:
                kwargs["max_psi"] = float(value)
        elif sub == "requireNonFunctional":
            if not isinstance(value, list) or not all(v in NONFUNCTIONAL_KINDS for v in value):
                problems.add(key, value, f"use a list drawn from {', '.join(NONFUNCTIONAL_KINDS)}")
            else:
                kwargs["require_nonfunctional"] = tuple(dict.fromkeys(value))
        else:
            problems.add(key, value, f"unknown key; allowed keys: {', '.join(allowed)}")
    return GateSettings(**kwargs)


# Secrets each target needs, as `pulumi config set --secret shipway:<key>` values. They are
# checked for presence here and read by the program (infra/program.py), never parsed into
# plain objects.
SECRET_KEYS = ("endpointApiKey", "trackingDbPassword")


def required_secrets(cloud: str, kubernetes: KubernetesSettings | None = None) -> tuple[str, ...]:
    """The secret config keys a target's program reads (each must be set with --secret)."""
    if cloud == "kubernetes":
        if kubernetes is not None and kubernetes.external_secrets:
            return ()  # values come from the ClusterSecretStore, not from Pulumi
        return ("endpointApiKey", "trackingDbPassword")
    return ("endpointApiKey",)


_TOP_LEVEL = (
    "allowedRegions", "aws", "azure", "cloud", "costCenter", "dataClassification", "environment", "gates",
    "kubernetes", "local", "models", "owner", "protectRegistry", "region", "registryUri", "slo",
    *SECRET_KEYS,
)

_ECR_IMAGE = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_SET = "set it with `pulumi config set --path 'shipway:{key}' <value> --stack {stack}`"


def _by_digest_where_required(environment: str | None, image: str) -> bool:
    """test and prod run images by digest; dev may use a tag (never `latest`)."""
    if image.endswith(":latest") or (":" not in image.rsplit("/", 1)[-1] and "@" not in image):
        return False
    return environment not in ("test", "prod") or bool(_DIGEST.search(image))


def _check_azure(stack: str, environment: str | None, azure: AzureSettings, problems: _Problems,
                 given: Mapping[str, Any]) -> None:
    """The shared registry is named; public access only on dev; the subnet lies in the VNet."""
    if not azure.registry_name and "registryName" not in given:  # a bad value is reported already
        problems.missing("azure.registryName", "the Azure ML registry shared by dev, test and prod (deployments "
                         "read azureml://registries/<name>/models/...); "
                         + _SET.format(key="azure.registryName", stack=stack))
    if azure.public_network_access and environment in ("test", "prod"):
        problems.add("azure.publicNetworkAccess", True, f"{environment} is reachable only through private "
                     "endpoints; remove it (public access is a dev-only option)")
    if (_cidr(azure.vnet_address_space) and _cidr(azure.private_endpoint_subnet)
            and not ipaddress.IPv4Network(azure.private_endpoint_subnet).subnet_of(
                ipaddress.IPv4Network(azure.vnet_address_space))):
        problems.add("azure.privateEndpointSubnet", azure.private_endpoint_subnet,
                     f"use a CIDR inside azure.vnetAddressSpace ({azure.vnet_address_space})")


def _cross_check(stack: str, cloud: str | None, environment: str | None, raw: Mapping[str, Any],
                 aws: AwsSettings, azure: AzureSettings, kubernetes: KubernetesSettings, problems: _Problems,
                 source: str, require_secrets: bool) -> None:
    """Per-target requirements that single keys cannot express, all reported at once."""
    if cloud is None:
        return
    for key in SECRET_KEYS:
        value = raw.get(key)
        if value in (None, ""):
            if require_secrets and key in required_secrets(cloud, kubernetes):
                problems.missing(key, f"set it as a secret with `pulumi config set --secret shipway:{key} <value> "
                                      f"--stack {stack}` (never in plain text)")
        elif source == "file" and not (isinstance(value, Mapping) and "secure" in value):
            problems.add(key, "<plain text>", f"secrets are never stored in plain text; remove it and run "
                                              f"`pulumi config set --secret shipway:{key} <value> --stack {stack}`")
    if cloud == "aws":
        if not aws.vpc_id:
            problems.missing("aws.vpcId", "the VPC endpoints run in (vpc-...); " + _SET.format(key="aws.vpcId",
                                                                                                  stack=stack))
        elif not re.match(r"^vpc-[0-9a-f]{8,17}$", aws.vpc_id):
            problems.add("aws.vpcId", aws.vpc_id, "use a VPC id such as vpc-0123456789abcdef0")
        if not aws.subnet_ids:
            problems.missing("aws.subnetIds", "at least 2 private subnets in different availability zones; "
                             + _SET.format(key="aws.subnetIds[0]", stack=stack) + " (and [1])")
        elif len(aws.subnet_ids) < 2:
            problems.add("aws.subnetIds", list(aws.subnet_ids),
                         "use at least 2 private subnets in different availability zones; "
                         + _SET.format(key="aws.subnetIds[0]", stack=stack) + " (and [1])")
        elif not all(re.match(r"^subnet-[0-9a-f]{8,17}$", s) for s in aws.subnet_ids):
            problems.add("aws.subnetIds", list(aws.subnet_ids), "use subnet ids such as subnet-0123456789abcdef0")
        if not aws.serving_image:
            problems.missing("aws.servingImage", "the serving image in ECR (<account>.dkr.ecr.<region>.amazonaws."
                                                 "com/<repo>@sha256:<digest>, from the image release workflow); "
                             + _SET.format(key="aws.servingImage", stack=stack))
        elif not _ECR_IMAGE.match(aws.serving_image):
            problems.add("aws.servingImage", aws.serving_image,
                         "SageMaker pulls serving images from ECR only: use "
                         "<account>.dkr.ecr.<region>.amazonaws.com/<repo>@sha256:<digest>")
        elif not _by_digest_where_required(environment, aws.serving_image):
            problems.add("aws.servingImage", aws.serving_image,
                         f"{environment} runs images by digest (<repo>@sha256:<digest>), never 'latest'")
        if aws.tracking_mode == "self-hosted":
            for attr, key, what in (("certificate_arn", "aws.certificateArn", "an ACM certificate ARN for the "
                                     "internal ALB's HTTPS listener"),
                                    ("mlflow_image", "aws.mlflowImage", "the MLflow server image URI"),
                                    ("ingress_cidrs", "aws.ingressCidrs", "the private CIDRs allowed to reach "
                                     "the tracking server")):
                if not getattr(aws, attr):
                    problems.missing(key, f"{what} (self-hosted tracking); " + _SET.format(key=key, stack=stack))
    if cloud == "azure" and not azure.subscription_id:
        problems.missing("azure.subscriptionId", "the Azure subscription to deploy to; "
                         + _SET.format(key="azure.subscriptionId", stack=stack))
    if cloud == "azure":
        section = raw.get("azure")
        _check_azure(stack, environment, azure, problems, section if isinstance(section, Mapping) else {})
    if cloud == "kubernetes":
        for attr, key in (("serving_image", "kubernetes.servingImage"), ("mlflow_image", "kubernetes.mlflowImage"),
                          ("postgres_image", "kubernetes.postgresImage"),
                          ("otel_collector_image", "kubernetes.otelCollectorImage")):
            image = getattr(kubernetes, attr)
            if not _by_digest_where_required(environment, image):
                problems.add(key, image, f"{environment} runs images by digest: pin it as "
                                         "<repository>@sha256:<digest> (the release-image workflow prints it), "
                                         "never 'latest' or an untagged image")
        if kubernetes.artifact_store != "pvc" and not kubernetes.artifact_uri:
            problems.missing("kubernetes.artifactUri", f"the {kubernetes.artifact_store} artifact location; "
                             + _SET.format(key="kubernetes.artifactUri", stack=stack))
        if environment in ("test", "prod"):
            # The registry of a promoted environment must survive a node or a pod: MLflow runs two
            # replicas on shared object storage, against a managed, backed-up database.
            if kubernetes.artifact_store == "pvc":
                problems.add("kubernetes.artifactStore", "pvc",
                             f"{environment} keeps artifacts in object storage shared by the MLflow replicas "
                             "(a ReadWriteOnce volume pins MLflow to one pod): use s3 or azureblob with "
                             "kubernetes.artifactUri")
            if kubernetes.tracking_database_uri is None:
                problems.missing("kubernetes.trackingDatabaseUri",
                                 f"{environment} uses a managed PostgreSQL (backups, point-in-time restore) "
                                 "instead of the single in-cluster dev database; "
                                 + _SET.format(key="kubernetes.trackingDatabaseUri", stack=stack))


def parse_stack_config(stack: str, raw: Mapping[str, Any], *, source: str = "settings",
                       require_secrets: bool | None = None) -> StackConfig:
    """Validate ``raw`` (keys without the ``shipway:`` prefix, values already decoded).

    ``source`` says where ``raw`` came from: ``"engine"`` (the running program), ``"file"`` (a
    stack file: a secret written there must be ``secure:``) or ``"settings"`` (settings alone, as
    tools and tests build them). ``require_secrets`` (default: true for the engine) reports every
    secret the target needs and lacks, in the same single error.
    """
    if require_secrets is None:
        require_secrets = source == "engine"
    if source not in ("engine", "file", "settings"):
        raise ValueError(f"source: {source!r} is not valid; allowed: engine, file, settings")
    problems = _Problems()
    for key, value in raw.items():
        if key not in _TOP_LEVEL:
            problems.add(key, value, f"unknown key; allowed keys: {', '.join(sorted(_TOP_LEVEL))}")

    cloud = _choice(raw, "cloud", CLOUDS, problems)
    environment = _choice(raw, "environment", ENVIRONMENTS, problems)
    owner = _tag_text(raw, "owner", problems)
    cost_center = _tag_text(raw, "costCenter", problems)
    classification = _choice(raw, "dataClassification", DATA_CLASSIFICATIONS, problems)
    models = _parse_models(raw, problems)

    region = raw.get("region")
    allowed_regions = raw.get("allowedRegions", [])
    if not (allowed_regions == [] or _str_list(allowed_regions)):
        problems.add("allowedRegions", allowed_regions, "use a list of region names")
        allowed_regions = []
    if cloud in ("aws", "azure"):
        if region is None:
            problems.missing("region", f"the {cloud} region to deploy to")
        elif not isinstance(region, str) or not re.match(r"^[a-z0-9-]+$", region):
            problems.add("region", region, "use a region name such as eu-west-1 or westeurope")
        elif allowed_regions and region not in allowed_regions:
            problems.add("region", region, f"allowed by allowedRegions: {', '.join(allowed_regions)}")
    elif region is not None:
        problems.add("region", region, f"the {cloud} target has no region; remove the key")

    protect = raw.get("protectRegistry", environment == "prod")
    if not isinstance(protect, bool):
        problems.add("protectRegistry", protect, "use true or false")
        protect = True
    elif environment == "prod" and protect is False:
        problems.add("protectRegistry", protect, "prod registry entries must be retained on delete; use true")

    registry_uri = raw.get("registryUri")
    if registry_uri is not None and not (
        isinstance(registry_uri, str)
        and re.match(r"^(https?://|databricks|azureml://|arn:aws:sagemaker:)", registry_uri)
    ):
        problems.add("registryUri", registry_uri, "use an http(s):// MLflow URI, azureml:// or a SageMaker MLflow ARN")
    if cloud == "local" and isinstance(registry_uri, str) and registry_uri.startswith("http") and not re.match(
        r"^http://(127\.0\.0\.1|localhost)(:\d+)?(/|$)", registry_uri
    ):
        problems.add("registryUri", registry_uri, "the local target only talks to 127.0.0.1")

    local = _typed_section(raw, "local", problems, LocalSettings, _LOCAL_FIELDS)
    _check_model_ports(cloud, models, local, problems)
    gates = _parse_gates(raw, problems)
    slo = _typed_section(raw, "slo", problems, SloSettings, _SLO_FIELDS)
    aws = _typed_section(raw, "aws", problems, AwsSettings, _AWS_FIELDS)
    azure = _typed_section(raw, "azure", problems, AzureSettings, _AZURE_FIELDS)
    kubernetes = _typed_section(raw, "kubernetes", problems, KubernetesSettings, _K8S_FIELDS)

    _cross_check(stack, cloud, environment, raw, aws, azure, kubernetes, problems, source, require_secrets)

    if environment is not None and stack in ENVIRONMENTS and stack != environment:
        problems.add("environment", environment, f"stack '{stack}' must declare environment '{stack}'")

    if problems.items:
        raise StackConfigError(stack, problems.items)
    assert cloud and environment and owner and cost_center and classification  # noqa: S101 - narrowed above
    return StackConfig(
        stack=stack, cloud=cloud, environment=environment, owner=owner, cost_center=cost_center,
        data_classification=classification, models=models, region=region,
        allowed_regions=tuple(allowed_regions), protect_registry=protect, registry_uri=registry_uri,
        local=local, gates=gates, slo=slo, aws=aws, azure=azure, kubernetes=kubernetes,
    )


# ------------------------------------------------------------------- reading sources


def raw_from_stack_file(path: Path) -> dict[str, Any]:
    """Read the ``shipway:`` keys of a stack file (secure values are left encrypted)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe").load(path.read_text())
    except YAMLError as exc:
        raise StackConfigError(path.stem.removeprefix("Pulumi."), [f"{path}: not valid YAML: {exc}"]) from exc
    config = (doc or {}).get("config") or {}
    raw: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, name = str(key).partition(":")
        if ns == NAMESPACE and name:
            raw[name] = value
    return raw


def load_stack_file(path: Path, *, require_secrets: bool = False) -> StackConfig:
    """Parse and validate ``stacks/Pulumi.<stack>.yaml``; ``require_secrets`` when it is about to
    be deployed (every secret its target needs must be set, ``secure:``)."""
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    return parse_stack_config(stack, raw_from_stack_file(path), source="file", require_secrets=require_secrets)


def raw_from_pulumi_config(config: Mapping[str, str]) -> dict[str, Any]:
    """Decode the engine's flat config map (``{"shipway:models": "<json>"}``) into raw values."""
    raw: dict[str, Any] = {}
    for key, text in config.items():
        ns, _, name = key.partition(":")
        if ns != NAMESPACE or not name:
            continue
        if name in _STRUCTURED:
            try:
                raw[name] = json.loads(text)
            except (TypeError, ValueError):
                raw[name] = text  # reported by the parser with the offending text
        else:
            raw[name] = text  # plain strings stay strings: a cost center "0042" is not 42
    return raw


# Keys whose engine value is JSON; every other key is a plain string.
_STRUCTURED = frozenset(
    {"allowedRegions", "aws", "azure", "gates", "kubernetes", "local", "models", "protectRegistry", "slo"}
)
