"""Shared runners for the table-driven rule tests."""

from __future__ import annotations

from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from policies.registry import by_name
from tests.policies.baselines import PROD, RESOURCES, STACKS
from tests.policies.support import Case, StackCase, apply_stack_case, check, check_stack, mutate


def run_case(case: Case) -> None:
    """Baseline passes; the single mutation yields exactly the expected messages."""
    policy = by_name(case.policy)
    assert isinstance(policy, ResourceValidationPolicy)
    base = RESOURCES[case.baseline]
    config = case.config or PROD
    assert check(policy, base.type, base.props, config=config, protect=base.protect) == []
    changed = mutate(base.props, case.path, case.value)
    assert check(policy, base.type, changed, config=config, protect=base.protect) == case.messages


def run_stack_case(case: StackCase) -> None:
    """Baseline stack passes; the single change yields exactly the expected (message, resource) pairs."""
    policy = by_name(case.policy)
    assert isinstance(policy, StackValidationPolicy)
    config = case.config or PROD
    resources = STACKS[case.target]()
    assert check_stack(policy, resources, config=config) == []
    assert check_stack(policy, apply_stack_case(resources, case), config=config) == case.found
