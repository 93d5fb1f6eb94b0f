"""TrackingServer: MLflow + PostgreSQL children, secret files, artifact stores, network allows."""

from __future__ import annotations

import pulumi
import pytest
from k8s_support import env_of, is_secret, plain, pod_spec

from components.common import TrackingServerArgs
from components.kubernetes.tracking import TrackingServer
from shipway_core.config import KubernetesSettings
from tests.support.recording import Recording, record, resolve

TAGS = {
    "owner": "ml-platform",
    "cost-center": "cc-1234",
    "environment": "dev",
    "data-classification": "confidential",
    "managed-by": "shipway",
}
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
RESTRICTED_KEYS = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def build(settings: KubernetesSettings | None = None, protect: bool = False, **kwargs: object) -> Recording:
    def program() -> TrackingServer:
        kwargs.setdefault("db_password", pulumi.Output.secret("p-456"))
        server = TrackingServer(
            "mlflow",
            TrackingServerArgs("dev", TAGS, protect=protect),
            settings or KubernetesSettings(),
            **kwargs,
        )
        pulumi.export("uri", server.tracking_uri)
        return server

    return record(program)


@pytest.fixture(scope="module")
def rec() -> Recording:
    return build()


def test_children_exact_types_and_names(rec: Recording) -> None:
    assert sorted((r.type, r.name) for r in rec.resources if r.type.startswith("kubernetes:")) == [
        ("kubernetes:apps/v1:Deployment", "mlflow-deployment"),
        ("kubernetes:apps/v1:StatefulSet", "mlflow-postgres-statefulset"),
        ("kubernetes:core/v1:PersistentVolumeClaim", "mlflow-artifacts"),
        ("kubernetes:core/v1:Secret", "mlflow-db-password"),
        ("kubernetes:core/v1:Service", "mlflow-postgres-service"),
        ("kubernetes:core/v1:Service", "mlflow-service"),
        ("kubernetes:core/v1:ServiceAccount", "mlflow-account"),
        ("kubernetes:core/v1:ServiceAccount", "mlflow-postgres-account"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "mlflow-network"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "mlflow-postgres-network"),
    ]
    assert rec.one("shipway:kubernetes:TrackingServer").name == "mlflow"


def test_tracking_uri_is_the_in_cluster_service(rec: Recording) -> None:
    server = rec.result
    assert resolve(server.tracking_uri) == "http://mlflow.shipway-dev.svc.cluster.local:5000"
    assert resolve(server.registry_uri) == resolve(server.tracking_uri)


@pytest.mark.parametrize(("type_", "uid"), [(DEPLOYMENT, 10001), (STATEFULSET, 999)])
def test_every_container_is_restricted_and_bounded(rec: Recording, type_: str, uid: int) -> None:
    spec = pod_spec(rec.one(type_))
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        assert RESTRICTED_KEYS.items() <= container["securityContext"].items()
        assert container["securityContext"]["runAsUser"] == uid
        assert set(container["resources"]) == {"requests", "limits"}
        assert "readinessProbe" in container and "livenessProbe" in container


