"""Local-target rules (Pulumi dynamic resources identified by `shipwayKind`)."""

from __future__ import annotations

import pytest

from policies.registry import by_name
from tests.policies.baselines import DEV, DYNAMIC, RESOURCES
from tests.policies.cases import run_case
from tests.policies.support import DELETE, Case, check

CASES = [
    Case(
        "local-serving-endpoint-bind-loopback",
        "local-endpoint",
        "host",
        "0.0.0.0",  # noqa: S104 - the mutation
        ["host is '0.0.0.0'; bind the endpoint to 127.0.0.1"],
    ),
    Case(
        "local-serving-endpoint-bind-loopback",
        "local-endpoint",
        "host",
        "localhost",
        ["host is 'localhost'; bind the endpoint to 127.0.0.1"],
    ),
    Case(
        "local-serving-endpoint-require-api-key",
        "local-endpoint",
        "apiKeyFile",
        DELETE,
        ["apiKeyFile is not set; require an API key read from a 0600 file"],
    ),
    Case(
        "local-serving-endpoint-require-api-key",
        "local-endpoint",
        "apiKey",
        "plain-key",
        ["apiKey is passed as an input; pass apiKeyFile (a 0600 SecretFile) instead"],
    ),
    Case(
        "local-serving-endpoint-pin-exact-version",
        "local-endpoint",
        "modelVersion",
        "latest",
        ["modelVersion is 'latest'; pin an exact registry version (a positive integer)"],
    ),
    Case(
        "local-serving-endpoint-pin-exact-version",
        "local-endpoint",
        "modelVersion",
        0,
        ["modelVersion is 0; pin an exact registry version (a positive integer)"],
    ),
    Case(
        "local-serving-endpoint-pin-exact-version",
        "local-endpoint",
        "modelVersion",
        2.5,
        ["modelVersion is 2.5; pin an exact registry version (a positive integer)"],
    ),
    Case(
        "local-serving-endpoint-pin-exact-version",
        "local-endpoint",
        "modelUri",
        "runs:/abc/model",
        ["modelUri is set; serve modelName at modelVersion from the registry only"],
    ),
    Case(
        "local-platform-service-bind-loopback",
        "local-tracking",
        "host",
        "0.0.0.0",  # noqa: S104
        ["TrackingServer host is '0.0.0.0'; bind it to 127.0.0.1"],
    ),
    Case(
        "local-platform-service-bind-loopback",
        "local-prometheus",
        "host",
        "192.168.1.20",
        ["Prometheus host is '192.168.1.20'; bind it to 127.0.0.1"],
    ),
    Case(
        "local-secret-file-restrict-mode",
        "local-secret-file",
        "mode",
        "0644",
        ["mode is '0644'; secret files are written with mode '0600'"],
    ),
    Case(
        "local-registry-pin-retain-in-prod",
        "local-pin",
        "retainOnDelete",
        False,
        [
            "retainOnDelete is not true and the resource is not protected; prod registry pins survive pulumi "
            "destroy"
        ],
    ),
    Case(
        "local-registry-pin-require-exact-version",
        "local-pin",
        "version",
        "champion",
        ["version is 'champion'; pin an exact registry version (a positive integer)"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_local_rule_reports_the_mutation(case: Case) -> None:
    run_case(case)


def test_registry_pin_may_be_deleted_outside_prod_or_when_protected() -> None:
    base = RESOURCES["local-pin"]
    props = {**base.props, "retainOnDelete": False}
    policy = by_name("local-registry-pin-retain-in-prod")
    assert check(policy, DYNAMIC, props, config=DEV) == []
    assert check(policy, DYNAMIC, props, protect=True) == []


def test_local_rules_ignore_other_dynamic_resources_and_other_kinds() -> None:
    other = {"__provider": "x", "host": "0.0.0.0", "modelVersion": "latest"}  # noqa: S104
    for name in (
        "local-serving-endpoint-bind-loopback",
        "local-serving-endpoint-pin-exact-version",
        "local-platform-service-bind-loopback",
    ):
        assert check(by_name(name), DYNAMIC, other) == []
        assert check(by_name(name), DYNAMIC, {**other, "shipwayKind": "SecretFile"}) == []
