"""Kubernetes workload rules: hardened containers, pinned models, prod-grade serving replicas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies._core import (
    DEFAULT_ENFORCEMENT,
    MIN_PROD_INSTANCES,
    UNKNOWN,
    get,
    is_prod,
    items,
    prod_only,
    scalers_of,
    show,
)
from policies.ml.pinning import describe, kubernetes_model_refs

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
WORKLOADS = (
    DEPLOYMENT,
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:batch/v1:CronJob",
    "kubernetes:core/v1:Pod",
    # What components/kubernetes/endpoint.py creates instead of a Deployment when KServe is on.
    INFERENCE_SERVICE,
)
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"


def pod_spec(resource_type: str, props: Any) -> Any:
    """The pod spec inside any workload kind."""
    if resource_type == "kubernetes:core/v1:Pod":
        return get(props, "spec")
    if resource_type == "kubernetes:batch/v1:CronJob":
        return get(props, "spec.jobTemplate.spec.template.spec")
    if resource_type == INFERENCE_SERVICE:
        return get(props, "spec.predictor")  # a KServe predictor is a pod spec plus scaling fields
    return get(props, "spec.template.spec")


def containers(resource_type: str, props: Any) -> Iterator[tuple[str, Any, Any]]:
    """``(label, container, pod spec)`` for every container and init container."""
    spec = pod_spec(resource_type, props)
    for key in ("initContainers", "containers"):
        for container in items(get(spec, key)):
            yield f"{key}[{get(container, 'name', '?')}]", container, spec


def _effective(container: Any, spec: Any, key: str) -> Any:
    """A securityContext field, container level first, then pod level (as the kubelet resolves it)."""
    value = get(container, f"securityContext.{key}")
    return get(spec, f"securityContext.{key}") if value is None else value


def _require_non_root(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A container escape from root is a node compromise; from an unprivileged uid it mostly is not."""
    if args.resource_type not in WORKLOADS:
        return
    for label, container, spec in containers(args.resource_type, args.props):
        non_root, uid = _effective(container, spec, "runAsNonRoot"), _effective(container, spec, "runAsUser")
        if UNKNOWN in (non_root, uid):
            continue
        if uid == 0 or (non_root is not True and not (isinstance(uid, int | float) and uid > 0)):
            report_violation(
                f"{label} may run as root; set securityContext.runAsNonRoot=true and a non-zero runAsUser",
                None,
            )


workload_require_non_root = ResourceValidationPolicy(
    name="kubernetes-apps-workload-require-non-root",
    description="Containers run as a non-root user.",
    validate=_require_non_root,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Set spec.template.spec.securityContext (or the container's securityContext) run_as_non_root=True "
        "and run_as_user=<non-zero uid>; build the image with a non-root USER."
    ),
)


