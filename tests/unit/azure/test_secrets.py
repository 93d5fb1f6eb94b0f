"""Secrets on Azure: a private RBAC vault, secret values kept secret, secret-scoped readers."""

from __future__ import annotations

import pulumi
import pytest

from components.azure import AzureTarget, Secrets
from components.common import SecretsArgs
from tests.support.recording import Recording, resolve
from tests.unit.azure.provider import TAGS, record_azure, role_id, unsecret

TARGET = AzureTarget("rg-shipway", "westeurope")
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


@pytest.fixture(scope="module")
def rec() -> Recording:
    values = {"endpointApiKey": pulumi.Output.secret("s3cr3t"), "trackingDbPassword": "pw"}
    return record_azure(lambda: Secrets("secrets", SecretsArgs("prod", TAGS, values), TARGET,
                                        readers={"ci": "ci-principal"}))


def test_children(rec: Recording) -> None:
    assert sorted((r.type, r.name) for r in rec.resources) == [
        ("azure-native:authorization:RoleAssignment", "secrets-endpointApiKey-ci"),
        ("azure-native:authorization:RoleAssignment", "secrets-trackingDbPassword-ci"),
        ("azure-native:keyvault:Secret", "secrets-endpointApiKey"),
        ("azure-native:keyvault:Secret", "secrets-trackingDbPassword"),
        ("azure-native:keyvault:Vault", "secrets-vault"),
        ("shipway:azure:Secrets", "secrets"),
    ]


def test_vault_is_private_rbac_mode_with_purge_protection(rec: Recording) -> None:
    vault = rec.one("azure-native:keyvault:Vault").inputs
    assert vault["vaultName"] == "kv-secrets-8623f01d"
    props = vault["properties"]
    assert (props["enableRbacAuthorization"], props["enablePurgeProtection"], props["enableSoftDelete"]) == (
        True, True, True)
    assert props["publicNetworkAccess"] == "Disabled"
    assert props["sku"] == {"family": "A", "name": "standard"}
    assert vault["tags"] == TAGS


def test_secret_values_are_recorded_as_secrets(rec: Recording) -> None:
    for key, value in (("endpointApiKey", "s3cr3t"), ("trackingDbPassword", "pw")):
        secret = rec.one("azure-native:keyvault:Secret", f"secrets-{key}").inputs
        assert secret["secretName"] == key
        assert secret["vaultName"] == "kv-secrets-8623f01d"
        props = unsecret(secret["properties"])  # even a plain input is stored encrypted
        assert props == {"value": value, "contentType": "text/plain", "attributes": {"enabled": True}}
        assert secret["tags"] == TAGS


def test_readers_get_secrets_user_on_each_secret_not_the_vault(rec: Recording) -> None:
    grants = rec.of_type("azure-native:authorization:RoleAssignment")
    assert {(g.inputs["scope"], g.inputs["roleDefinitionId"], g.inputs["principalId"]) for g in grants} == {
        ("secrets-endpointApiKey-id", role_id(SECRETS_USER), "ci-principal"),
        ("secrets-trackingDbPassword-id", role_id(SECRETS_USER), "ci-principal"),
    }


def test_outputs(rec: Recording) -> None:
    secrets = rec.result
    assert resolve(secrets.vault_uri) == "https://mock-kv-secrets-8623f01d.vault.azure.net/"
    assert resolve(secrets.secret_ids) == {"endpointApiKey": "secrets-endpointApiKey-id",
                                           "trackingDbPassword": "secrets-trackingDbPassword-id"}
    assert resolve(secrets.secret_uris)["endpointApiKey"] == (
        "https://mock-vault.vault.azure.net/secrets/endpointApiKey")


def test_invalid_secret_name_fails_before_anything_is_created() -> None:
    with pytest.raises(ValueError) as err:
        Secrets("secrets", SecretsArgs("prod", TAGS, {"db_password": "x"}), TARGET)
    assert str(err.value) == (
        "values: secret name 'db_password' is not valid; use the camelCase config key it is set with "
        "(`pulumi config set --secret shipway:<key>`), e.g. endpointApiKey")
