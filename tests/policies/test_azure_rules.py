"""Azure rules: one property changed from the compliant baseline, exact violation message."""

from __future__ import annotations

import pytest

from policies.registry import by_name
from tests.policies.baselines import DEV, RESOURCES, SUB
from tests.policies.cases import run_case, run_stack_case
from tests.policies.support import DELETE, Case, StackCase, check

OWNER = f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c"
PIN = "serve an exact registry version such as 'models:/<name>/<version>'"

CASES = [
    Case(
        "azure-machinelearningservices-registry-disallow-public-access",
        "aml-registry",
        "publicNetworkAccess",
        "Enabled",
        ["publicNetworkAccess is 'Enabled'; use 'Disabled' with a private endpoint (group id 'amlregistry') "
         "in each environment's VNet"],
    ),
    Case(
        "azure-storage-account-require-tls",
        "storage-account",
        "enableHttpsTrafficOnly",
        False,
        ["enableHttpsTrafficOnly is not true; reject plain HTTP"],
    ),
    Case(
        "azure-storage-account-require-tls",
        "storage-account",
        "minimumTlsVersion",
        "TLS1_0",
        ["minimumTlsVersion is 'TLS1_0'; use 'TLS1_2' or later"],
    ),
    Case(
        "azure-storage-account-disallow-public-access",
        "storage-account",
        "allowBlobPublicAccess",
        True,
        ["allowBlobPublicAccess is not false; disable anonymous blob access"],
    ),
    Case(
        "azure-storage-account-disallow-public-access",
        "storage-account",
        "publicNetworkAccess",
        "Enabled",
        ["publicNetworkAccess is 'Enabled'; use 'Disabled' and a private endpoint"],
    ),
    Case(
        "azure-storage-account-require-cmk-encryption",
        "storage-account",
        "encryption.keySource",
        "Microsoft.Storage",
        ["encryption.keySource is 'Microsoft.Storage'; use 'Microsoft.Keyvault' with a customer-managed key"],
    ),
    Case(
        "azure-storage-account-require-cmk-encryption",
        "storage-account",
        "encryption.keyVaultProperties.keyName",
        DELETE,
        ["encryption.keyVaultProperties.keyName is not set; name the Key Vault key"],
    ),
    Case(
        "azure-storage-account-disallow-shared-key",
        "storage-account",
        "allowSharedKeyAccess",
        True,
        ["allowSharedKeyAccess is not false; authenticate with Entra ID"],
    ),
    Case(
        "azure-storage-blobcontainer-disallow-public-access",
        "blob-container",
        "publicAccess",
        "Blob",
        ["publicAccess is 'Blob'; use 'None'"],
    ),
    Case(
        "azure-keyvault-vault-enable-purge-protection",
        "key-vault",
        "properties.enablePurgeProtection",
        False,
        ["properties.enablePurgeProtection is not true; enable purge protection"],
    ),
    Case(
        "azure-keyvault-vault-enable-purge-protection",
        "key-vault",
        "properties.enableRbacAuthorization",
        False,
        ["properties.enableRbacAuthorization is not true; use RBAC instead of access policies"],
    ),
    Case(
        "azure-authorization-roleassignment-disallow-broad-grant",
        "role-assignment",
        "roleDefinitionId",
        OWNER,
        [
            f"grants Owner at scope '{SUB}/resourceGroups/shipway-prod'; grant a narrow built-in or "
            "custom role on "
            "the specific resource"
        ],
    ),
    Case(
        "azure-authorization-roleassignment-disallow-broad-grant",
        "role-assignment",
        "roleDefinitionId",
        CONTRIBUTOR,
        [
            f"grants Contributor at scope '{SUB}/resourceGroups/shipway-prod'; grant a narrow "
            "built-in or custom "
            "role on the specific resource"
        ],
    ),
    Case(
        "azure-containerregistry-registry-disallow-admin-user",
        "acr",
        "adminUserEnabled",
        True,
        ["adminUserEnabled is true; pull with a managed identity and AcrPull"],
    ),
    Case(
        "azure-machinelearningservices-workspace-disallow-public-access",
        "aml-workspace",
        "publicNetworkAccess",
        "Enabled",
        ["publicNetworkAccess is 'Enabled'; use 'Disabled' with a private endpoint"],
    ),
    Case(
        "azure-machinelearningservices-onlineendpoint-disallow-public-access",
        "aml-endpoint",
        "properties.publicNetworkAccess",
        "Enabled",
        ["properties.publicNetworkAccess is 'Enabled'; use 'Disabled'"],
    ),
    Case(
        "azure-machinelearningservices-onlinedeployment-pin-registry-version",
        "aml-deployment",
        "properties.model",
        "azureml://registries/shipway/models/churn/labels/latest",
        [
            f"properties.model 'azureml://registries/shipway/models/churn/labels/latest' is a floating alias "
            f"'latest'; {PIN}"
        ],
    ),
    Case(
        "azure-machinelearningservices-onlinedeployment-pin-registry-version",
        "aml-deployment",
        "properties.model",
        "azureml://datastores/workspaceblobstore/paths/churn/model.pkl",
        [
            "properties.model 'azureml://datastores/workspaceblobstore/paths/churn/model.pkl' is a "
            "raw artifact "
            f"path that bypasses the registry; {PIN}"
        ],
    ),
    Case(
        "azure-machinelearningservices-onlinedeployment-enable-data-capture",
        "aml-deployment",
        "properties.dataCollector.collections.model_outputs.dataCollectionMode",
        "Disabled",
        [
            "neither properties.dataCollector (model_inputs and model_outputs Enabled) nor "
            "properties.appInsightsEnabled is on; prod deployments capture requests"
        ],
    ),
    Case(
        "azure-machinelearningservices-onlinedeployment-require-min-instances",
        "aml-deployment",
        "properties.scaleSettings.minInstances",
        1,
        ["the deployment runs 1 instance(s) at minimum; prod runs at least 2"],
    ),
    Case(
        "azure-operationalinsights-workspace-require-retention",
        "log-analytics",
        "retentionInDays",
        90,
        ["retentionInDays is 90 days; this environment keeps logs at least 365 days"],
    ),
]

