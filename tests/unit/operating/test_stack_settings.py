"""The stack-config settings of issue 25: per-model explanations and required non-functional evidence."""

from __future__ import annotations

from typing import Any

import pytest

from shipway_core.config import StackConfig, StackConfigError, parse_stack_config


def parse(spec: dict[str, Any], gates: dict[str, Any] | None = None) -> StackConfig:
    raw: dict[str, Any] = {"cloud": "local", "environment": "dev", "owner": "ml-platform", "costCenter": "cc-1",
                           "dataClassification": "internal", "models": {"iris": spec}}
    if gates is not None:
        raw["gates"] = gates
    return parse_stack_config("dev", raw)


def test_explain_is_opt_in_per_model() -> None:
    assert parse({"version": 2}).models["iris"].explain is False
    assert parse({"version": 2, "explain": True}).models["iris"].explain is True
    with pytest.raises(StackConfigError, match=r"models\.iris\.explain: 'yes' is not valid; use true or false"):
        parse({"version": 2, "explain": "yes"})


def test_nonfunctional_evidence_can_be_required_per_environment() -> None:
    assert parse({"version": 2}).gates.require_nonfunctional == ()
    cfg = parse({"version": 2}, {"requireNonFunctional": ["load", "security", "load"]})
    assert cfg.gates.require_nonfunctional == ("load", "security")
    with pytest.raises(StackConfigError, match=r'gates\.requireNonFunctional: \["speed"\] is not valid; '
                                               r"use a list drawn from load, resilience, security"):
        parse({"version": 2}, {"requireNonFunctional": ["speed"]})
