"""What the Azure provider would add to a resource's outputs, for the recording mocks.

The recording mocks echo inputs back; a few Azure outputs are computed by the service
(identity principal ids, the MLflow URI, scoring and vault URIs) or change shape (a
user-assigned identity list comes back as a map). Filling them in lets components be
tested on the values they really read, with fixed fake values that name the resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pulumi.runtime import MockResourceArgs

from tests.support.recording import Recording, record

SUBSCRIPTION = "00000000-0000-0000-0000-000000000003"
TENANT = "00000000-0000-0000-0000-000000000004"

_OWN_NAME = {
    "azure-native:storage:StorageAccount": "accountName",
    "azure-native:keyvault:Vault": "vaultName",
    "azure-native:keyvault:Secret": "secretName",
    "azure-native:containerregistry:Registry": "registryName",
    "azure-native:machinelearningservices:OnlineEndpoint": "endpointName",
    "azure-native:machinelearningservices:OnlineDeployment": "deploymentName",
    "azure-native:resources:ResourceGroup": "resourceGroupName",
}


def azure_outputs(args: MockResourceArgs) -> dict[str, Any]:
    """Service-computed outputs of the Azure resources Shipway creates."""
    out: dict[str, Any] = {}
    inputs = dict(args.inputs)
    # Resources given an explicit physical name report it as their `name` output.
    own = _OWN_NAME.get(args.typ)
    if own and own in inputs:
        out["name"] = inputs[own]
    identity = inputs.get("identity")
    if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
        out["identity"] = {
            **identity,
            "userAssignedIdentities": {
                i: {"principalId": f"{i}-principal", "clientId": f"{i}-client"}
                for i in identity["userAssignedIdentities"]
            },
        }
    if isinstance(identity, dict) and identity.get("type") == "SystemAssigned":
        out["identity"] = {**identity, "principalId": f"{args.name}-principal", "tenantId": TENANT}
    if args.typ == "azure-native:managedidentity:UserAssignedIdentity":
        out.update(principalId=f"{args.name}-principal", clientId=f"{args.name}-client", tenantId=TENANT)
    elif args.typ == "azure-native:machinelearningservices:Workspace":
        out["mlFlowTrackingUri"] = f"azureml://westeurope.api.azureml.ms/mlflow/v1.0/{args.name}"
    elif args.typ == "azure-native:machinelearningservices:OnlineEndpoint":
        out["properties"] = {**inputs.get("properties", {}),
                             "scoringUri": f"https://mock-{inputs.get('endpointName')}.inference.ml.azure.com/score"}
    elif args.typ == "azure-native:keyvault:Vault":
        out["properties"] = {**inputs.get("properties", {}),
                             "vaultUri": f"https://mock-{inputs.get('vaultName')}.vault.azure.net/"}
    elif args.typ == "azure-native:keyvault:Secret":
        # The service never returns the value; the secret-wrapped input is replaced wholesale.
        out["properties"] = {"secretUri": f"https://mock-vault.vault.azure.net/secrets/{inputs.get('secretName')}"}
    elif args.typ == "azure-native:keyvault:Key":
        key_uri = f"https://mock-{inputs.get('vaultName')}.vault.azure.net/keys/{inputs.get('keyName')}"
        out.update(keyUri=key_uri, keyUriWithVersion=f"{key_uri}/0123456789abcdef")
    elif args.typ == "azure-native:applicationinsights:Component":
        out["connectionString"] = f"InstrumentationKey={args.name}"
    elif args.typ == "azure-native:dashboard:Grafana":
        out["properties"] = {**inputs.get("properties", {}), "endpoint": f"https://{args.name}.grafana.azure.com"}
    return out


# --------------------------------------------------------------------------- test helpers

TAGS = {"owner": "ml-team", "cost-center": "cc-42", "environment": "prod",
        "data-classification": "confidential"}
# A prod-like `shipway:cloud: azure` stack: two models, one mid-transition, every option on.
PROD_RAW: dict[str, Any] = {
    "cloud": "azure", "environment": "prod", "owner": "ml-team", "costCenter": "cc-42",
    "dataClassification": "confidential", "region": "westeurope",
    "models": {"iris": {"version": 4, "instances": 2}, "churn": {"version": 7, "instances": 3}},
    "azure": {"previousVersions": {"iris": 3}, "githubRepository": "acme/shipway",
              "managedPrometheus": True, "managedGrafana": True, "alertEmails": ["oncall@example.com"]},
}

# How the SDK marks a secret value on the wire: the whole enclosing input object is wrapped.
_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - pulumi rpc.SECRET_SIG, not a secret


def unsecret(value: Any) -> Any:
    """The plain value inside a recorded secret (and assert it *was* recorded as secret)."""
    assert isinstance(value, dict) and _SECRET_SIG in value, f"expected a secret, got {value!r}"
    return value["value"]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and _SECRET_SIG in value


def record_azure(build: Callable[[], Any], *, stack: str = "prod") -> Recording:
    """Record ``build`` with the Azure provider's computed outputs filled in."""
    return record(build, stack=stack, outputs=azure_outputs)


def role_id(guid: str) -> str:
    """A built-in role's full id in the mocks' zero-GUID subscription."""
    return f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def output_is_secret(output: Any) -> bool:
    """Whether an Output would be stored encrypted in state."""
    from pulumi.runtime.sync_await import _sync_await

    return bool(_sync_await(output._is_secret))
