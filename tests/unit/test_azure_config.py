"""The Azure keys issue 17 adds to a stack: exact messages for every bad value, secure defaults."""

from __future__ import annotations

from typing import Any

import pytest

from shipway_core.config import StackConfigError, parse_stack_config
from tests.support.stacks import AZURE_SUBSCRIPTION, example_config
from tests.unit.azure.provider import PROD_RAW

STEPS = ("use increasing percentages of traffic on the new deployment ending at 100, e.g. [10, 50, 100] "
         "([100] moves all traffic at once)")


def _problems(env: str, **azure: Any) -> list[str]:
    raw = {**PROD_RAW, "environment": env, "azure": {**PROD_RAW["azure"], **azure}}
    with pytest.raises(StackConfigError) as err:
        example_config(env, raw)
    return [line.removeprefix("  - ") for line in str(err.value).splitlines()[1:]]


def test_defaults_are_gradual_and_private() -> None:
    azure = example_config("prod", PROD_RAW).azure
    assert (azure.traffic_steps, azure.bake_minutes) == ((10, 50, 100), 10)
    assert (azure.public_network_access, azure.create_registry) == (False, False)
    assert (azure.vnet_address_space, azure.private_endpoint_subnet) == ("10.60.0.0/16", "10.60.1.0/24")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("trafficSteps", [50, 10, 100], f"shipway:azure.trafficSteps: [50, 10, 100] is not valid; {STEPS}"),
    ("trafficSteps", [10, 50], f"shipway:azure.trafficSteps: [10, 50] is not valid; {STEPS}"),
    ("trafficSteps", [0, 100], f"shipway:azure.trafficSteps: [0, 100] is not valid; {STEPS}"),
    ("trafficSteps", [], f"shipway:azure.trafficSteps: [] is not valid; {STEPS}"),
    ("bakeMinutes", 0, "shipway:azure.bakeMinutes: 0 is not valid; use the minutes each traffic step is watched "
                       "before the next (1-1440)"),
    ("registryName", "x", "shipway:azure.registryName: 'x' is not valid; use the Azure ML registry name shared by "
                          "dev, test and prod (3-33 letters, digits, - or _)"),
    ("createRegistry", "yes", "shipway:azure.createRegistry: 'yes' is not valid; use true in the one stack that "
                              "owns the shared registry, false elsewhere"),
    ("vnetAddressSpace", "10.0.0.0", "shipway:azure.vnetAddressSpace: '10.0.0.0' is not valid; use an IPv4 CIDR "
                                     "such as 10.60.0.0/16"),
    ("privateEndpointSubnet", "10.99.0.0/24", "shipway:azure.privateEndpointSubnet: '10.99.0.0/24' is not valid; "
                                              "use a CIDR inside azure.vnetAddressSpace (10.60.0.0/16)"),
])
def test_each_bad_value_is_named_with_what_to_do(key: str, value: Any, message: str) -> None:
    assert _problems("prod", **{key: value}) == [message]


def test_the_shared_registry_is_required_on_azure() -> None:
    raw = {**PROD_RAW, "azure": {"subscriptionId": AZURE_SUBSCRIPTION}}
    with pytest.raises(StackConfigError) as err:
        parse_stack_config("prod", raw)
    assert str(err.value).splitlines()[1:] == [
        "  - shipway:azure.registryName: is required; the Azure ML registry shared by dev, test and prod "
        "(deployments read azureml://registries/<name>/models/...); set it with "
        "`pulumi config set --path 'shipway:azure.registryName' <value> --stack prod`"]


@pytest.mark.parametrize("env", ["test", "prod"])
def test_public_network_access_is_refused_outside_dev(env: str) -> None:
    assert _problems(env, publicNetworkAccess=True) == [
        f"shipway:azure.publicNetworkAccess: true is not valid; {env} is reachable only through private "
        "endpoints; remove it (public access is a dev-only option)"]


def test_public_network_access_is_a_dev_option() -> None:
    raw = {**PROD_RAW, "environment": "dev", "models": {"iris": {"version": 4, "instances": 1}},
           "azure": {**PROD_RAW["azure"], "publicNetworkAccess": True, "trafficSteps": [100]}}
    azure = example_config("dev", raw).azure
    assert (azure.public_network_access, azure.traffic_steps) == (True, (100,))
