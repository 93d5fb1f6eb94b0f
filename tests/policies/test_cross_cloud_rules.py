"""Cross-cloud rules: tags, regions, plaintext secrets, registry protection."""

from __future__ import annotations

import pytest

from policies.registry import by_name
from tests.policies.baselines import DEV, PROD, RESOURCES, TAGS
from tests.policies.cases import run_case
from tests.policies.support import DELETE, UNKNOWN_STR, Case, check

REF = "pass a reference (secret ARN, Key Vault URI, file path or valueFrom.secretKeyRef) instead"
C0 = "spec.template.spec.containers.0"

CASES = [
    Case(
        "any-compliance-resource-require-tags",
        "sm-secret",
        "tags.owner",
        DELETE,
        ["missing required tags: owner"],
    ),
    Case(
        "any-compliance-resource-require-tags",
        "storage-account",
        "tags",
        {"owner": "ml-platform"},
        ["missing required tags: cost-center, environment, data-classification"],
    ),
    Case(
        "any-compliance-resource-require-tags",
        "k8s-serving",
        "metadata.labels.cost-center",
        "",
        ["missing required tags: cost-center"],
    ),
    Case(
        "any-compliance-resource-require-tags",
        "kms-key",
        "tags.environment",
        "dev",
        ["tag environment is 'dev' but this stack is 'prod'"],
    ),
    Case(
        "any-compliance-resource-restrict-region",
        "kms-key",
        "region",
        "us-east-1",
        ["region 'us-east-1' is not allowed; allowed regions: eu-west-1, westeurope"],
    ),
    Case(
        "any-compliance-resource-restrict-region",
        "storage-account",
        "location",
        "East US",
        ["region 'East US' is not allowed; allowed regions: eu-west-1, westeurope"],
    ),
    Case(
        "any-security-input-disallow-plaintext-secrets",
        "sm-model",
        "primaryContainer.environment.DB_PASSWORD",
        "hunter2",
        [f"primaryContainer.environment.DB_PASSWORD is a secret-named input with a literal value; {REF}"],
    ),
    Case(
        "any-security-input-disallow-plaintext-secrets",
        "k8s-serving",
        f"{C0}.env.1",
        {"name": "SHIPWAY_API_KEY", "value": "k-123456"},
        [
            "spec.template.spec.containers[0].env[1].value is a secret-named input with a literal "
            f"value; {REF}"
        ],
    ),
    Case(
        "any-security-input-disallow-plaintext-secrets",
        "grafana",
        "properties.apiKey",
        "glsa_0123456789abcdef",
        [f"properties.apiKey is a secret-named input with a literal value; {REF}"],
    ),
    Case(
        "any-security-input-disallow-plaintext-secrets",
        "rds",
        "password",
        "hunter2",
        [f"password is a secret-named input with a literal value; {REF}"],
    ),
    Case(
        "any-security-input-disallow-plaintext-secrets",
        "local-tracking",
        "backendStoreUri",
        "postgresql://mlflow:hunter2@db.internal:5432/mlflow",
        [f"backendStoreUri looks like a password inside a URL; {REF}"],
    ),
    Case(
        "any-security-input-disallow-plaintext-secrets",
        "sm-model",
        "primaryContainer.environment.BOOT",
        # Assembled at runtime so the repo guard (tests/unit/test_repo_guard.py) never sees a
        # committed key-shaped string; the rule sees the full value.
        "AKIA" + "ABCDEFGHIJKLMNOP",
        [f"primaryContainer.environment.BOOT looks like an AWS access key id; {REF}"],
    ),
]


IMAGE = "any-container-image-pin-digest"
CASES += [
    Case(
        IMAGE,
        "k8s-serving",
        "spec.template.spec.containers.0.image",
        "ghcr.io/shipway/serving:0.1.0",
        ["containers[serving].image 'ghcr.io/shipway/serving:0.1.0' is pinned by tag '0.1.0' only; in prod "
         "pin it as <repository>@sha256:<digest>"],
    ),
    Case(
        IMAGE,
        "sm-model",
        "primaryContainer.image",
        "000000000000.dkr.ecr.eu-west-1.amazonaws.com/shipway-serving:latest",
        ["primaryContainer.image '000000000000.dkr.ecr.eu-west-1.amazonaws.com/shipway-serving:latest' uses "
         "the moving tag 'latest'; in prod pin it as <repository>@sha256:<digest>"],
    ),
]

@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cross_cloud_rule_reports_the_mutation(case: Case) -> None:
    run_case(case)


def test_provider_default_tags_count_as_the_resource_tags() -> None:
    base = RESOURCES["sm-secret"]
    props = {**base.props, "tags": {"owner": "ml-platform"}}
    provider = {"region": "eu-west-1", "defaultTags": {"tags": TAGS}}
    assert check(by_name("any-compliance-resource-require-tags"), base.type, props, provider=provider) == []


def test_untaggable_types_are_not_asked_for_tags() -> None:
    assert (
        check(
            by_name("any-compliance-resource-require-tags"),
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            {"bucket": "b"},
        )
        == []
    )


