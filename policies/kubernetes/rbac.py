"""Kubernetes RBAC rules: no wildcard grants, no cluster-admin bindings."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, get, items

ROLES = (
    "kubernetes:rbac.authorization.k8s.io/v1:Role",
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
)
BINDINGS = (
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
)


def _disallow_wildcards(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A service account token that leaks can only do what its role names."""
    if args.resource_type in BINDINGS:
        if get(args.props, "roleRef.name") == "cluster-admin":
            report_violation(
                "binds cluster-admin; bind a namespaced Role with the verbs the workload needs", None
            )
        return
    if args.resource_type not in ROLES:
        return
    for index, rule in enumerate(items(get(args.props, "rules"))):
        wild = [f"{field}" for field in ("apiGroups", "resources", "verbs") if "*" in items(get(rule, field))]
        if wild:
            report_violation(
                f"rules[{index}] uses '*' in {', '.join(wild)}; list exact API groups, resources and verbs",
                None,
            )


role_disallow_wildcards = ResourceValidationPolicy(
    name="kubernetes-rbac-role-disallow-wildcards",
    description="RBAC roles name exact API groups, resources and verbs; nothing binds cluster-admin.",
    validate=_disallow_wildcards,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Replace '*' with the exact api_groups, resources and verbs (e.g. get/list/watch on configmaps) and "
        "bind a namespaced Role instead of cluster-admin."
    ),
)

POLICIES = [role_disallow_wildcards]
