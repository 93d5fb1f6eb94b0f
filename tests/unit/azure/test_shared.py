"""Shared Azure rules: global names, role ids, and the Azure stack settings."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from components.azure._shared import BUILTIN_ROLES, FORBIDDEN_ROLES, role_definition_id, unique_name
from shipway_core.config import StackConfigError
from tests.support.recording import record, resolve
from tests.support.stacks import example_config

_SEEDS = st.uuids().map(str)
_LOGICAL = st.from_regex(r"[a-z][a-z0-9-]{0,40}", fullmatch=True)


def _name(prefix: str, seed: str, logical: str, max_len: int, hyphens: bool) -> str:
    holder: dict[str, Any] = {}
    record(lambda: holder.setdefault(
        "out", unique_name(prefix, seed, logical, max_len=max_len, hyphens=hyphens)))
    return resolve(holder["out"])


@settings(max_examples=25, deadline=None)
@given(_SEEDS, _LOGICAL)
def test_storage_names_fit_azure_rules(seed: str, logical: str) -> None:
    name = _name("st", seed, logical, 24, False)
    assert re.fullmatch(r"[a-z0-9]{3,24}", name)
    assert name == _name("st", seed, logical, 24, False)  # deterministic: no replacement on re-run


@settings(max_examples=25, deadline=None)
@given(_SEEDS, _LOGICAL)
@example("00000000-0000-0000-0000-000000000003", "a--b-")
def test_vault_names_fit_azure_rules(seed: str, logical: str) -> None:
    name = _name("kv", seed, logical, 24, True)
    assert re.fullmatch(r"[a-z][a-z0-9-]{1,22}[a-z0-9]", name)
    assert "--" not in name


@pytest.mark.parametrize("model", ["iris", "a-very-long-model-name-that-exceeds-the-endpoint-limit"])
def test_endpoint_names_fit_azure_rules(model: str) -> None:
    name = _name("", "00000000-0000-0000-0000-000000000003", f"{model}-prod", 32, True)
    assert re.fullmatch(r"[a-z][a-z0-9-]{1,30}[a-z0-9]", name)
    assert name.startswith(model[:10])


def test_names_differ_per_subscription() -> None:
    a = _name("st", "00000000-0000-0000-0000-000000000001", "tracking", 24, False)
    b = _name("st", "00000000-0000-0000-0000-000000000002", "tracking", 24, False)
    assert a != b and a.startswith("sttracking") and b.startswith("sttracking")


def test_role_ids_are_subscription_scoped_well_known_guids() -> None:
    holder: dict[str, Any] = {}
    record(lambda: holder.setdefault("id", role_definition_id("sub", "Key Vault Secrets User")))
    assert resolve(holder["id"]) == (
        "/subscriptions/sub/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6")
    assert not set(BUILTIN_ROLES.values()) & set(FORBIDDEN_ROLES.values())


@pytest.mark.parametrize("role", ["Owner", "Contributor", "Storage Account Contributor"])
def test_broad_or_unknown_roles_cannot_be_granted(role: str) -> None:
    with pytest.raises(ValueError) as err:
        role_definition_id("sub", role)
    assert str(err.value).startswith(f"role: {role!r} is not valid; allowed: AcrPull, AcrPush, ")


BASE = {"cloud": "azure", "environment": "prod", "owner": "ml-team", "costCenter": "cc-42",
        "dataClassification": "internal", "region": "westeurope", "models": {"iris": {"version": 4}}}


def test_azure_settings_parse() -> None:
    cfg = example_config("prod", {**BASE, "azure": {
        "endpointAuthMode": "Key", "instanceType": "Standard_F4s_v2", "previousVersions": {"iris": 3},
        "managedPrometheus": True, "managedGrafana": True, "alertEmails": ["oncall@example.com"]}})
    assert cfg.azure.endpoint_auth_mode == "Key"
    assert cfg.azure.instance_type == "Standard_F4s_v2"
    assert cfg.azure.previous_versions == {"iris": 3}
    assert (cfg.azure.managed_prometheus, cfg.azure.managed_grafana) == (True, True)
    assert cfg.azure.alert_emails == ("oncall@example.com",)


def test_bad_azure_settings_are_all_reported_at_once() -> None:
    with pytest.raises(StackConfigError) as err:
        example_config("prod", {**BASE, "azure": {
            "endpointAuthMode": "AMLToken", "previousVersions": {"iris": "latest"},
            "alertEmails": ["nobody"]}})
    assert err.value.problems == [
        "shipway:azure.endpointAuthMode: 'AMLToken' is not valid; allowed: AADToken, Key",
        'shipway:azure.previousVersions: {"iris": "latest"} is not valid; use a mapping of model name -> '
        "previous registry version (a positive integer)",
        'shipway:azure.alertEmails: ["nobody"] is not valid; use a list of e-mail addresses',
    ]
