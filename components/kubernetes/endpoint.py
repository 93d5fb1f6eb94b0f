"""InferenceEndpoint: one model, pinned to one registry version, served behind a Service.

A pin change is a rolling update that never removes a ready pod before its replacement passes
``/ready`` (maxUnavailable 0), so promotion and rollback are the same zero-downtime operation.
The model identity reaches the container only as env vars and pod annotations; nothing that
selects pods (labels, Service, HPA, PDB) mentions the version, so a pin change touches the
Deployment alone. With ``kubernetes.kserve`` the same container runs as a KServe
InferenceService instead, and a new pin first takes ``kserveCanaryPercent`` of the traffic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.common import (
    InferenceEndpointArgs,
    validate_instance_count,
    validate_model_pin,
    validate_tags,
)
from components.kubernetes import network
from components.kubernetes.podspec import (
    COLLECTOR_COMPONENT,
    ENDPOINT_COMPONENT,
    MAX_ENDPOINT_NAME,
    SCRAPE_JOB_LABEL,
    SCRATCH_DIR,
    SECRET_MOUNT_DIR,
    TRACKING_COMPONENT,
    camel,
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
from shipway_core import contract
from shipway_core.config import KubernetesSettings
from shipway_core.observability.rules import JOB as ENDPOINT_JOB

SERVING_PORT = contract.SERVING_PORT
API_KEY_FILE = f"{SECRET_MOUNT_DIR}/api-key"
PIN_FILE = f"{SCRATCH_DIR}/pin.json"
_CONTRACT = contract.CONTRACTS[contract.KUBERNETES]
# The image's entrypoint (``python -m shipway.serving.platform``) reads this pod's env as the
# Kubernetes contract in shipway_core.contract defines it; env vars are what `kubectl get -o yaml`
# shows and what a pin change diffs cleanly. No command override: the image is the same on
# every platform.
KSERVE_API = "serving.kserve.io/v1beta1"
KNATIVE_NAMESPACE = "knative-serving"  # the activator proxies requests to KServe pods
MODEL_NAME_ANNOTATION = "shipway.dev/model-name"
MODEL_VERSION_ANNOTATION = "shipway.dev/model-version"
TRACKING_PORT = 5000


def max_replicas(instance_count: int) -> int:
    """Autoscaling headroom: three times the pinned floor, and always room to grow."""
    return max(instance_count * 3, instance_count + 2)


def model_annotations(model: str, version: int) -> dict[str, str]:
    """What is served, readable with ``kubectl get -o yaml`` (and a rollout trigger)."""
    return {MODEL_NAME_ANNOTATION: model, MODEL_VERSION_ANNOTATION: str(version)}


def serving_env(args: InferenceEndpointArgs, name: str) -> list[dict[str, Any]]:
    """The container's whole contract: which model, which registry, where the key file is."""
    env: list[dict[str, Any]] = [
        {"name": contract.MODEL_NAME, "value": args.model_name},
        {"name": contract.MODEL_VERSION, "value": str(args.model_version)},
        # The same pin as a registry URI: what the policy pack's pinning and gate-evidence rules read.
        {"name": contract.MODEL_URI, "value": f"models:/{args.model_name}/{args.model_version}"},
        {"name": contract.TRACKING_URI, "value": args.tracking_uri},
        {"name": contract.API_KEY_FILE, "value": API_KEY_FILE},
        {"name": contract.ENVIRONMENT, "value": args.environment},
        {"name": contract.PORT, "value": str(SERVING_PORT)},
        {"name": contract.PIN_FILE, "value": PIN_FILE},
        {"name": contract.PLATFORM, "value": contract.KUBERNETES},
    ]
    if args.otlp_endpoint is not None:
        env.append({"name": contract.OTLP_ENDPOINT, "value": args.otlp_endpoint})
    if args.explain:
        env.append({"name": contract.EXPLAIN, "value": "true"})
    return env


def serving_container(args: InferenceEndpointArgs, settings: KubernetesSettings, name: str) -> dict[str, Any]:
    """The serving container: restricted, probed, bounded, key mounted as a file."""
    return {
        "name": "serving",
        "image": settings.serving_image,
        "env": serving_env(args, name),
        "ports": [{"name": "http", "container_port": SERVING_PORT, "protocol": "TCP"}],
        # Ready only once the pinned version is loaded and warm: the rollout gate.
        "readiness_probe": http_probe(_CONTRACT.readiness.path, "http", period=5),
        "liveness_probe": http_probe(_CONTRACT.liveness.path, "http", period=10, failures=3),
        # Loading a model can take a while; liveness must not kill a pod that is still loading.
        "startup_probe": http_probe(_CONTRACT.liveness.path, "http", period=5, failures=60),
        "resources": resources("250m", "512Mi", "2", "2Gi"),
        "security_context": container_security_context(),
        # Give load balancers time to stop sending traffic before the process gets SIGTERM.
        "lifecycle": {"pre_stop": {"sleep": {"seconds": 5}}},
        "volume_mounts": [
            {"name": "api-key", "mount_path": SECRET_MOUNT_DIR, "read_only": True},
            {"name": "tmp", "mount_path": SCRATCH_DIR},
        ],
    }