def test_region_falls_back_to_the_provider_and_empty_allow_list_disables_the_rule() -> None:
    base = RESOURCES["sm-secret"]
    policy = by_name("any-compliance-resource-restrict-region")
    assert check(policy, base.type, base.props, provider={"region": "us-west-2"}, config=PROD) == [
        "region 'us-west-2' is not allowed; allowed regions: eu-west-1, westeurope"
    ]
    assert (
        check(policy, base.type, base.props, provider={"region": "us-west-2"}, config={"allowedRegions": []})
        == []
    )


def test_secret_stores_and_references_are_not_plaintext_secrets() -> None:
    policy = by_name("any-security-input-disallow-plaintext-secrets")
    assert (
        check(
            policy,
            "aws:secretsmanager/secretVersion:SecretVersion",
            {"secretId": "arn:aws:secretsmanager:eu-west-1:000000000000:secret:x", "secretString": "pw"},
        )
        == []
    )
    assert check(policy, "kubernetes:core/v1:Secret", {"stringData": {"password": "pw"}}) == []
    assert (
        check(
            policy,
            "aws:rds/instance:Instance",
            {
                "passwordWo": UNKNOWN_STR,
                "masterUserSecretKmsKeyId": "k",
                "passwordSecretArn": "arn:aws:secretsmanager:x",
            },
        )
        == []
    )


def test_registry_resources_in_prod_must_be_protected() -> None:
    base = RESOURCES["model-package-group"]
    policy = by_name("any-mlops-registry-protect-from-delete")
    message = ["the registry resource is neither protected nor retained on delete in prod"]
    assert check(policy, base.type, base.props, protect=False) == message
    assert check(policy, base.type, base.props, protect=False, config=DEV) == []
    tracking = RESOURCES["local-tracking"]
    assert check(policy, tracking.type, tracking.props, protect=False) == message
    assert check(policy, tracking.type, {**tracking.props, "retainOnDelete": True}, protect=False) == []


@pytest.mark.parametrize(
    ("key", "flagged"),
    [
        ("password", True),
        ("dbPassword", True),
        ("DB_PASSWORD", True),
        ("clientSecret", True),
        ("MLFLOW_TRACKING_TOKEN", True),
        ("apiKey", True),
        ("connectionString", True),
        ("AZURE_STORAGE_ACCOUNT_KEY", True),
        ("bypass", False),
        ("NETWORK_BYPASS", False),
        ("compass", False),
        ("userPass", True),
        ("SASToken", True),
        ("db-password", True),
        ("passwordLength", False),
        ("apiKeyFile", False),
        ("secretName", False),
        ("passwordSecretArn", False),
        ("tokenUrl", False),
        ("keyVaultUri", False),
        ("SHIPWAY_API_KEY_SECRET_ARN", False),
    ],
)
def test_secret_looking_names(key: str, flagged: bool) -> None:
    found = check(
        by_name("any-security-input-disallow-plaintext-secrets"),
        "aws:lambda/function:Function",
        {"environment": {"variables": {key: "some-literal-value"}}},
    )
    assert found == (
        [f"environment.variables.{key} is a secret-named input with a literal value; {REF}"]
        if flagged
        else []
    )


@pytest.mark.parametrize("value", ["Disabled", "Enabled", "true", "FALSE"])
def test_switch_values_of_secret_named_inputs_are_not_secrets(value: str) -> None:
    """Azure Managed Grafana's ``apiKey`` turns API keys on or off; it never holds one."""
    base = RESOURCES["grafana"]
    props = {**base.props, "properties": {**base.props["properties"], "apiKey": value}}
    assert check(by_name("any-security-input-disallow-plaintext-secrets"), base.type, props) == []


def test_azure_network_acl_bypass_is_not_a_secret() -> None:
    vault = {"properties": {"networkAcls": {"bypass": "AzureServices", "defaultAction": "Deny"}}}
    assert check(by_name("any-security-input-disallow-plaintext-secrets"), "azure-native:keyvault:Vault",
                 vault) == []


def test_stack_config_forwarded_to_the_dynamic_provider_is_not_a_plaintext_input() -> None:
    """The engine passes every `<ns>:<key>` stack config value to the Python dynamic provider;
    `pulumi config set --secret` values arrive decrypted but live encrypted in the stack file."""
    policy = by_name("any-security-input-disallow-plaintext-secrets")
    config = {"shipway:endpointApiKey": "k-0123456789", "shipway:local": {"dataDir": "/tmp/x"}}
    assert check(policy, "pulumi:providers:pulumi-python", config) == []


def test_other_providers_still_may_not_carry_literal_credentials() -> None:
    policy = by_name("any-security-input-disallow-plaintext-secrets")
    assert check(policy, "pulumi:providers:aws", {"region": "eu-west-1", "secretKey": "wJalrXUtnFEMI"}) == [
        f"secretKey is a secret-named input with a literal value; {REF}"
    ]
    assert check(policy, "pulumi:providers:pulumi-python", {"apiKey": "k-0123456789"}) == [
        f"apiKey is a secret-named input with a literal value; {REF}"
    ]
