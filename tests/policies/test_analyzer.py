"""The pack inside pulumi_policy's real analyzer servicer, fed protobuf requests like the engine's.

This covers what rule-level tests cannot: the SDK's deserialisation (secrets unwrapped, numbers as
floats), the config file's enforcement levels and settings reaching the rules, and the final
diagnostic text (description + newline + message).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

import policies
from policies.registry import ALL_POLICIES, by_name
from tests.policies.baselines import RESOURCES, TAGS

CONFIG_DIR = Path(policies.__file__).resolve().parent / "config"
SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
LEVELS = {"advisory": proto.ADVISORY, "mandatory": proto.MANDATORY}


def _configured(env: str) -> _PolicyAnalyzerServicer:
    """An analyzer configured the way the CLI configures it from policies/config/<env>.json."""
    config = json.loads((CONFIG_DIR / f"{env}.json").read_text())
    servicer = _PolicyAnalyzerServicer("shipway-policies", "0.0.1", ALL_POLICIES, EnforcementLevel.ADVISORY)
    request = proto.ConfigureAnalyzerRequest()
    for policy in ALL_POLICIES:
        entry = request.policyConfig[policy.name]
        entry.enforcementLevel = LEVELS[config["all"]]
        entry.properties.update(config.get(policy.name, {}))
    servicer.Configure(request, None)
    return servicer


def _analyze(
    servicer: _PolicyAnalyzerServicer, type_: str, props: dict[str, Any], env: str = "prod"
) -> list[Any]:
    struct = struct_pb2.Struct()
    struct.update({**props, "tags": {**TAGS, "environment": env}} if "tags" in props else props)
    request = proto.AnalyzeRequest(
        type=type_, properties=struct, urn=f"urn:pulumi:prod::shipway::{type_}::r", name="r"
    )
    return list(servicer.Analyze(request, None).diagnostics)


def test_baseline_endpoint_config_passes_in_prod() -> None:
    base = RESOURCES["sm-endpoint-config"]
    assert _analyze(_configured("prod"), base.type, base.props) == []


@pytest.mark.parametrize(
    ("env", "level"),
    [
        ("prod", proto.MANDATORY),
        ("test", proto.MANDATORY),
        ("dev", proto.ADVISORY),
        ("local", proto.ADVISORY),
    ],
)
def test_enforcement_level_comes_from_the_environment_file(env: str, level: int) -> None:
    base = RESOURCES["kms-key"]
    found = _analyze(_configured(env), base.type, {**base.props, "enableKeyRotation": False}, env)
    assert [(d.policyName, d.enforcementLevel) for d in found] == [("aws-kms-key-enable-rotation", level)]
    assert found[0].message == (
        f"{by_name('aws-kms-key-enable-rotation').description}\n"
        "enableKeyRotation is not true; enable yearly automatic rotation"
    )


def test_prod_settings_reach_the_rules() -> None:
    base = RESOURCES["sm-endpoint-config"]
    props = {
        **base.props,
        "productionVariants": [{**base.props["productionVariants"][0], "initialInstanceCount": 1}],
    }
    assert [d.policyName for d in _analyze(_configured("prod"), base.type, props)] == [
        "aws-sagemaker-endpointconfig-require-min-instances"
    ]
    assert _analyze(_configured("dev"), base.type, props, "dev") == []


def test_retention_minimum_differs_per_environment() -> None:
    base = RESOURCES["log-group"]
    props = {**base.props, "retentionInDays": 60}
    assert [d.policyName for d in _analyze(_configured("test"), base.type, props, "test")] == [
        "aws-cloudwatch-loggroup-require-retention"
    ]
    assert _analyze(_configured("dev"), base.type, props, "dev") == []


def test_a_pulumi_secret_under_a_secret_name_is_still_reported() -> None:
    """The analyzer hands secrets over decrypted: only references are safe under secret-looking names."""
    base = RESOURCES["rds"]
    props = {**base.props, "password": {**SECRET_SIG, "value": "from-config-secret"}}
    found = _analyze(_configured("prod"), base.type, props)
    assert [d.policyName for d in found] == ["any-security-input-disallow-plaintext-secrets"]
