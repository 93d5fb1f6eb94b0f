"""Kubernetes network rules: every namespace starts from default-deny."""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation, Severity, StackValidationArgs, StackValidationPolicy

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get, items, of_type

NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _is_default_deny(policy: Any) -> bool:
    """Selects every pod, covers Ingress and Egress, allows nothing itself (unknown parts: judged at up)."""
    spec = get(policy.props, "spec")
    if spec is UNKNOWN or UNKNOWN in (get(spec, "podSelector"), get(spec, "policyTypes")):
        return True
    selector = get(spec, "podSelector")
    selects_all = (
        selector is not None and not get(selector, "matchLabels") and not get(selector, "matchExpressions")
    )
    types = set(items(get(spec, "policyTypes")))
    return (
        selects_all
        and {"Ingress", "Egress"} <= types
        and not items(get(spec, "ingress"))
        and not items(get(spec, "egress"))
    )


def _namespaces(args: StackValidationArgs) -> dict[str, Any]:
    """Namespace name -> the resource to report against (declared ones, plus those workloads use)."""
    found: dict[str, Any] = {}
    for ns in of_type(args, NAMESPACE):
        name = get(ns.props, "metadata.name")
        if isinstance(name, str):
            found[name] = ns
    for resource in args.resources:
        if not resource.resource_type.startswith("kubernetes:") or resource.resource_type == NAMESPACE:
            continue
        name = get(resource.props, "metadata.namespace")
        if isinstance(name, str) and name not in found:
            found[name] = resource
    return found


def _require_default_deny(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Pods talk only along paths someone allowed on purpose; a compromised pod cannot roam."""
    policies = of_type(args, NETWORK_POLICY)
    for name, resource in sorted(_namespaces(args).items()):
        mine = [p for p in policies if get(p.props, "metadata.namespace") in (name, UNKNOWN)]
        if not any(_is_default_deny(p) for p in mine):
            report_violation(
                f"namespace '{name}' has no default-deny NetworkPolicy (podSelector {{}}, "
                "policyTypes Ingress and Egress, no rules)",
                resource.urn,
            )


namespace_require_default_deny = StackValidationPolicy(
    name="kubernetes-networking-namespace-require-default-deny",
    description="Every namespace has a default-deny NetworkPolicy for ingress and egress.",
    validate=_require_default_deny,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Add a networking.k8s.io/v1 NetworkPolicy in the namespace with pod_selector={}, policy_types="
        "['Ingress', 'Egress'] and no rules, then add narrow allow policies (DNS, ingress controller -> "
        "serving port, serving -> tracking server)."
    ),
)

POLICIES = [namespace_require_default_deny]
