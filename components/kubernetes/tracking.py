"""TrackingServer: MLflow tracking server + model registry inside the environment namespace.

Backend store: an in-cluster PostgreSQL StatefulSet, or an external database
(``kubernetes.trackingDatabaseUri``). Artifacts: a PVC, S3 (IRSA) or Azure Blob (workload
identity) by ``kubernetes.artifactStore``; cloud credentials come from the pod identity, never
from keys in Secrets. The database password is a mounted file: MLflow cannot read a password
file, so a one-line shell wrapper exports it as PGPASSWORD inside the process only. It never
appears in the pod spec, ``kubectl describe`` or the process arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.common import TrackingServerArgs, validate_tags
from components.kubernetes import network
from components.kubernetes.podspec import (
    DATABASE_COMPONENT,
    ENDPOINT_COMPONENT,
    MAX_TRACKING_NAME,
    POSTGRES_UID,
    SCRAPE_JOB_LABEL,
    SCRATCH_DIR,
    SECRET_MOUNT_DIR,
    TRACKING_COMPONENT,
    container_security_context,
    http_probe,
    metadata,
    namespace_name,
    pod_security_context,
    resources,
    scratch_volume,
    secret_volume,
    selector_labels,
    topology_spread,
    validate_object_name,
)
from components.kubernetes.secrets import named_after, require_secret_value, secret_object
from shipway_core import vendor_telemetry
from shipway_core.config import KubernetesSettings
from shipway_core.observability.pipeline import MLFLOW_JOB

TRACKING_PORT = 5000
POSTGRES_PORT = 5432
DB_NAME = "mlflow"
DB_USER = "mlflow"
ARTIFACT_DIR = "/mlflow/artifacts"
DB_PASSWORD_FILE = f"{SECRET_MOUNT_DIR}/db-password"
PROMETHEUS_DIR = "/tmp/prometheus"  # noqa: S108 - an emptyDir, not the image's /tmp


def validate_artifact_store(settings: KubernetesSettings) -> None:
    """A cloud artifact store needs a destination URI of the matching scheme."""
    expected = {"s3": "s3://", "azureblob": "wasbs://"}.get(settings.artifact_store)
    if expected is None:
        return
    if not settings.artifact_uri or not settings.artifact_uri.startswith(expected):
        raise ValueError(
            f"artifact_uri: {settings.artifact_uri!r} is not valid for artifact_store "
            f"'{settings.artifact_store}'; use a {expected} URI"
        )


def artifact_destination(settings: KubernetesSettings) -> str:
    """Where the server writes artifacts (it proxies them: clients never need storage credentials)."""
    return ARTIFACT_DIR if settings.artifact_store == "pvc" else str(settings.artifact_uri)


def allowed_hosts(service: str, namespace: str) -> str:
    """Host headers MLflow accepts: the Service's in-cluster names (any port) and port-forwards.

    MLflow 3 rejects unknown Host headers (DNS-rebinding protection) and by default only knows
    localhost and private IPs, so in-cluster clients using the Service name would get 403s.
    """
    names = [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]
    return ",".join([h for n in names for h in (n, f"{n}:*")] + ["localhost:*", "127.0.0.1:*"])


def server_command(
    backend_uri: pulumi.Input[str], settings: KubernetesSettings, service: str, namespace: pulumi.Input[str]
) -> pulumi.Output[list[str]]:
    """``sh -c`` that loads the password file into PGPASSWORD, then execs ``mlflow server``."""
    hosts = pulumi.Output.from_input(namespace).apply(lambda ns: allowed_hosts(service, ns))
    script = pulumi.Output.concat(
        f'PGPASSWORD="$(cat {DB_PASSWORD_FILE})"; export PGPASSWORD; exec mlflow server',
        f" --host 0.0.0.0 --port {TRACKING_PORT}",
        " --backend-store-uri '",
        backend_uri,
        "'",
        f" --serve-artifacts --artifacts-destination '{artifact_destination(settings)}'",
        f" --expose-prometheus {PROMETHEUS_DIR}",
        " --allowed-hosts '",
        hosts,
        "'",
    )
    return script.apply(lambda s: ["/bin/sh", "-c", s])


def identity_annotations(settings: KubernetesSettings) -> dict[str, str]:
    """Annotations binding the tracking ServiceAccount to a cloud identity for the artifact store."""
    if settings.artifact_identity is None:
        return {}
    if settings.artifact_store == "s3":
        return {"eks.amazonaws.com/role-arn": settings.artifact_identity}
    if settings.artifact_store == "azureblob":
        return {"azure.workload.identity/client-id": settings.artifact_identity}
    return {}


class TrackingServer(pulumi.ComponentResource):
    """MLflow Deployment + Service (+ PostgreSQL StatefulSet, artifact PVC) with its network allows."""

    tracking_uri: pulumi.Output[str]
    """In-cluster URL of the tracking server and registry (``MLFLOW_TRACKING_URI``)."""
    registry_uri: pulumi.Output[str]
    """Same server: the registry the stacks pin versions from."""

    def __init__(
        self,
        name: str,
        args: TrackingServerArgs,
        settings: KubernetesSettings,
        *,
        db_password: pulumi.Input[str] | None = None,
        db_password_secret: pulumi.Input[str] | None = None,
        namespace: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``db_password`` (a Pulumi secret) or ``db_password_secret`` (an existing Secret's name)."""
        validate_tags(args.tags)
        validate_object_name(name, MAX_TRACKING_NAME)
        validate_artifact_store(settings)
        if db_password is not None and db_password_secret is not None:
            raise ValueError("db_password: give db_password or db_password_secret, not both")
        if db_password_secret is None:
            require_secret_value("trackingDbPassword", db_password, settings)
        super().__init__("shipway:kubernetes:TrackingServer", name, None, opts)
        self._name, self._settings, self._tags = name, settings, args.tags
        self._ns: pulumi.Input[str] = namespace if namespace is not None else namespace_name(args.environment, settings)
        self._child = pulumi.ResourceOptions(parent=self)
        # Registry data (database, artifacts) survives `pulumi destroy` when the stack protects it.
        self._stateful = pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect)

        self.db_secret: pulumi.CustomResource | None = None
        """The Secret/ExternalSecret this component created for the password (None if given one)."""
        if db_password_secret is None:
            self.db_secret = secret_object(
                f"{name}-db-password",
                f"{name}-db-password",
                self._ns,
                environment=args.environment,
                key="trackingDbPassword",
                value=db_password,
                settings=settings,
                tags=args.tags,
                component=TRACKING_COMPONENT,
                opts=pulumi.ResourceOptions(parent=self),
            )
            db_password_secret = named_after(self.db_secret, f"{name}-db-password")
        self._db_secret_name: pulumi.Input[str] = db_password_secret

        self.database: k8s.apps.v1.StatefulSet | None = None
        self.database_service: k8s.core.v1.Service | None = None
        """In-cluster PostgreSQL StatefulSet and its Service (None with an external database)."""
        if settings.tracking_database_uri is None:
            backend_uri: pulumi.Input[str] = self._database()
        else:
            backend_uri = settings.tracking_database_uri
        self.artifact_volume_claim = self._artifact_claim() if settings.artifact_store == "pvc" else None
        """PVC holding artifacts when artifact_store is pvc (None otherwise)."""
        # Two replicas wherever the registry must stay up through a rollout or a node loss (test and
        # prod, which the config requires to use object storage and a managed database).
        self._server(backend_uri, replicas=2 if args.environment in ("test", "prod") else 1)

        self.tracking_uri = pulumi.Output.concat(
            "http://",
            self.service.metadata.apply(lambda m: m.name),
            ".",
            pulumi.Output.from_input(self._ns),
            f".svc.cluster.local:{TRACKING_PORT}",
        )
        self.registry_uri = self.tracking_uri
        self.register_outputs({"tracking_uri": self.tracking_uri, "registry_uri": self.registry_uri})

    # ----------------------------------------------------------------- pieces

    def _meta(
        self, obj: str, component: str = TRACKING_COMPONENT, annotations: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return metadata(obj, self._ns, component, self._tags, annotations)

    def _database(self) -> pulumi.Output[str]:
        """PostgreSQL StatefulSet + headless Service; returns the backend store URI."""
        name, settings = f"{self._name}-postgres", self._settings
        labels = selector_labels(name, DATABASE_COMPONENT)
        container = {
            "name": "postgres",
            "image": settings.postgres_image,
            "ports": [{"name": "postgres", "container_port": POSTGRES_PORT}],
            "env": [
                {"name": "POSTGRES_USER", "value": DB_USER},
                {"name": "POSTGRES_DB", "value": DB_NAME},
                {"name": "POSTGRES_PASSWORD_FILE", "value": DB_PASSWORD_FILE},  # a path, not the value
                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
            ],
            "readiness_probe": {
                "exec": {"command": ["pg_isready", "-U", DB_USER, "-d", DB_NAME]},
                "period_seconds": 10,
                "failure_threshold": 3,
                "timeout_seconds": 5,
            },
            "liveness_probe": {
                "exec": {"command": ["pg_isready", "-U", DB_USER, "-d", DB_NAME]},
                "period_seconds": 20,
                "failure_threshold": 6,
                "timeout_seconds": 5,
            },
            "resources": resources("250m", "512Mi", "1", "1Gi"),
            "security_context": container_security_context(POSTGRES_UID),
            "volume_mounts": [
                {"name": "data", "mount_path": "/var/lib/postgresql/data"},
                {"name": "run", "mount_path": "/var/run/postgresql"},
                {"name": "tmp", "mount_path": SCRATCH_DIR},
                {"name": "db-password", "mount_path": SECRET_MOUNT_DIR, "read_only": True},
            ],
        }
        claim: dict[str, Any] = {
            "access_modes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "20Gi"}},
        }
        if settings.storage_class:
            claim["storage_class_name"] = settings.storage_class
        self.database_service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=self._meta(name, DATABASE_COMPONENT),
            spec={
                "cluster_ip": "None",
                "selector": labels,
                "ports": [{"name": "postgres", "port": POSTGRES_PORT, "target_port": "postgres"}],
            },
            opts=self._child,
        )
        self.database_account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata=self._meta(name, DATABASE_COMPONENT),
            automount_service_account_token=False,
            opts=self._child,
        )
        self.database = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=self._meta(name, DATABASE_COMPONENT),
            spec={
                "service_name": name,
                "replicas": 1,
                "selector": {"match_labels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "service_account_name": name,
                        "automount_service_account_token": False,
                        "security_context": pod_security_context(POSTGRES_UID),
                        "containers": [container],
                        "volumes": [
                            scratch_volume("run", "16Mi"),
                            scratch_volume("tmp"),
                            secret_volume("db-password", self._db_secret_name, "db-password"),
                        ],
                    },
                },
                "volume_claim_templates": [{"metadata": {"name": "data"}, "spec": claim}],
                "persistent_volume_claim_retention_policy": {
                    "when_deleted": "Retain",
                    "when_scaled": "Retain",
                },
            },
            opts=self._stateful,
        )
        self.database_network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-network",
            metadata=self._meta(name, DATABASE_COMPONENT),
            spec=network.policy_spec(
                labels,
                ingress=[network.rule([network.pods_of(TRACKING_COMPONENT)], network.ports(POSTGRES_PORT), "ingress")],
            ),
            opts=self._child,
        )
        return pulumi.Output.concat(
            f"postgresql://{DB_USER}@",
            self.database_service.metadata.apply(lambda m: m.name),
            ".",
            pulumi.Output.from_input(self._ns),
            f".svc.cluster.local:{POSTGRES_PORT}/{DB_NAME}",
        )

    def _artifact_claim(self) -> k8s.core.v1.PersistentVolumeClaim:
        spec: dict[str, Any] = {
            "access_modes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "50Gi"}},
        }
        if self._settings.storage_class:
            spec["storage_class_name"] = self._settings.storage_class
        return k8s.core.v1.PersistentVolumeClaim(
            f"{self._name}-artifacts",
            metadata=self._meta(f"{self._name}-artifacts"),
            spec=spec,
            opts=self._stateful,
        )

    def _server(self, backend_uri: pulumi.Input[str], replicas: int) -> None:
        """MLflow Deployment, Service, ServiceAccount and network allows."""
        name, settings = self._name, self._settings
        labels = selector_labels(name, TRACKING_COMPONENT)
        pvc = settings.artifact_store == "pvc"
        mounts = [
            {"name": "tmp", "mount_path": SCRATCH_DIR},
            {"name": "db-password", "mount_path": SECRET_MOUNT_DIR, "read_only": True},
        ]
        volumes: list[dict[str, Any]] = [
            scratch_volume("tmp", "1Gi"),
            secret_volume("db-password", self._db_secret_name, "db-password"),
        ]
        if pvc:
            mounts.append({"name": "artifacts", "mount_path": ARTIFACT_DIR})
            volumes.append({"name": "artifacts", "persistent_volume_claim": {"claim_name": f"{name}-artifacts"}})
        container = {
            "name": "mlflow",
            "image": settings.mlflow_image,
            "command": server_command(backend_uri, settings, name, self._ns),
            "env": [{"name": "HOME", "value": SCRATCH_DIR},
                    *({"name": k, "value": v} for k, v in vendor_telemetry.OFF.items())],
            "ports": [{"name": "http", "container_port": TRACKING_PORT}],
            "readiness_probe": http_probe("/health", "http"),
            "liveness_probe": http_probe("/health", "http", period=20, failures=6),
            "startup_probe": http_probe("/health", "http", period=5, failures=60),
            "resources": resources("250m", "512Mi", "2", "2Gi"),
            "security_context": container_security_context(),
            "volume_mounts": mounts,
        }
        pod_labels = dict(labels)
        if settings.artifact_store == "azureblob" and settings.artifact_identity:
            pod_labels["azure.workload.identity/use"] = "true"
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata=self._meta(name, annotations=identity_annotations(settings)),
            automount_service_account_token=False,
            opts=self._child,
        )
        # A ReadWriteOnce volume cannot attach to two nodes: PVC-backed servers replace, others roll.
        strategy = (
            {"type": "Recreate"}
            if pvc
            else {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}}
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=self._meta(name),
            spec={
                "replicas": 1 if pvc else replicas,
                "selector": {"match_labels": labels},
                "strategy": strategy,
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "service_account_name": name,
                        "automount_service_account_token": False,
                        "security_context": pod_security_context(),
                        "containers": [container],
                        "volumes": volumes,
                        "topology_spread_constraints": topology_spread(labels),
                    },
                },
            },
            opts=self._child,
        )
        # The ServiceMonitor's jobLabel: scraped as job "mlflow" (its /metrics comes from
        # --expose-prometheus), the pipeline job name every target's rules select on.
        service_meta = self._meta(name)
        service_meta["labels"][SCRAPE_JOB_LABEL] = MLFLOW_JOB
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=service_meta,
            spec={
                "type": "ClusterIP",
                "selector": labels,
                "ports": [{"name": "http", "port": TRACKING_PORT, "target_port": "http"}],
            },
            opts=self._child,
        )
        egress = [network.rule([network.pods_of(DATABASE_COMPONENT)], network.ports(POSTGRES_PORT), "egress")]
        if settings.tracking_database_uri is not None:
            # A managed database usually sits on a private VPC address: any address, one port.
            egress = [network.rule([{"ip_block": {"cidr": "0.0.0.0/0"}}], network.ports(POSTGRES_PORT), "egress")]
        if not pvc:
            egress.append(network.rule([network.anywhere_outside_cluster()], network.ports(443), "egress"))
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-network",
            metadata=self._meta(name),
            spec=network.policy_spec(
                labels,
                ingress=[
                    network.rule([network.pods_of(ENDPOINT_COMPONENT)], network.ports(TRACKING_PORT), "ingress"),
                    network.rule(
                        [network.namespace(settings.monitoring_namespace)],
                        network.ports(TRACKING_PORT),
                        "ingress",
                    ),
                ],
                egress=egress,
            ),
            opts=self._child,
        )
