"""EnvironmentNamespace: the walls every other Kubernetes component lives inside.

One namespace per environment, with Pod Security "restricted" enforced (a pod that could run as
root or escalate is rejected by the API server, not just flagged), a quota so one environment
cannot eat the cluster, default container limits, and a default-deny NetworkPolicy: nothing
talks to anything until a component opens exactly the path it needs. DNS egress is the one
allow that everyone needs, so it lives here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.common import validate_tags
from components.kubernetes import network
from components.kubernetes.podspec import (
    MAX_NAMESPACE_COMPONENT_NAME,
    metadata,
    namespace_name,
    validate_object_name,
)
from shipway_core.config import KubernetesSettings

COMPONENT = "namespace"
POD_SECURITY_LEVEL = "restricted"


@dataclass
class EnvironmentNamespaceArgs:
    """One environment's namespace (there is no shared Args for this: only Kubernetes has it)."""

    environment: str
    tags: Mapping[str, str]


def pod_security_labels() -> dict[str, str]:
    """Enforce, audit and warn at "restricted", tracking the cluster's own version of the profile."""
    labels: dict[str, str] = {}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = POD_SECURITY_LEVEL
        labels[f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    return labels


def quota_hard(settings: KubernetesSettings) -> dict[str, str]:
    """Hard quota: compute from settings; no LoadBalancer/NodePort services (exposure goes via ingress)."""
    return {
        "requests.cpu": settings.quota_cpu,
        "requests.memory": settings.quota_memory,
        "limits.cpu": settings.quota_cpu,
        "limits.memory": settings.quota_memory,
        "pods": "100",
        "persistentvolumeclaims": "10",
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }


def limit_range_spec() -> dict[str, object]:
    """Defaults for containers that forget resources, and a ceiling for those that ask too much."""
    return {
        "limits": [
            {
                "type": "Container",
                "default": {"cpu": "500m", "memory": "512Mi"},
                "default_request": {"cpu": "100m", "memory": "128Mi"},
                "max": {"cpu": "4", "memory": "8Gi"},
            }
        ]
    }


def dns_egress_spec() -> dict[str, object]:
    """Every pod may resolve names via kube-dns, and nothing else through this policy."""
    dns_peer = {
        "namespace_selector": {"match_labels": {network.NAMESPACE_NAME_LABEL: "kube-system"}},
        "pod_selector": {"match_labels": {"k8s-app": "kube-dns"}},
    }
    return {
        "pod_selector": {},
        "policy_types": ["Egress"],
        "egress": [network.rule([dns_peer], network.ports(53, protocol="UDP") + network.ports(53), "egress")],
    }


class EnvironmentNamespace(pulumi.ComponentResource):
    """Namespace + Pod Security labels + ResourceQuota + LimitRange + default-deny networking."""

    namespace_name: pulumi.Output[str]
    """Name of the namespace; depend on this so children are created after it exists."""

    def __init__(
        self,
        name: str,
        args: EnvironmentNamespaceArgs,
        settings: KubernetesSettings,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        validate_tags(args.tags)
        validate_object_name(name, MAX_NAMESPACE_COMPONENT_NAME)
        super().__init__("shipway:kubernetes:EnvironmentNamespace", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns_name = namespace_name(args.environment, settings)

        ns_meta = metadata(ns_name, None, COMPONENT, args.tags)
        ns_meta["labels"].update(pod_security_labels())
        self.namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata=ns_meta, opts=child)
        """The native Namespace: the escape hatch."""
        ns = self.namespace.metadata.apply(lambda m: m.name)

        self.quota = k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=metadata(f"{name}-quota", ns, COMPONENT, args.tags),
            spec={"hard": quota_hard(settings)},
            opts=child,
        )
        self.limit_range = k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=metadata(f"{name}-limits", ns, COMPONENT, args.tags),
            spec=limit_range_spec(),
            opts=child,
        )
        self.default_deny = k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata=metadata("default-deny", ns, COMPONENT, args.tags),
            spec={"pod_selector": {}, "policy_types": ["Ingress", "Egress"]},
            opts=child,
        )
        self.dns_egress = k8s.networking.v1.NetworkPolicy(
            f"{name}-allow-dns",
            metadata=metadata("allow-dns-egress", ns, COMPONENT, args.tags),
            spec=dns_egress_spec(),
            opts=child,
        )

        self.namespace_name = ns
        self.register_outputs({"namespace_name": self.namespace_name})