def test_mlflow_probes_and_command_read_password_from_file(rec: Recording) -> None:
    (container,) = pod_spec(rec.one(DEPLOYMENT))["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["command"][:2] == ["/bin/sh", "-c"]
    script = container["command"][2]
    assert script.startswith(
        'PGPASSWORD="$(cat /var/run/secrets/shipway/db-password)"; export PGPASSWORD; '
        "exec mlflow server --host 0.0.0.0 --port 5000"
    )
    assert (
        "--backend-store-uri 'postgresql://mlflow@mlflow-postgres.shipway-dev.svc.cluster.local:5432/mlflow'" in script
    )
    assert "--serve-artifacts --artifacts-destination '/mlflow/artifacts'" in script
    assert script.endswith(
        " --allowed-hosts 'mlflow,mlflow:*,mlflow.shipway-dev,mlflow.shipway-dev:*,mlflow.shipway-dev.svc,"
        "mlflow.shipway-dev.svc:*,mlflow.shipway-dev.svc.cluster.local,mlflow.shipway-dev.svc.cluster.local:*,"
        "localhost:*,127.0.0.1:*'"
    )
    assert "p-456" not in str(container)
    # HOME is an emptyDir; MLflow's usage reports stay off (they would leave the cluster for the vendor).
    assert env_of(container) == {"HOME": "/tmp", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}  # noqa: S108


def test_mlflow_exposes_metrics_scraped_as_the_pipeline_job_like_the_local_server(rec: Recording) -> None:
    import re
    from pathlib import Path

    from shipway_core.observability.pipeline import PIPELINE_JOBS

    (container,) = pod_spec(rec.one(DEPLOYMENT))["containers"]
    assert " --expose-prometheus /tmp/prometheus " in container["command"][2]
    svc = plain(rec.one("kubernetes:core/v1:Service", "mlflow-service").inputs)
    assert svc["metadata"]["labels"]["shipway.dev/scrape-job"] == "mlflow"
    assert "mlflow" in PIPELINE_JOBS
    # The image's exporter is the one the local server runs (pyproject pin).
    root = Path(__file__).resolve().parents[3]
    pin = re.compile(r"prometheus[-_]flask[-_]exporter==([0-9.]+)")
    image = pin.findall((root / "containers" / "mlflow-requirements.txt").read_text())
    local = pin.findall((root / "pyproject.toml").read_text())
    assert image == local and len(local) == 1, (image, local)


def test_db_password_secret_is_encrypted_and_mounted_in_both_pods(rec: Recording) -> None:
    secret = rec.one("kubernetes:core/v1:Secret", "mlflow-db-password")
    assert is_secret(secret.inputs["stringData"])
    assert plain(secret.inputs["stringData"]) == {"value": "p-456"}
    volume = {
        "name": "db-password",
        "secret": {
            "secretName": "mlflow-db-password",
            "defaultMode": 0o440,
            "items": [{"key": "value", "path": "db-password"}],
        },
    }
    for type_ in (DEPLOYMENT, STATEFULSET):
        spec = pod_spec(rec.one(type_))
        assert volume in spec["volumes"]
        assert all("valueFrom" not in e for c in spec["containers"] for e in c.get("env", []))
    (pg,) = pod_spec(rec.one(STATEFULSET))["containers"]
    assert env_of(pg)["POSTGRES_PASSWORD_FILE"] == "/var/run/secrets/shipway/db-password"  # noqa: S105


def test_postgres_statefulset_keeps_its_volume(rec: Recording) -> None:
    spec = plain(rec.one(STATEFULSET).inputs["spec"])
    assert spec["serviceName"] == "mlflow-postgres"
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    svc = plain(rec.one("kubernetes:core/v1:Service", "mlflow-postgres-service").inputs)
    assert svc["spec"]["clusterIP"] == "None"


def test_pvc_artifacts_use_recreate_and_single_replica(rec: Recording) -> None:
    spec = plain(rec.one(DEPLOYMENT).inputs["spec"])
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["replicas"] == 1
    assert {"name": "artifacts", "persistentVolumeClaim": {"claimName": "mlflow-artifacts"}} in (
        spec["template"]["spec"]["volumes"]
    )


def test_network_policies(rec: Recording) -> None:
    ns_label = "kubernetes.io/metadata.name"
    server = plain(rec.one(NETPOL, "mlflow-network").inputs["spec"])
    assert server["podSelector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "mlflow",
            "app.kubernetes.io/component": "tracking-server",
            "app.kubernetes.io/part-of": "shipway",
        }
    }
    assert server["ingress"] == [
        {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/component": "inference-endpoint",
                            "app.kubernetes.io/part-of": "shipway",
                        }
                    }
                }
            ],
            "ports": [{"port": 5000, "protocol": "TCP"}],
        },
        {
            "from": [{"namespaceSelector": {"matchLabels": {ns_label: "monitoring"}}}],
            "ports": [{"port": 5000, "protocol": "TCP"}],
        },
    ]
    assert server["egress"] == [
        {
            "to": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/component": "tracking-database",
                            "app.kubernetes.io/part-of": "shipway",
                        }
                    }
                }
            ],
            "ports": [{"port": 5432, "protocol": "TCP"}],
        }
    ]
    database = plain(rec.one(NETPOL, "mlflow-postgres-network").inputs["spec"])
    assert database["ingress"] == [
        {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/component": "tracking-server",
                            "app.kubernetes.io/part-of": "shipway",
                        }
                    }
                }
            ],
            "ports": [{"port": 5432, "protocol": "TCP"}],
        }
    ]
    assert "egress" not in database