def _require_readonly_rootfs(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """An immutable root filesystem stops an attacker from persisting tooling in the container."""
    if args.resource_type not in WORKLOADS:
        return
    for label, container, _spec in containers(args.resource_type, args.props):
        if get(container, "securityContext.readOnlyRootFilesystem") not in (True, UNKNOWN):
            report_violation(f"{label} securityContext.readOnlyRootFilesystem is not true", None)


workload_require_readonly_rootfs = ResourceValidationPolicy(
    name="kubernetes-apps-workload-require-readonly-rootfs",
    description="Containers run with a read-only root filesystem.",
    validate=_require_readonly_rootfs,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    remediation_steps=(
        "Set securityContext.read_only_root_filesystem=True on every container and mount an emptyDir "
        "at the paths the process writes (e.g. /tmp)."
    ),
)


def _disallow_privilege_escalation(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """setuid binaries and privileged mode turn a bug in the app into root on the node."""
    if args.resource_type not in WORKLOADS:
        return
    for label, container, _spec in containers(args.resource_type, args.props):
        if get(container, "securityContext.privileged") is True:
            report_violation(f"{label} is privileged; remove securityContext.privileged", None)
        if get(container, "securityContext.allowPrivilegeEscalation") not in (False, UNKNOWN):
            report_violation(f"{label} securityContext.allowPrivilegeEscalation is not false", None)


workload_disallow_privilege_escalation = ResourceValidationPolicy(
    name="kubernetes-apps-workload-disallow-privilege-escalation",
    description="Containers are not privileged and cannot escalate privileges.",
    validate=_disallow_privilege_escalation,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Set securityContext.allow_privilege_escalation=False, drop privileged, and "
        "capabilities.drop=['ALL'] on every container."
    ),
)


def _pin_registry_version(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The pods serve the exact version that passed the gates."""
    if args.resource_type not in WORKLOADS:
        return
    for ref in kubernetes_model_refs(args.props):
        if ref.problem:
            report_violation(describe(ref), None)


workload_pin_registry_version = ResourceValidationPolicy(
    name="kubernetes-apps-workload-pin-registry-version",
    description="Serving workloads receive an exact registry version in SHIPWAY_MODEL_URI/MLFLOW_MODEL_URI.",
    validate=_pin_registry_version,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Set the container env SHIPWAY_MODEL_URI='models:/<name>/<N>' with N pinned "
    "in the stack file.",
)


def is_serving(resource_type: str, props: Any) -> bool:
    """A workload that serves a model (it is handed a model URI)."""
    return resource_type in WORKLOADS and bool(kubernetes_model_refs(props))


# Where each serving kind says how many pods it keeps at least (unset = 1 for both).
_REPLICA_FLOOR = {DEPLOYMENT: "spec.replicas", INFERENCE_SERVICE: "spec.predictor.minReplicas"}


def _require_min_replicas(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A single serving pod means downtime on every rollout and node drain."""
    path = _REPLICA_FLOOR.get(args.resource_type)
    if path is None or not is_prod(args) or not is_serving(args.resource_type, args.props):
        return
    replicas = get(args.props, path, 1)
    if replicas is not UNKNOWN and replicas < MIN_PROD_INSTANCES:
        report_violation(f"{path} is {show(replicas)}; prod serving runs at least {MIN_PROD_INSTANCES}", None)


deployment_require_min_replicas = ResourceValidationPolicy(
    name="kubernetes-apps-deployment-require-min-replicas",
    description="Prod serving Deployments (spec.replicas) and KServe InferenceServices "
    "(spec.predictor.minReplicas) run at least two replicas.",
    validate=_require_min_replicas,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    **prod_only(),
    remediation_steps="Set shipway:models.<name>.instances >= 2 in stacks/Pulumi.prod.yaml (spec.replicas).",
)


def _keeps_floor(hpa: Any) -> bool:
    """The autoscaler never goes below the prod floor (unknown at preview counts as yes)."""
    low = get(hpa.props, "spec.minReplicas", 1)
    return low is UNKNOWN or low >= MIN_PROD_INSTANCES


def _scales(hpa: Any, deployment: Any) -> bool:
    """The HPA targets this Deployment by name (or a name unknown at preview), or depends on it."""
    if get(hpa.props, "spec.scaleTargetRef.kind") != "Deployment":
        return False
    name = get(deployment.props, "metadata.name")
    return get(hpa.props, "spec.scaleTargetRef.name") in (name, UNKNOWN) or any(
        d.urn == deployment.urn for d in hpa.dependencies
    )


def _require_autoscaling(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Serving capacity follows traffic; an HPA with min >= 2 keeps the floor."""
    if not is_prod(args):
        return
    for deployment, mine in scalers_of(args, DEPLOYMENT, HPA, _scales):
        if not is_serving(deployment.resource_type, deployment.props):
            continue
        if not mine:
            report_violation(f"deployment '{deployment.name}' has no HorizontalPodAutoscaler", deployment.urn)
        elif not any(_keeps_floor(h) for h in mine):
            report_violation(
                f"deployment '{deployment.name}' autoscaler minReplicas is below {MIN_PROD_INSTANCES}",
                deployment.urn,
            )


deployment_require_autoscaling = StackValidationPolicy(
    name="kubernetes-apps-deployment-require-autoscaling",
    description="Prod serving Deployments have a HorizontalPodAutoscaler with minReplicas >= 2.",
    validate=_require_autoscaling,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    **prod_only(),
    remediation_steps=(
        "Add a kubernetes autoscaling/v2 HorizontalPodAutoscaler with scale_target_ref pointing at the "
        "Deployment, min_replicas>=2 and a CPU or requests-per-second target."
    ),
)

POLICIES = [
    workload_require_non_root,
    workload_require_readonly_rootfs,
    workload_disallow_privilege_escalation,
    workload_pin_registry_version,
    deployment_require_min_replicas,
    deployment_require_autoscaling,
]
