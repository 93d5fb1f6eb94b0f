"""Kubernetes rules: one property changed from the compliant baseline, exact violation message."""

from __future__ import annotations

import pytest

from policies.registry import by_name
from tests.policies.baselines import DEV, RESOURCES
from tests.policies.cases import run_case, run_stack_case
from tests.policies.support import Case, StackCase, check

POD = "spec.template.spec"
C0 = f"{POD}.containers.0"
PIN = "serve an exact registry version such as 'models:/<name>/<version>'"

CASES = [
    Case(
        "kubernetes-apps-workload-require-non-root",
        "k8s-serving",
        f"{POD}.securityContext.runAsUser",
        0,
        [
            "containers[serving] may run as root; set securityContext.runAsNonRoot=true and a "
            "non-zero runAsUser"
        ],
    ),
    Case(
        "kubernetes-apps-workload-require-non-root",
        "k8s-serving",
        f"{POD}.securityContext",
        {},
        [
            "containers[serving] may run as root; set securityContext.runAsNonRoot=true and a "
            "non-zero runAsUser"
        ],
    ),
    Case(
        "kubernetes-apps-workload-require-readonly-rootfs",
        "k8s-serving",
        f"{C0}.securityContext.readOnlyRootFilesystem",
        False,
        ["containers[serving] securityContext.readOnlyRootFilesystem is not true"],
    ),
    Case(
        "kubernetes-apps-workload-disallow-privilege-escalation",
        "k8s-serving",
        f"{C0}.securityContext.allowPrivilegeEscalation",
        True,
        ["containers[serving] securityContext.allowPrivilegeEscalation is not false"],
    ),
    Case(
        "kubernetes-apps-workload-disallow-privilege-escalation",
        "k8s-serving",
        f"{C0}.securityContext.privileged",
        True,
        ["containers[serving] is privileged; remove securityContext.privileged"],
    ),
    Case(
        "kubernetes-apps-workload-pin-registry-version",
        "k8s-serving",
        f"{C0}.env.0.value",
        "models:/churn@prod",
        [f"containers[serving].env.SHIPWAY_MODEL_URI 'models:/churn@prod' is a floating alias 'prod'; {PIN}"],
    ),
    Case(
        "kubernetes-apps-workload-pin-registry-version",
        "k8s-serving",
        f"{C0}.env.0.value",
        "runs:/0a1b2c/model",
        [
            "containers[serving].env.SHIPWAY_MODEL_URI 'runs:/0a1b2c/model' is a raw artifact path "
            "that bypasses "
            f"the registry; {PIN}"
        ],
    ),
    Case(
        "kubernetes-apps-deployment-require-min-replicas",
        "k8s-serving",
        "spec.replicas",
        1,
        ["spec.replicas is 1; prod serving runs at least 2"],
    ),
    Case(
        "kubernetes-rbac-role-disallow-wildcards",
        "k8s-role",
        "rules.0.verbs",
        ["*"],
        ["rules[0] uses '*' in verbs; list exact API groups, resources and verbs"],
    ),
    Case(
        "kubernetes-rbac-role-disallow-wildcards",
        "k8s-binding",
        "roleRef.name",
        "cluster-admin",
        ["binds cluster-admin; bind a namespaced Role with the verbs the workload needs"],
    ),
]

DENY = "has no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress and Egress, no rules)"
STACK_CASES = [
    StackCase(
        "kubernetes-networking-namespace-require-default-deny",
        "kubernetes",
        "default-deny",
        None,
        None,
        [(f"namespace 'shipway-prod' {DENY}", "namespace")],
    ),
    StackCase(
        "kubernetes-networking-namespace-require-default-deny",
        "kubernetes",
        "default-deny",
        "spec.policyTypes",
        ["Ingress"],
        [(f"namespace 'shipway-prod' {DENY}", "namespace")],
    ),
    StackCase(
        "kubernetes-networking-namespace-require-default-deny",
        "kubernetes",
        "default-deny",
        "spec.podSelector",
        {"matchLabels": {"app": "churn"}},
        [(f"namespace 'shipway-prod' {DENY}", "namespace")],
    ),
    StackCase(
        "kubernetes-networking-namespace-require-default-deny",
        "kubernetes",
        "churn",
        "metadata.namespace",
        "shipway-batch",
        [(f"namespace 'shipway-batch' {DENY}", "churn")],
    ),
    StackCase(
        "kubernetes-apps-deployment-require-autoscaling",
        "kubernetes",
        "churn-hpa",
        None,
        None,
        [("deployment 'churn' has no HorizontalPodAutoscaler", "churn")],
    ),
    StackCase(
        "kubernetes-apps-deployment-require-autoscaling",
        "kubernetes",
        "churn-hpa",
        "spec.minReplicas",
        1,
        [("deployment 'churn' autoscaler minReplicas is below 2", "churn")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_resource_rule_reports_the_mutation(case: Case) -> None:
    run_case(case)


@pytest.mark.parametrize("case", STACK_CASES, ids=lambda c: c.id)
def test_stack_rule_reports_the_mutation(case: StackCase) -> None:
    run_stack_case(case)


def test_container_level_security_context_overrides_the_pod() -> None:
    base = RESOURCES["k8s-serving"]
    props = {**base.props}
    container = {**props["spec"]["template"]["spec"]["containers"][0]}
    container["securityContext"] = {**container["securityContext"], "runAsUser": 0}
    props["spec"] = {
        **props["spec"],
        "template": {"spec": {**props["spec"]["template"]["spec"], "containers": [container]}},
    }
    assert check(by_name("kubernetes-apps-workload-require-non-root"), base.type, props) == [
        "containers[serving] may run as root; set securityContext.runAsNonRoot=true and a non-zero runAsUser"
    ]


def test_init_containers_and_cronjobs_are_checked_too() -> None:
    pod = {
        "containers": [],
        "initContainers": [
            {"name": "migrate", "image": "mlflow", "securityContext": {"readOnlyRootFilesystem": False}}
        ],
    }
    props = {"spec": {"jobTemplate": {"spec": {"template": {"spec": pod}}}}}
    assert check(
        by_name("kubernetes-apps-workload-require-readonly-rootfs"), "kubernetes:batch/v1:CronJob", props
    ) == ["initContainers[migrate] securityContext.readOnlyRootFilesystem is not true"]


def test_replica_floor_applies_to_serving_deployments_in_prod_only() -> None:
    base = RESOURCES["k8s-serving"]
    policy = by_name("kubernetes-apps-deployment-require-min-replicas")
    one = {**base.props, "spec": {**base.props["spec"], "replicas": 1}}
    assert check(policy, base.type, one, config=DEV) == []
    tracking = {**one, "spec": {**one["spec"], "template": {"spec": {"containers": [{"name": "mlflow"}]}}}}
    assert check(policy, base.type, tracking) == []