def replica_options(parent: pulumi.Resource) -> pulumi.ResourceOptions:
    """Hand ``spec.replicas`` to the HPA after creation.

    With server-side apply, re-sending ``replicas`` on every `pulumi up` either resets an autoscaled
    Deployment to its floor or fails with a field conflict against kube-controller-manager's
    ``scale`` subresource (pulumi-kubernetes#2491). Listing it in ``ignore_changes`` makes the
    provider drop the field from its apply once another manager owns it (pulumi-kubernetes#2566),
    while the first apply still starts at the pinned floor instead of Kubernetes' default of one.
    """
    return pulumi.ResourceOptions(parent=parent, ignore_changes=["spec.replicas"])


def deployment_strategy() -> dict[str, Any]:
    """Never fewer ready pods than before: a new pod must pass /ready before an old one goes."""
    return {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}}


class InferenceEndpoint(pulumi.ComponentResource):
    """Deployment + Service + HPA + PDB + NetworkPolicy (or a KServe InferenceService) for one model."""

    endpoint_url: pulumi.Output[str]
    """In-cluster URL of the endpoint (the ingress routes to it)."""
    model_name: pulumi.Output[str]
    """Served model name."""
    model_version: pulumi.Output[int]
    """Served registry version (the pin)."""

    def __init__(
        self,
        name: str,
        args: InferenceEndpointArgs,
        settings: KubernetesSettings,
        *,
        api_key_secret: pulumi.Input[str] | None = None,
        namespace: pulumi.Input[str] | None = None,
        external_tracking: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``api_key_secret`` names an existing Secret holding the key; otherwise ``args.api_key``
        becomes one. ``external_tracking`` opens HTTPS egress for a registry outside the cluster."""
        validate_model_pin(args.model_name, args.model_version)
        validate_tags(args.tags)
        validate_object_name(name, MAX_ENDPOINT_NAME)
        validate_instance_count(args.environment, args.instance_count)
        if api_key_secret is None:
            require_secret_value("endpointApiKey", args.api_key, settings)
        super().__init__("shipway:kubernetes:InferenceEndpoint", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self._ns: pulumi.Input[str] = namespace if namespace is not None else namespace_name(args.environment, settings)
        self._name, self._args, self._settings = name, args, settings
        self._labels = selector_labels(name, ENDPOINT_COMPONENT)

        self.api_key_secret: pulumi.CustomResource | None = None
        """The Secret/ExternalSecret created for the key (None when given an existing one)."""
        if api_key_secret is None:
            self.api_key_secret = secret_object(
                f"{name}-api-key",
                f"{name}-api-key",
                self._ns,
                environment=args.environment,
                key="endpointApiKey",
                value=args.api_key,
                settings=settings,
                tags=args.tags,
                component=ENDPOINT_COMPONENT,
                opts=self._child,
            )
            api_key_secret = named_after(self.api_key_secret, f"{name}-api-key")
        self._key_secret: pulumi.Input[str] = api_key_secret

        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata=self._meta(name),
            automount_service_account_token=False,
            opts=self._child,
        )
        self.deployment: k8s.apps.v1.Deployment | None = None
        self.service: k8s.core.v1.Service | None = None
        self.autoscaler: k8s.autoscaling.v2.HorizontalPodAutoscaler | None = None
        self.disruption_budget: k8s.policy.v1.PodDisruptionBudget | None = None
        """Native Deployment/Service/HPA/PDB (None when KServe owns the pods)."""
        self.inference_service: k8s.apiextensions.CustomResource | None = None
        """Native KServe InferenceService (None unless kubernetes.kserve)."""
        if settings.kserve:
            self._kserve()
        else:
            self._workload()
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-network",
            metadata=self._meta(name),
            spec=network.policy_spec(
                self._labels, ingress=self._ingress_rules(), egress=self._egress_rules(external_tracking)
            ),
            opts=self._child,
        )

        self.endpoint_url = pulumi.Output.concat(
            "http://", name, ".", pulumi.Output.from_input(self._ns), ".svc.cluster.local"
        )
        self.model_name = pulumi.Output.from_input(args.model_name)
        self.model_version = pulumi.Output.from_input(args.model_version)
        self.register_outputs(
            {
                "endpoint_url": self.endpoint_url,
                "model_name": self.model_name,
                "model_version": self.model_version,
            }
        )

    def _meta(self, obj: str, annotations: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return metadata(obj, self._ns, ENDPOINT_COMPONENT, self._args.tags, annotations)

    def _service_meta(self, obj: str) -> dict[str, Any]:
        """Service metadata carrying the scrape-job label the ServiceMonitor turns into ``job``."""
        meta = self._meta(obj)
        meta["labels"][SCRAPE_JOB_LABEL] = ENDPOINT_JOB
        return meta

    def _pod_spec(self) -> dict[str, Any]:
        return {
            "service_account_name": self._name,
            "automount_service_account_token": False,
            "security_context": pod_security_context(),
            "containers": [serving_container(self._args, self._settings, self._name)],
            "volumes": [secret_volume("api-key", self._key_secret, "api-key"), scratch_volume("tmp")],
            "topology_spread_constraints": topology_spread(self._labels),
            "termination_grace_period_seconds": 30,
        }

    def _workload(self) -> None:
        """Plain Kubernetes: Deployment, Service, HPA (autoscaling/v2) and PDB."""
        name, args = self._name, self._args
        pin = model_annotations(args.model_name, args.model_version)
        self.deployment = deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=self._meta(name, pin),
            spec={
                # The floor at creation; afterwards the HPA owns the count (see replica_options).
                "replicas": args.instance_count,
                "selector": {"match_labels": self._labels},
                "strategy": deployment_strategy(),
                "min_ready_seconds": 10,
                "progress_deadline_seconds": 600,
                "revision_history_limit": 5,
                "template": {
                    "metadata": {"labels": self._labels, "annotations": pin},
                    "spec": self._pod_spec(),
                },
            },
            opts=replica_options(self),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=self._service_meta(name),
            spec={
                "type": "ClusterIP",
                "selector": self._labels,
                "ports": [{"name": "http", "port": 80, "target_port": "http", "protocol": "TCP"}],
            },
            opts=self._child,
        )
        self.autoscaler = k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-autoscaler",
            metadata=self._meta(name),
            spec={
                "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": name},
                "min_replicas": args.instance_count,
                "max_replicas": max_replicas(args.instance_count),
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "average_utilization": 70},
                        },
                    }
                ],
                # Scale up fast, down slowly: a traffic dip must not strand the next burst.
                "behavior": {
                    "scale_down": {
                        "stabilization_window_seconds": 300,
                        "policies": [{"type": "Pods", "value": 1, "period_seconds": 60}],
                    }
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )
        self.disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-disruption-budget",
            metadata=self._meta(name),
            # One at a time: drains proceed in dev (one replica) and keep n-1 serving in prod.
            spec={
                "max_unavailable": 1,
                "selector": {"match_labels": self._labels},
                "unhealthy_pod_eviction_policy": "AlwaysAllow",
            },
            opts=self._child,
        )

    def _kserve(self) -> None:
        """KServe InferenceService running the same container, canarying each new pin."""
        name, args = self._name, self._args
        pin = model_annotations(args.model_name, args.model_version)
        pod = self._pod_spec()
        pod.pop("topology_spread_constraints")  # Knative owns scheduling of revision pods
        predictor = {
            "min_replicas": args.instance_count,
            "max_replicas": max_replicas(args.instance_count),
            "canary_traffic_percent": self._settings.kserve_canary_percent,
            "labels": self._labels,
            "annotations": pin,
            **pod,
        }
        self.inference_service = k8s.apiextensions.CustomResource(
            f"{name}-inference-service",
            api_version=KSERVE_API,
            kind="InferenceService",
            metadata=self._meta(name, pin),
            spec=camel({"predictor": predictor}),
            opts=self._child,
        )
        # KServe makes its own routing Services; this headless one only lets Prometheus find the
        # predictor pods (they carry our labels) under the shared `shipway-endpoints` job.
        self.service = k8s.core.v1.Service(
            f"{name}-metrics-service",
            metadata=self._service_meta(f"{name}-metrics"),
            spec={
                "cluster_ip": "None",
                "selector": self._labels,
                "ports": [{"name": "http", "port": SERVING_PORT, "target_port": "http", "protocol": "TCP"}],
            },
            opts=self._child,
        )

    def _ingress_rules(self) -> list[dict[str, Any]]:
        peers = [network.namespace(self._settings.ingress_namespace)]
        if self._settings.kserve:
            peers.append(network.namespace(KNATIVE_NAMESPACE))
        return [
            network.rule(peers, network.ports(SERVING_PORT), "ingress"),
            network.rule(
                [network.namespace(self._settings.monitoring_namespace)],
                network.ports(SERVING_PORT),
                "ingress",
            ),
        ]

    def _egress_rules(self, external_tracking: bool) -> list[dict[str, Any]]:
        rules = [network.rule([network.pods_of(TRACKING_COMPONENT)], network.ports(TRACKING_PORT), "egress")]
        if external_tracking:
            rules = [network.rule([network.anywhere_outside_cluster()], network.ports(443), "egress")]
        if self._args.otlp_endpoint is not None:
            rules.append(network.rule([network.pods_of(COLLECTOR_COMPONENT)], network.ports(4317, 4318), "egress"))
        return rules
