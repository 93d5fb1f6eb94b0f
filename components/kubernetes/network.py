"""NetworkPolicy pieces: the namespace denies everything, each component allows what it needs.

Allows are written next to the component that needs them (the endpoint owns "ingress may reach
me", the tracking server owns "endpoints may reach me") so deleting a component deletes its
holes in the wall too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from components.kubernetes.podspec import COMPONENT_LABEL, PART_OF, PART_OF_LABEL

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace


def pods_of(component: str) -> dict[str, Any]:
    """Peer: Shipway pods of one component in the policy's own namespace."""
    return {"pod_selector": {"match_labels": {COMPONENT_LABEL: component, PART_OF_LABEL: PART_OF}}}


def namespace(name: str) -> dict[str, Any]:
    """Peer: every pod of another namespace (ingress controller, Prometheus)."""
    return {"namespace_selector": {"match_labels": {NAMESPACE_NAME_LABEL: name}}}


def anywhere_outside_cluster() -> dict[str, Any]:
    """Peer: public addresses only (object storage, SaaS backends); private ranges stay closed."""
    return {"ip_block": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}}


def ports(*numbers: int, protocol: str = "TCP") -> list[dict[str, Any]]:
    """Port list for a rule."""
    return [{"port": n, "protocol": protocol} for n in numbers]


def rule(peers: Sequence[Mapping[str, Any]], port_list: Sequence[Mapping[str, Any]], direction: str) -> dict[str, Any]:
    """One ingress (``from``) or egress (``to``) rule."""
    key = "from_" if direction == "ingress" else "to"
    return {key: [dict(p) for p in peers], "ports": [dict(p) for p in port_list]}


def policy_spec(
    pod_labels: Mapping[str, str],
    ingress: Sequence[Mapping[str, Any]] = (),
    egress: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A policy selecting ``pod_labels``; both directions listed so the rules are explicit."""
    spec: dict[str, Any] = {
        "pod_selector": {"match_labels": dict(pod_labels)},
        "policy_types": ["Ingress", "Egress"],
    }
    if ingress:
        spec["ingress"] = [dict(r) for r in ingress]
    if egress:
        spec["egress"] = [dict(r) for r in egress]
    return spec