def test_s3_artifacts_with_external_database_and_irsa() -> None:
    settings = KubernetesSettings(
        artifact_store="s3",
        artifact_uri="s3://models/mlflow",
        artifact_identity="arn:aws:iam::000000000000:role/mlflow",
        tracking_database_uri="postgresql://mlflow@db.internal:5432/mlflow",
    )
    rec = build(settings)
    assert rec.of_type(STATEFULSET) == [] and rec.of_type("kubernetes:core/v1:PersistentVolumeClaim") == []
    deployment = plain(rec.one(DEPLOYMENT).inputs["spec"])
    assert deployment["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    script = deployment["template"]["spec"]["containers"][0]["command"][2]
    assert "--backend-store-uri 'postgresql://mlflow@db.internal:5432/mlflow'" in script
    assert "--artifacts-destination 's3://models/mlflow'" in script
    account = plain(rec.one("kubernetes:core/v1:ServiceAccount", "mlflow-account").inputs)
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ("arn:aws:iam::000000000000:role/mlflow")
    assert account["automountServiceAccountToken"] is False
    egress = plain(rec.one(NETPOL, "mlflow-network").inputs["spec"])["egress"]
    assert [e["ports"] for e in egress] == [
        [{"port": 5432, "protocol": "TCP"}],
        [{"port": 443, "protocol": "TCP"}],
    ]


def test_azure_blob_uses_workload_identity_label() -> None:
    settings = KubernetesSettings(
        artifact_store="azureblob",
        artifact_identity="00000000-0000-0000-0000-0000000000aa",
        artifact_uri="wasbs://models@acct.blob.core.windows.net/mlflow",
    )
    labels = plain(build(settings).one(DEPLOYMENT).inputs["spec"])["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"


def test_prod_protect_marks_stateful_children_only() -> None:
    rec = build(protect=True)
    assert rec.one(STATEFULSET).inputs["metadata"]["name"] == "mlflow-postgres"
    # Mocks do not surface resource options; the component keeps them on its stateful opts.
    assert rec.result._stateful.protect is True and rec.result._stateful.retain_on_delete is True
    assert rec.result._child.protect is None


@pytest.mark.parametrize(
    ("settings", "kwargs", "message"),
    [
        (
            KubernetesSettings(artifact_store="s3"),
            {},
            "artifact_uri: None is not valid for artifact_store 's3'; use a s3:// URI",
        ),
        (
            KubernetesSettings(artifact_store="azureblob", artifact_uri="s3://x/y"),
            {},
            "artifact_uri: 's3://x/y' is not valid for artifact_store 'azureblob'; use a wasbs:// URI",
        ),
        (
            KubernetesSettings(),
            {"db_password": None},
            "trackingDbPassword: None is not valid; set it with `pulumi config set --secret "
            "shipway:trackingDbPassword` or turn on kubernetes.externalSecrets",
        ),
        (
            KubernetesSettings(),
            {"db_password": "x", "db_password_secret": "y"},
            "db_password: give db_password or db_password_secret, not both",
        ),
    ],
)
def test_invalid_settings_rejected(settings: KubernetesSettings, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as err:
        TrackingServer("mlflow", TrackingServerArgs("dev", TAGS), settings, **kwargs)
    assert str(err.value) == message


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside mlflow's own imports
def test_allowed_hosts_are_accepted_by_mlflows_own_host_check() -> None:
    from mlflow.server.security_utils import is_allowed_host_header

    from components.kubernetes.tracking import allowed_hosts

    hosts = allowed_hosts("mlflow", "shipway-dev").split(",")
    for host in (
        "mlflow.shipway-dev.svc.cluster.local:5000",
        "mlflow:5000",
        "mlflow.shipway-dev",
        "localhost:5000",
    ):
        assert is_allowed_host_header(hosts, host), host
    for host in ("evil.example.com", "mlflow.other-ns.svc.cluster.local:5000"):
        assert not is_allowed_host_header(hosts, host), host