CASES += [
    Case(
        "azure-machinelearningservices-workspace-require-cmk-encryption",
        "aml-workspace",
        "encryption.status",
        "Disabled",
        ["encryption is not Enabled with keyVaultProperties.keyIdentifier; use a customer-managed key"],
    ),
    Case(
        "azure-machinelearningservices-workspace-require-cmk-encryption",
        "aml-workspace",
        "encryption.keyVaultProperties.keyIdentifier",
        DELETE,
        ["encryption is not Enabled with keyVaultProperties.keyIdentifier; use a customer-managed key"],
    ),
    Case(
        "azure-authorization-roledefinition-disallow-wildcards",
        "role-definition",
        "permissions.0.actions",
        ["Microsoft.Resources/deployments/write", "Microsoft.Storage/*"],
        ["permissions[0].actions allows wildcard 'Microsoft.Storage/*'; name the exact operations"],
    ),
    Case(
        "azure-authorization-roledefinition-disallow-wildcards",
        "role-definition",
        "permissions.0.dataActions",
        ["*"],
        ["permissions[0].dataActions allows wildcard '*'; name the exact operations"],
    ),
]

STACK_CASES = [
    StackCase(
        "azure-monitor-resource-require-diagnostic-settings",
        "azure",
        "storage-account-diagnostics",
        None,
        None,
        [("'storage-account' has no diagnostic setting", "storage-account")],
    ),
    StackCase(
        "azure-monitor-resource-require-diagnostic-settings",
        "azure",
        "key-vault-diagnostics",
        "logs.0.enabled",
        False,
        [("'key-vault' diagnostic settings enable no audit log category", "key-vault")],
    ),
    StackCase(
        "azure-machinelearningservices-onlinedeployment-require-autoscaling",
        "azure",
        "churn-deployment",
        "properties.scaleSettings",
        DELETE,
        [
            (
                "deployment 'churn-deployment' has neither TargetUtilization scale settings nor an autoscale "
                "setting",
                "churn-deployment",
            )
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_resource_rule_reports_the_mutation(case: Case) -> None:
    run_case(case)


@pytest.mark.parametrize("case", STACK_CASES, ids=lambda c: c.id)
def test_stack_rule_reports_the_mutation(case: StackCase) -> None:
    run_stack_case(case)


def test_broad_role_on_a_single_resource_is_allowed() -> None:
    base = RESOURCES["role-assignment"]
    props = {
        **base.props,
        "roleDefinitionId": CONTRIBUTOR,
        "scope": f"{SUB}/resourceGroups/shipway-prod/providers/Microsoft.Storage/storageAccounts/sa",
    }
    assert check(by_name("azure-authorization-roleassignment-disallow-broad-grant"), base.type, props) == []


def test_app_insights_request_logging_alone_satisfies_capture() -> None:
    base = RESOURCES["aml-deployment"]
    props = {**base.props, "properties": {**base.props["properties"], "appInsightsEnabled": True}}
    props["properties"].pop("dataCollector")
    assert (
        check(by_name("azure-machinelearningservices-onlinedeployment-enable-data-capture"), base.type, props)
        == []
    )


def test_default_scale_uses_sku_capacity_and_dev_allows_one_instance() -> None:
    base = RESOURCES["aml-deployment"]
    props = {
        **base.props,
        "properties": {**base.props["properties"], "scaleSettings": {"scaleType": "Default"}},
        "sku": {"name": "Default", "capacity": 1},
    }
    policy = by_name("azure-machinelearningservices-onlinedeployment-require-min-instances")
    assert check(policy, base.type, props) == [
        "the deployment runs 1 instance(s) at minimum; prod runs at least 2"
    ]
    assert check(policy, base.type, props, config=DEV) == []

