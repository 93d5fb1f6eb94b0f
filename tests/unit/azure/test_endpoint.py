"""InferenceEndpoint on Azure: auth, network, identity roles, deployments and blue/green traffic."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.azure import AzureTarget, InferenceEndpoint, SecretRefs, WorkspaceRef
from components.azure.endpoint import (
    deployment_name,
    traffic_map,
    validate_auth_mode,
    validate_previous_version,
)
from components.common import InferenceEndpointArgs
from shipway_core.config import AzureSettings
from tests.support.recording import Recording, resolve
from tests.unit.azure.provider import TAGS, record_azure, role_id

TARGET = AzureTarget("rg-shipway", "westeurope", AzureSettings(registry_name="shipway-models"))
WORKSPACE = WorkspaceRef("mlw-prod", "ws-id", "storage-id", "acr-id", "registry-id")
SECRETS = SecretRefs(ids={"endpointApiKey": "secret-id"},
                     uris={"endpointApiKey": "https://mock-kv.vault.azure.net/secrets/endpointApiKey"})
DEPLOYMENT = "azure-native:machinelearningservices:OnlineDeployment"
ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"


def _args(version: int, instances: int = 2, **extra: object) -> InferenceEndpointArgs:
    return InferenceEndpointArgs(environment="prod", model_name="iris", model_version=version,
                                 tracking_uri="azureml://tracking", tags=TAGS, instance_count=instances,
                                 **extra)  # type: ignore[arg-type]


def _record(version: int, previous: int | None = None, target: AzureTarget = TARGET,
            **extra: object) -> Recording:
    return record_azure(lambda: InferenceEndpoint(
        "iris", _args(version, **extra), target, WORKSPACE, SECRETS, previous_version=previous))


def _traffic(rec: Recording) -> dict[str, float]:
    template = rec.one("azure-native:resources:Deployment", "iris-traffic").inputs["properties"]["template"]
    (endpoint,) = template["resources"]
    return endpoint["properties"]["traffic"]


@pytest.fixture(scope="module")
def v3() -> Recording:
    return _record(3)


# ----------------------------------------------------------------------------- pure logic


@pytest.mark.parametrize(("version", "previous", "gradual", "expected"), [
    (3, None, False, {"v3": 100}),
    (3, None, True, {"v3": 100}),
    (4, 3, False, {"v4": 100, "v3": 0}),
    (3, 4, False, {"v3": 100, "v4": 0}),  # rollback keeps the newer version warm at 0%
    # Gradual (trafficSteps [10, 50, 100]): `up` leaves traffic on the previous version and
    # `shipway model promote --apply` moves it step by step.
    (4, 3, True, {"v4": 0, "v3": 100}),
])
def test_traffic_map(version: int, previous: int | None, gradual: bool, expected: dict[str, int]) -> None:
    assert traffic_map(version, previous, gradual) == expected


@given(st.integers(min_value=1, max_value=10**6),
       st.one_of(st.none(), st.integers(min_value=1, max_value=10**6)))
def test_traffic_always_sums_to_100_on_the_pinned_version(version: int, previous: int | None) -> None:
    if previous == version:
        return
    traffic = traffic_map(version, previous)
    assert sum(traffic.values()) == 100
    assert traffic[deployment_name(version)] == 100


@pytest.mark.parametrize(("previous", "message"), [
    (0, "previous_version: 0 is not valid; use the previously pinned registry version "
        "(a positive integer) or None"),
    (True, "previous_version: True is not valid; use the previously pinned registry version "
           "(a positive integer) or None"),
])
def test_previous_version_validation(previous: int, message: str) -> None:
    with pytest.raises(ValueError) as err:
        validate_previous_version(4, previous)
    assert str(err.value) == message


def test_auth_mode_must_authenticate() -> None:
    with pytest.raises(ValueError) as err:
        validate_auth_mode("AMLToken ")
    assert str(err.value) == "auth_mode: 'AMLToken ' is not valid; allowed: AADToken, Key"


def test_prod_needs_two_instances_before_anything_is_created() -> None:
    with pytest.raises(ValueError) as err:
        InferenceEndpoint("iris", _args(3, instances=1), TARGET, WORKSPACE)
    assert str(err.value) == "instance_count: 1 is not valid in prod; use at least 2 for availability"


def test_alias_pins_are_rejected() -> None:
    with pytest.raises(ValueError) as err:
        InferenceEndpoint("iris", _args("latest"), TARGET, WORKSPACE)  # type: ignore[arg-type]
    assert str(err.value) == (
        "model_version: 'latest' is not valid; pin an exact registry version (a positive integer), "
        "never 'latest' or an alias"
    )


# ----------------------------------------------------------------------------- component


def test_children(v3: Recording) -> None:
    assert sorted((r.type, r.name) for r in v3.resources) == [
        ("azure-native:authorization:RoleAssignment", "iris-metrics-writer"),
        ("azure-native:authorization:RoleAssignment", "iris-model-registry-user"),
        ("azure-native:authorization:RoleAssignment", "iris-registry-pull"),
        ("azure-native:authorization:RoleAssignment", "iris-secret-endpointApiKey"),
        ("azure-native:authorization:RoleAssignment", "iris-storage-blob-reader"),
        (DEPLOYMENT, "iris-v3"),
        (ENDPOINT, "iris-endpoint"),
        ("azure-native:managedidentity:UserAssignedIdentity", "iris-identity"),
        ("azure-native:monitor:AutoscaleSetting", "iris-v3-autoscale"),
        ("azure-native:resources:Deployment", "iris-traffic"),
        ("shipway:azure:InferenceEndpoint", "iris"),
    ]


def test_endpoint_is_private_with_aad_token_auth_and_its_own_identity(v3: Recording) -> None:
    endpoint = v3.one(ENDPOINT).inputs
    assert endpoint["endpointName"] == "iris-prod-f6d3a420"
    assert endpoint["workspaceName"] == "mlw-prod"
    assert endpoint["kind"] == "Managed"
    assert endpoint["properties"]["authMode"] == "AADToken"
    assert endpoint["properties"]["publicNetworkAccess"] == "Disabled"
    assert "traffic" not in endpoint["properties"]  # owned by the -traffic template
    assert endpoint["identity"] == {"type": "UserAssigned", "userAssignedIdentities": ["iris-identity-id"]}
    assert endpoint["tags"] == {**TAGS, "model-name": "iris"}


def test_key_auth_and_public_access_come_from_stack_settings() -> None:
    settings = dataclasses.replace(TARGET.settings, endpoint_auth_mode="Key", public_network_access=True)
    rec = _record(3, target=AzureTarget("rg", "westeurope", settings))
    assert rec.one(ENDPOINT).inputs["properties"]["authMode"] == "Key"
    assert rec.one(ENDPOINT).inputs["properties"]["publicNetworkAccess"] == "Enabled"
    assert rec.one(DEPLOYMENT).inputs["properties"]["egressPublicNetworkAccess"] == "Enabled"


def test_deployment_serves_exactly_the_pinned_version(v3: Recording) -> None:
    dep = v3.one(DEPLOYMENT, "iris-v3").inputs
    assert dep["deploymentName"] == "v3"
    assert dep["endpointName"] == "iris-prod-f6d3a420"
    assert dep["sku"] == {"name": "Default", "capacity": 2}
    props = dep["properties"]
    assert props["endpointComputeType"] == "Managed"
    # The shared registry's asset id: the same string in dev, test and prod.
    assert props["model"] == "azureml://registries/shipway-models/models/iris/versions/3"
    assert props["instanceType"] == "Standard_DS3_v2"
    assert props["egressPublicNetworkAccess"] == "Disabled"
    probe = {"initialDelay": "PT30S", "period": "PT10S", "timeout": "PT2S",
             "failureThreshold": 3, "successThreshold": 1}
    assert props["livenessProbe"] == probe
    assert props["readinessProbe"] == probe
    assert props["appInsightsEnabled"] is True
    captured = {"dataCollectionMode": "Enabled", "samplingRate": 1}
    assert props["dataCollector"]["collections"] == {"model_inputs": captured, "model_outputs": captured}
    assert dep["tags"]["model-version"] == "3"


def test_each_deployment_autoscales_from_its_pinned_floor(v3: Recording) -> None:
    scale = v3.one("azure-native:monitor:AutoscaleSetting", "iris-v3-autoscale").inputs
    assert scale["targetResourceUri"] == "iris-v3-id"
    assert scale["enabled"] is True
    (profile,) = scale["profiles"]
    assert profile["capacity"] == {"minimum": "2", "default": "2", "maximum": "4"}
    out, scale_in = profile["rules"]
    assert out["metricTrigger"]["metricName"] == "CpuUtilizationPercentage"
    assert out["metricTrigger"]["metricResourceUri"] == "iris-v3-id"
    assert (out["metricTrigger"]["operator"], out["metricTrigger"]["threshold"]) == ("GreaterThan", 70)
    assert out["scaleAction"] == {"direction": "Increase", "type": "ChangeCount", "value": "1",
                                  "cooldown": "PT5M"}
    assert (scale_in["metricTrigger"]["operator"], scale_in["scaleAction"]["direction"]) == (
        "LessThan", "Decrease")


def test_deployment_env_is_the_azureml_contract_with_secret_uris_never_values(v3: Recording) -> None:
    env = v3.one(DEPLOYMENT).inputs["properties"]["environmentVariables"]
    assert env["SHIPWAY_PLATFORM"] == "azureml"
    assert env["SHIPWAY_MODEL_NAME"] == "iris"
    assert env["SHIPWAY_MODEL_VERSION"] == "3"
    assert env["SHIPWAY_MODEL_URI"] == "models:/iris/3"
    assert env["MLFLOW_TRACKING_URI"] == "azureml://tracking"
    assert env["SHIPWAY_API_KEY_SECRET_URI"] == "https://mock-kv.vault.azure.net/secrets/endpointApiKey"
    # The identity that may read it (the app asks Azure ML's token endpoint for this client id).
    assert "SHIPWAY_IDENTITY_CLIENT_ID" in env
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env


def test_otlp_endpoint_reaches_the_app() -> None:
    rec = _record(3, otlp_endpoint="http://collector:4318")
    env = rec.one(DEPLOYMENT).inputs["properties"]["environmentVariables"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"


def test_a_secret_the_app_does_not_read_is_rejected() -> None:
    refs = SecretRefs(ids={"trackingDbPassword": "id"}, uris={"trackingDbPassword": "https://kv/secrets/x"})
    with pytest.raises(ValueError) as err:
        record_azure(lambda: InferenceEndpoint("iris", _args(3), TARGET, WORKSPACE, refs))
    assert str(err.value) == (
        "secrets: ['trackingDbPassword'] are not read by the serving app on Azure ML; "
        "pass only 'endpointApiKey' (the endpoint API key)"
    )


def test_endpoint_identity_gets_narrow_resource_scoped_roles(v3: Recording) -> None:
    grants = {r.name: r.inputs for r in v3.of_type("azure-native:authorization:RoleAssignment")}
    assert {n: (g["roleDefinitionId"], g["scope"]) for n, g in grants.items()} == {
        "iris-registry-pull": (role_id("7f951dda-4ed3-4680-a7ca-43fe172d538d"), "acr-id"),
        "iris-model-registry-user": (role_id("1823dd4f-9b8c-4ab6-ab4e-7397a3684615"), "registry-id"),
        "iris-storage-blob-reader": (role_id("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"), "storage-id"),
        "iris-metrics-writer": (role_id("635dd51f-9968-44d3-b7fb-6d9a6bd613ae"), "ws-id"),
        "iris-secret-endpointApiKey": (role_id("4633458b-17de-408a-b874-0445c86b69e6"), "secret-id"),
    }
    assert {g["principalId"] for g in grants.values()} == {"iris-identity-principal"}


def test_outputs(v3: Recording) -> None:
    endpoint = v3.result
    assert resolve(endpoint.endpoint_url) == "https://mock-iris-prod-f6d3a420.inference.ml.azure.com/score"
    assert resolve(endpoint.endpoint_name) == "iris-prod-f6d3a420"
    assert resolve(endpoint.deployments) == ["v3"]
    assert resolve(endpoint.traffic) == {"v3": 100}
    assert resolve(endpoint.model_version) == 3


# ----------------------------------------------------------------------------- blue/green


def test_blue_green_shift_when_the_pin_changes(v3: Recording) -> None:
    """Pin 3, then pin 4 keeping 3 warm, then drop 3 after verification."""
    assert v3.names(DEPLOYMENT) == ["iris-v3"]
    assert _traffic(v3) == {"v3": 100}

    shifted = _record(4, previous=3)
    assert shifted.names(DEPLOYMENT) == ["iris-v3", "iris-v4"]
    assert {r.inputs["deploymentName"]: r.inputs["properties"]["model"].rsplit("/", 1)[-1]
            for r in shifted.of_type(DEPLOYMENT)} == {"v3": "3", "v4": "4"}
    # The old deployment keeps its URN and full capacity: Pulumi leaves it untouched.
    assert shifted.one(DEPLOYMENT, "iris-v3").inputs == v3.one(DEPLOYMENT, "iris-v3").inputs
    assert shifted.one(DEPLOYMENT, "iris-v4").inputs["sku"] == {"name": "Default", "capacity": 2}
    # Gradual by default: v4 starts at 0%, the adapter's promotion step moves it 10 -> 50 -> 100.
    assert _traffic(shifted) == {"v4": 0, "v3": 100}
    assert resolve(shifted.result.deployments) == ["v4", "v3"]
    # The endpoint itself is untouched by the shift: identical inputs, so no update and no re-PUT.
    assert shifted.one(ENDPOINT).inputs == v3.one(ENDPOINT).inputs
    assert shifted.one("azure-native:resources:Deployment").inputs["tags"]["model-version"] == "4"

    verified = _record(4)
    assert verified.names(DEPLOYMENT) == ["iris-v4"]  # iris-v3 is deleted by the next `up`
    assert _traffic(verified) == {"v4": 100}

    at_once = _record(4, previous=3, target=AzureTarget(
        "rg-shipway", "westeurope", dataclasses.replace(TARGET.settings, traffic_steps=(100,))))
    assert _traffic(at_once) == {"v4": 100, "v3": 0}


def test_rolling_back_onto_the_warm_version_keeps_nothing_at_zero() -> None:
    """A rollback re-pins the version kept warm (previousVersions equal to the pin): it serves alone."""
    rec = _record(3, previous=3)
    assert rec.names(DEPLOYMENT) == ["iris-v3"]
    assert _traffic(rec) == {"v3": 100}


def test_endpoint_without_a_shared_registry_is_rejected() -> None:
    with pytest.raises(ValueError) as err:
        InferenceEndpoint("iris", _args(3), AzureTarget("rg", "westeurope"), WORKSPACE, SECRETS)
    assert str(err.value) == ("azure.registryName: None is not valid; name the Azure ML registry shared by dev, "
                              "test and prod (deployments read azureml://registries/<name>/models/...)")


def test_traffic_template_reapplies_the_endpoint_settings() -> None:
    rec = _record(4, previous=3)
    traffic = rec.one("azure-native:resources:Deployment", "iris-traffic").inputs
    assert traffic["resourceGroupName"] == "rg-shipway"
    assert traffic["properties"]["mode"] == "Incremental"
    (endpoint,) = traffic["properties"]["template"]["resources"]
    assert endpoint["type"] == "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
    assert endpoint["kind"] == "Managed"
    assert endpoint["tags"] == rec.one(ENDPOINT).inputs["tags"]
    assert endpoint["properties"]["description"] == rec.one(ENDPOINT).inputs["properties"]["description"]
    assert endpoint["name"] == "mlw-prod/iris-prod-f6d3a420"
    assert endpoint["identity"] == {"type": "UserAssigned",
                                    "userAssignedIdentities": {"iris-identity-id": {}}}
    assert endpoint["properties"]["authMode"] == "AADToken"
    assert endpoint["properties"]["publicNetworkAccess"] == "Disabled"
