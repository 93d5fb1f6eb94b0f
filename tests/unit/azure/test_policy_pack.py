"""The recorded prod Azure platform passes every rule of the policy pack (prod config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from components.azure.platform import build_platform
from policies.registry import ALL_POLICIES
from tests.policies.support import Res, check, check_stack
from tests.support.recording import Recorded, Recording
from tests.support.stacks import example_config
from tests.unit.azure.provider import PROD_RAW, record_azure

PROD_CONFIG = json.loads((Path(__file__).parents[3] / "policies" / "config" / "prod.json").read_text())


def _config(name: str) -> dict[str, Any]:
    value = PROD_CONFIG.get(name, {})
    return value if isinstance(value, dict) else {}


def _deps(resource: Recorded, ids: dict[str, str]) -> dict[str, list[str]]:
    """Property dependencies as the engine records them: a prop built from another resource's id."""
    deps: dict[str, list[str]] = {}
    for prop, value in resource.inputs.items():
        if not isinstance(value, str):
            continue
        for rid, name in ids.items():
            if name != resource.name and (value == rid or value.startswith(rid + "/")):
                deps.setdefault(prop, []).append(name)
    return deps


@pytest.fixture(scope="module")
def platform() -> Recording:
    cfg = example_config("prod", PROD_RAW)
    return record_azure(lambda: build_platform(cfg, {"endpointApiKey": pulumi.Output.secret("k")}))


def _violations(platform: Recording) -> list[tuple[str, str, str]]:
    resources = [r for r in platform.resources if not r.type.startswith("shipway:")]
    ids = {f"{r.name}-id": r.name for r in resources}
    found: list[tuple[str, str, str]] = []
    for policy in ALL_POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                for message in check(policy, r.type, r.inputs, config=_config(policy.name), name=r.name):
                    found.append((policy.name, r.name, message))
        elif isinstance(policy, StackValidationPolicy):
            stack = [Res(r.type, r.name, dict(r.inputs), deps=_deps(r, ids)) for r in resources]
            for message, name in check_stack(policy, stack, config=_config(policy.name)):
                found.append((policy.name, name or "-", message))
    return found


def test_prod_platform_passes_the_policy_pack(platform: Recording) -> None:
    # No allow-list: the former false positives (`bypass`, Grafana's `apiKey: "Disabled"`) are
    # fixed in policies/security/secrets.py, so every finding is a real one.
    assert _violations(platform) == []


def test_the_pack_does_judge_azure_resources(platform: Recording) -> None:
    """Guard against a vacuous pass: weakening one input must produce a violation."""
    storage = platform.one("azure-native:storage:StorageAccount")
    weakened = Recorded(storage.type, storage.name, {**storage.inputs, "minimumTlsVersion": "TLS1_0"},
                        storage.custom, storage.provider)
    recording = Recording(resources=[weakened])
    assert any(rule == "azure-storage-account-require-tls" for rule, _, _ in _violations(recording))
