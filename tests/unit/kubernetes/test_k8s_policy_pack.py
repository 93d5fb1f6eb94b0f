"""The recorded Kubernetes platform against the real policy pack: zero violations, and a real catch.

The pack's rules are the same objects ``policies/__main__.py`` serves to the engine; here they run
on the props the components registered (as the analyzer would see them), under prod config.
"""

from __future__ import annotations

import pytest
from k8s_support import plain, secret_outputs, stack_config
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from components.kubernetes.platform import build_platform
from policies.ml.gates import GateEvidence, make_require_gate_evidence
from policies.registry import ALL_POLICIES
from tests.policies.baselines import PROD
from tests.policies.support import Res, check, check_stack, mutate
from tests.support.recording import record

SERVED: list[tuple[str, int]] = []


def _lookup(_uri: str, name: str, version: int) -> GateEvidence:
    """Gate evidence without a registry: records what the rule asked about, fails version 13."""
    SERVED.append((name, version))
    return GateEvidence("failed", "shipway.gates.passed is 'false'") if version == 13 else GateEvidence("passed")


GATE = make_require_gate_evidence(_lookup)
RULES = [GATE if p.name == GATE.name else p for p in ALL_POLICIES]
RESOURCE_RULES = [p for p in RULES if isinstance(p, ResourceValidationPolicy)]
STACK_RULES = [p for p in RULES if isinstance(p, StackValidationPolicy)]


def platform(kubernetes: dict[str, object] | None = None, version: int = 3) -> list[Res]:
    cfg = stack_config("prod", models={"churn": {"version": version, "instances": 2}}, kubernetes=kubernetes)
    rec = record(lambda: build_platform(cfg, secret_outputs()), stack="prod")
    return [Res(r.type, r.name, plain(r.inputs)) for r in rec.resources]


def violations(resources: list[Res]) -> dict[tuple[str, str], list[str]]:
    found = {}
    for res in resources:
        for policy in RESOURCE_RULES:
            messages = check(policy, res.type, res.props, config=PROD, name=res.name)
            if messages:
                found[(policy.name, res.name)] = messages
    for policy in STACK_RULES:
        for message, name in check_stack(policy, resources, config=PROD):
            found.setdefault((policy.name, name or "<stack>"), []).append(message)
    return found


@pytest.mark.parametrize("kubernetes", [None, {"kserve": True}, {"externalSecrets": True}])
def test_prod_platform_passes_every_rule(kubernetes: dict[str, object] | None) -> None:
    assert violations(platform(kubernetes)) == {}


def test_gate_evidence_rule_sees_the_pinned_version() -> None:
    SERVED.clear()
    resources = platform(version=13)
    found = violations(resources)
    assert list(found) == [(GATE.name, "serve-churn-deployment")]
    assert ("churn", 13) in SERVED


def test_a_weakened_deployment_is_caught() -> None:
    """The clean result above is not vacuous: one privileged flag flips it."""
    resources = platform()
    (deployment,) = [r for r in resources if r.name == "serve-churn-deployment"]
    path = "spec.template.spec.containers.0.securityContext.allowPrivilegeEscalation"
    weakened = Res(deployment.type, deployment.name, mutate(deployment.props, path, True))
    found = {p.name: check(p, weakened.type, weakened.props, config=PROD) for p in RESOURCE_RULES}
    assert {name: messages for name, messages in found.items() if messages} == {
        "kubernetes-apps-workload-disallow-privilege-escalation": [
            "containers[serving] securityContext.allowPrivilegeEscalation is not false"
        ]
    }
