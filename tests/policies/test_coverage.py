"""Every resource type the components create is judged by the rules of each family it belongs to.

The created types come from recording-mock runs of ``infra`` on every target and option set
(tests/policies/coverage_table.py); the families and the types each rule judges come from
policies/coverage.py, which reads the rule modules' own type constants.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import replace
from typing import Any

import pytest

from policies.compliance.tags import TAGGABLE
from policies.coverage import APPLIES, FAMILIES, GAPS, NO_FAMILY, covering, families_of, rule_names
from tests.policies.coverage_table import DOC, created_types, render

_SDKS = {"aws": "pulumi_aws", "azure-native": "pulumi_azure_native"}


def _sdk_takes_tags(resource_type: str) -> bool | None:
    """Whether the installed SDK's Args for ``resource_type`` take ``tags`` (None: not an SDK type)."""
    package = _SDKS.get(resource_type.split(":", 1)[0])
    if package is None:
        return None
    _, module, cls = resource_type.split(":")
    args = getattr(importlib.import_module(f"{package}.{module.split('/')[0]}"), f"{cls}Args")
    return "tags" in inspect.signature(args.__init__).parameters


def test_every_rule_declares_the_types_it_judges_and_belongs_to_families_that_exist() -> None:
    assert set(APPLIES) == rule_names()
    for name, family in FAMILIES.items():
        assert set(family.rules) <= rule_names(), name


def test_every_created_type_belongs_to_a_family_or_says_why_not() -> None:
    created = set(created_types())
    unclassified = sorted(t for t in created if not families_of(t) and t not in NO_FAMILY)
    assert unclassified == [], (
        "components create types no rule family claims; add each to the families it belongs to in "
        "policies/coverage.py (and a rule that judges it), or to NO_FAMILY with the reason"
    )
    assert sorted(t for t in NO_FAMILY if families_of(t)) == []
    assert sorted(set(NO_FAMILY) - created) == [], "NO_FAMILY names types the components no longer create"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_type_of_a_family_is_judged_by_a_rule_of_that_family(family: str) -> None:
    uncovered = [t for t in FAMILIES[family].types if not covering(FAMILIES[family], t)]
    assert uncovered == []


def test_known_gaps_are_still_uncovered_and_created() -> None:
    for (resource_type, family), _why in GAPS.items():
        assert covering(FAMILIES[family], resource_type) == [], f"{resource_type} is covered now: drop the gap"
        assert resource_type not in FAMILIES[family].types
    assert sorted({t for t, _ in GAPS} - set(created_types())) == []


def test_every_created_taggable_type_is_judged_by_the_tag_rule() -> None:
    missing = sorted(t for t in created_types() if _sdk_takes_tags(t) and t not in TAGGABLE)
    assert missing == []
    untaggable = sorted(t for t in TAGGABLE if _sdk_takes_tags(t) is False)
    assert untaggable == []


def test_kserve_and_the_ecs_task_definition_are_created_and_covered() -> None:
    """The two types the issue found uncovered, as the components create them."""
    created = created_types()
    kserve = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
    assert created[kserve] == ("kubernetes/external-secrets-kserve",)
    assert covering(FAMILIES["hardening"], kserve) == list(FAMILIES["hardening"].rules)
    ecs = "aws:ecs/taskDefinition:TaskDefinition"
    assert "aws/self-hosted-tracking" in created[ecs]
    assert covering(FAMILIES["images"], ecs) == ["any-container-image-pin-digest"]


def test_coverage_doc_is_generated_and_current() -> None:
    assert DOC.read_text() == render(), "run: .venv/bin/python -m tests.policies.coverage_table"



def test_the_image_rule_finds_nothing_on_a_prod_kubernetes_platform_whose_stack_pins_digests() -> None:
    """The stack config refuses tag-pinned images in test/prod (shipway_core.config), so what the
    components create from a valid prod stack passes the served image rule; a tag fails it."""
    from components.kubernetes.platform import build_platform
    from policies.registry import by_name
    from tests.policies.baselines import PROD
    from tests.policies.support import check
    from tests.support.recording import record
    from tests.unit.kubernetes.k8s_support import plain, secret_outputs, stack_config

    rule = by_name("any-container-image-pin-digest")
    cfg = stack_config("prod", models={"churn": {"version": 3, "instances": 2}}, kubernetes={"kserve": True})

    def flagged(config: Any) -> dict[str, list[str]]:
        recording = record(lambda: build_platform(config, secret_outputs()), stack="prod")
        found = {r.name: check(rule, r.type, plain(r.inputs), config=PROD, name=r.name) for r in recording.resources}
        return {name: messages for name, messages in found.items() if messages}

    assert flagged(cfg) == {}
    # What the stack parser refuses in prod, forced past it: the served rule catches it too.
    tagged = replace(cfg, kubernetes=replace(cfg.kubernetes, mlflow_image="ghcr.io/shipway/shipway-mlflow:0.1.0"))
    assert flagged(tagged) == {"mlflow-deployment": [
        "containers[mlflow].image 'ghcr.io/shipway/shipway-mlflow:0.1.0' is pinned by tag '0.1.0' only; in prod "
        "pin it as <repository>@sha256:<digest>"]}
