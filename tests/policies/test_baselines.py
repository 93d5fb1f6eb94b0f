"""The compliant baselines pass every rule: a mutation test's violation is caused by its mutation only."""

from __future__ import annotations

import pytest
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from policies.ml.gates import GateEvidence, make_require_gate_evidence
from policies.registry import ALL_POLICIES
from tests.policies.baselines import PROD, RESOURCES, STACKS
from tests.policies.support import check, check_stack


def _passing(_uri: str, _name: str, _version: int) -> GateEvidence:
    return GateEvidence("passed")


def _rules() -> list:
    """Every rule, with the gate-evidence lookup faked (no registry in unit tests)."""
    gate = make_require_gate_evidence(_passing)
    return [gate if p.name == gate.name else p for p in ALL_POLICIES]


RESOURCE_RULES = [p for p in _rules() if isinstance(p, ResourceValidationPolicy)]
STACK_RULES = [p for p in _rules() if isinstance(p, StackValidationPolicy)]


@pytest.mark.parametrize("key", sorted(RESOURCES))
def test_baseline_resource_passes_every_resource_rule(key: str) -> None:
    base = RESOURCES[key]
    found = {
        p.name: check(p, base.type, base.props, config=PROD, protect=base.protect) for p in RESOURCE_RULES
    }
    assert {name: msgs for name, msgs in found.items() if msgs} == {}


@pytest.mark.parametrize("target", sorted(STACKS))
def test_baseline_stack_passes_every_stack_rule(target: str) -> None:
    resources = STACKS[target]()
    found = {p.name: check_stack(p, resources, config=PROD) for p in STACK_RULES}
    assert {name: msgs for name, msgs in found.items() if msgs} == {}


@pytest.mark.parametrize("target", sorted(STACKS))
def test_baseline_stack_resources_pass_every_resource_rule(target: str) -> None:
    for res in STACKS[target]():
        for policy in RESOURCE_RULES:
            assert check(policy, res.type, res.props, config=PROD, protect=res.protect) == [], (
                res.name,
                policy.name,
            )
