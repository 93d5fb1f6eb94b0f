"""PlatformKey, Secrets, Observability and DeployIdentity under recording mocks."""

from __future__ import annotations

import json
from dataclasses import replace

import pulumi
import pytest
from pulumi.runtime.rpc import _special_secret_sig, _special_sig_key

from components.aws.endpoint import VARIANT
from components.aws.identity import DeployIdentity, DeployIdentityArgs
from components.aws.kms import KEY_ACCOUNT_ACTIONS, PlatformKey, PlatformKeyArgs
from components.aws.observability import Observability
from components.aws.secrets import Secrets, secret_key
from components.common import ObservabilityArgs, SecretsArgs
from shipway_core.config import SloSettings
from shipway_core.observability import cloudwatch
from shipway_core.observability.rules import generate_rules
from tests.support.recording import FAKE_ACCOUNT, record, resolve
from tests.unit.aws.support import KEY_ARN, REGION, SETTINGS, TAGS, doc, outputs, statements_by_sid

BUCKET = "shipway-prod-artifacts-mock"

# ------------------------------------------------------------------------------ key


def test_platform_key_rotates_and_its_policy_names_the_key_not_star():
    rec = record(lambda: PlatformKey("key", PlatformKeyArgs("prod", TAGS)), outputs=outputs)
    key = rec.named("key-key").inputs
    assert (key["enableKeyRotation"], key["rotationPeriodInDays"], key["deletionWindowInDays"]) == (
        True,
        365,
        30,
    )
    assert key["customerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
    assert "policy" not in key  # the policy is a separate resource so it can name the key's ARN
    assert rec.named("key-alias").inputs["name"] == "alias/shipway-prod"
    policy = rec.named("key-key-policy").inputs
    assert policy["bypassPolicyLockoutSafetyCheck"] is False
    sids = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    assert set(sids) == {
        "AccountAdministersKeyAndEnablesIamPolicies",
        "CloudWatchLogsEncryptsThisAccountsLogGroups",
        "AlarmsAndPrometheusPublishToEncryptedTopic",
    }
    for statement in sids.values():
        assert statement["Resource"] == KEY_ARN
        assert not any(a == "*" or a.endswith(":*") for a in statement["Action"])
    assert sids["AccountAdministersKeyAndEnablesIamPolicies"]["Principal"] == {
        "AWS": f"arn:aws:iam::{FAKE_ACCOUNT}:root"
    }
    assert sids["AccountAdministersKeyAndEnablesIamPolicies"]["Action"] == list(KEY_ACCOUNT_ACTIONS)
    assert sids["CloudWatchLogsEncryptsThisAccountsLogGroups"]["Condition"] == {
        "ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{FAKE_ACCOUNT}:log-group:*"}
    }


def test_cross_account_readers_may_only_decrypt_via_s3():
    reader = f"arn:aws:iam::{FAKE_ACCOUNT}:role/shipway-test-deploy"
    rec = record(
        lambda: PlatformKey("key", PlatformKeyArgs("dev", TAGS, cross_account_readers=(reader,))),
        outputs=outputs,
    )
    sids = statements_by_sid(rec.named("key-key-policy"))
    assert sids["PromotionReadersDecryptModelsViaS3"] == {
        "Sid": "PromotionReadersDecryptModelsViaS3",
        "Effect": "Allow",
        "Principal": {"AWS": [reader]},
        "Action": ["kms:Decrypt", "kms:DescribeKey"],
        "Resource": KEY_ARN,
        "Condition": {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}},
    }


def test_key_deletion_window_is_validated():
    with pytest.raises(ValueError) as error:
        record(lambda: PlatformKey("key", PlatformKeyArgs("prod", TAGS, deletion_window_days=3)))
    assert str(error.value) == "deletion_window_days: 3 is not valid; use 7 to 30 (AWS limits)"


# -------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("endpointApiKey", "endpoint-api-key"),
        ("trackingDbPassword", "tracking-db-password"),
    ],
)
def test_secret_names_normalise_to_kebab_case(raw, key):
    assert secret_key(raw) == key


def _secrets(settings=SETTINGS, values=None):
    values = values if values is not None else {"endpointApiKey": pulumi.Output.secret("s3cr3t")}
    holder: dict[str, Secrets] = {}

    def build():
        holder["c"] = Secrets("secrets", SecretsArgs("prod", TAGS, values), settings, kms_key_arn=KEY_ARN)
        return holder["c"].read_statements(["endpointApiKey"], REGION)

    return record(build, outputs=outputs), holder


def test_secrets_are_kms_encrypted_and_values_stay_secret():
    rec, _ = _secrets()
    secret = rec.named("secrets-endpoint-api-key").inputs
    assert secret == {
        "name": "shipway/prod/endpoint-api-key",
        "kmsKeyId": KEY_ARN,
        "recoveryWindowInDays": 30,
        "description": "Shipway prod endpoint-api-key",
        "tags": TAGS,
    }
    value = rec.named("secrets-endpoint-api-key-value").inputs["secretString"]
    assert value[_special_sig_key] == _special_secret_sig  # recorded as a secret, never plain state
    assert rec.of_type("aws:secretsmanager/secretRotation:SecretRotation") == []


def test_rotation_when_a_rotation_lambda_is_configured():
    function = f"arn:aws:lambda:{REGION}:{FAKE_ACCOUNT}:function:rotate"
    rec, _ = _secrets(replace(SETTINGS, secret_rotation_lambda_arn=function, secret_rotation_days=14))
    rotation = rec.named("secrets-endpoint-api-key-rotation").inputs
    assert rotation == {
        "secretId": "secrets-endpoint-api-key-id",
        "rotationLambdaArn": function,
        "rotationRules": {"automaticallyAfterDays": 14},
    }


def test_consumers_read_exactly_their_secrets():
    rec, _ = _secrets(values={"endpointApiKey": "a", "webhookToken": "b"})
    statements = resolve(pulumi.Output.json_dumps(rec.result))
    read, decrypt = json.loads(statements)
    assert read["Resource"] == [
        f"arn:aws:secretsmanager:{REGION}:{FAKE_ACCOUNT}:secret:shipway/prod/endpoint-api-key-AbCdEf"
    ]
    assert read["Action"] == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
    }


def test_unknown_and_colliding_secret_names_are_rejected():
    with pytest.raises(ValueError) as error:
        _secrets(values={"endpointAPIKey": "a", "endpointApikey": "b"})
    assert str(error.value) == (
        "values: ['endpointAPIKey', 'endpointApikey'] name the same secret twice after "
        "normalising to kebab-case; rename one"
    )
    with pytest.raises(ValueError) as error:
        secret_key("endpoint_api_key")
    assert str(error.value) == (
        "values: secret name 'endpoint_api_key' is not valid; use the camelCase config key it is set with "
        "(`pulumi config set --secret shipway:<key>`), e.g. endpointApiKey"
    )


# -------------------------------------------------------------------- observability


def _observability(settings=SETTINGS):
    args = ObservabilityArgs(
        "prod",
        TAGS,
        endpoints={"churn": "shipway-prod-churn"},
        availability=0.999,
        latency_p99_ms=200.0,
        drift_psi=0.25,
        log_retention_days=400,
    )
    return record(lambda: Observability("obs", args, settings, kms_key_arn=KEY_ARN), outputs=outputs)


def test_observability_children_and_encryption():
    rec = _observability()
    assert sorted((r.type, r.name) for r in rec.resources) == sorted(
        [
            ("shipway:aws:Observability", "obs"),
            ("aws:sns/topic:Topic", "obs-alerts"),
            ("aws:sns/topicPolicy:TopicPolicy", "obs-alerts-policy"),
            ("aws:cloudwatch/logGroup:LogGroup", "obs-prometheus-logs"),
            ("aws:cloudwatch/logGroup:LogGroup", "obs-otel-collector-logs"),
            ("aws:amp/workspace:Workspace", "obs-prometheus"),
            ("aws:amp/ruleGroupNamespace:RuleGroupNamespace", "obs-rules"),
            ("aws:amp/alertManagerDefinition:AlertManagerDefinition", "obs-alertmanager"),
            ("aws:iam/role:Role", "obs-grafana-role"),
            ("aws:iam/rolePolicy:RolePolicy", "obs-grafana-role-policy"),
            ("aws:grafana/workspace:Workspace", "obs-grafana"),
            ("aws:ssm/parameter:Parameter", "obs-otel-config"),
        ]
        + [(r.type, r.name) for r in rec.resources if r.type.startswith("aws:cloudwatch/") and "Alarm" in r.type]
    )
    # 2 SLOs x 4 tiers x 2 windows silent alarms + one notifying composite per SLO and severity
    assert len(rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")) == 16
    assert len(rec.of_type("aws:cloudwatch/compositeAlarm:CompositeAlarm")) == 4
    assert rec.named("obs-alerts").inputs["kmsMasterKeyId"] == KEY_ARN
    assert rec.named("obs-prometheus").inputs["kmsKeyArn"] == KEY_ARN
    for log_group in rec.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert (log_group.inputs["kmsKeyId"], log_group.inputs["retentionInDays"]) == (KEY_ARN, 400)
    topic_policy = {s["Sid"]: s for s in doc(rec.named("obs-alerts-policy"))["Statement"]}
    assert topic_policy["AlarmsAndPrometheusPublish"]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": FAKE_ACCOUNT}
    }
    assert topic_policy["DenyInsecureTransport"]["Effect"] == "Deny"


def test_slo_rules_are_the_shared_rule_file_for_the_args_slo():
    rec = _observability()
    rules = json.loads(rec.named("obs-rules").inputs["data"])
    slo = SloSettings(availability=0.999, latency_p99_ms=200.0, drift_psi=0.25)
    assert rules == generate_rules(slo, ["churn"], "prod")
    page = next(r for g in rules["groups"] for r in g["rules"]
                if r.get("alert") == "ShipwayAvailabilityBudgetBurn" and r["labels"]["severity"] == "page")
    assert "> 0.0144" in page["expr"]  # 14.4 x (1 - 0.999)


def test_cloudwatch_slo_alarms_come_from_the_shared_definition():
    rec = _observability()
    slo = SloSettings(availability=0.999, latency_p99_ms=200.0, drift_psi=0.25)
    windows, composites = cloudwatch.alarms(slo, "shipway-prod-churn")
    alarms = {a.inputs["name"]: a.inputs for a in rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert sorted(alarms) == sorted(w.name for w in windows)
    fast = alarms["shipway-prod-churn-availability-14.4x-1h"]
    assert (fast["threshold"], fast["comparisonOperator"], fast["treatMissingData"], fast["actionsEnabled"]) == (
        pytest.approx(0.0144), "GreaterThanThreshold", "notBreaching", False)
    queries = {q["id"]: q for q in fast["metricQueries"]}
    assert queries["ratio"]["expression"] == "IF(total >= 100, bad / total, 0)"  # the low-traffic guard
    assert queries["bad"]["metric"]["dimensions"] == {"EndpointName": "shipway-prod-churn", "VariantName": VARIANT}
    assert (queries["bad"]["metric"]["period"], queries["bad"]["metric"]["stat"]) == (3600, "Sum")
    latency = {q["id"]: q for q in alarms["shipway-prod-churn-latency-1x-3d"]["metricQueries"]}
    assert latency["fast"]["metric"]["stat"] == "PR(:200000)"
    assert latency["total"]["metric"]["metricName"] == "Invocations"
    composite = {c.inputs["alarmName"]: c.inputs for c in rec.of_type("aws:cloudwatch/compositeAlarm:CompositeAlarm")}
    assert {n: c["alarmRule"] for n, c in composite.items()} == {c.name: c.rule for c in composites}
    assert composite["shipway-prod-churn-availability-page"]["alarmActions"] == [
        "arn:aws:mock:eu-west-1:000000000000:obs-alerts"
    ]
    assert composite["shipway-prod-churn-latency-ticket"]["tags"]["severity"] == "ticket"
    definition = rec.named("obs-alertmanager").inputs["definition"]
    assert "topic_arn: arn:aws:mock:eu-west-1:000000000000:obs-alerts" in definition
    assert f"region: {REGION}" in definition


def test_grafana_may_only_query_this_workspace_and_read_cloudwatch_metrics_in_the_stacks_region():
    """The dashboard's panels query CloudWatch (tests/unit/aws/test_aws_dashboard.py derives the calls)."""
    rec = _observability()
    grafana = rec.named("obs-grafana").inputs
    assert (grafana["permissionType"], grafana["accountAccessType"], grafana["dataSources"]) == (
        "CUSTOMER_MANAGED",
        "CURRENT_ACCOUNT",
        ["CLOUDWATCH", "PROMETHEUS"],
    )
    sids = statements_by_sid(rec.named("obs-grafana-role-policy"))
    assert sids == {
        "QueryOwnWorkspace": {
            "Sid": "QueryOwnWorkspace",
            "Effect": "Allow",
            "Action": ["aps:GetLabels", "aps:GetMetricMetadata", "aps:GetSeries", "aps:QueryMetrics"],
            "Resource": [f"arn:aws:aps:{REGION}:{FAKE_ACCOUNT}:workspace/ws-mock"],
        },
        # CloudWatch has no resource-level permissions for metric reads: "*", fenced to the region
        "ReadCloudWatchMetrics": {
            "Sid": "ReadCloudWatchMetrics",
            "Effect": "Allow",
            "Action": ["cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics"],
            "Resource": ["*"],
            "Condition": {"StringEquals": {"aws:RequestedRegion": REGION}},
        },
    }
    without = _observability(replace(SETTINGS, managed_grafana=False))
    assert without.of_type("aws:grafana/workspace:Workspace") == []
    assert json.loads(resolve(without.result.dashboard_json))["panels"]  # the dashboard is still an output


def test_the_dashboard_output_charts_the_args_endpoint_on_cloudwatch():
    holder: dict[str, Observability] = {}

    def build():
        holder["c"] = Observability("obs", ObservabilityArgs(
            "prod", TAGS, endpoints={"churn": pulumi.Output.from_input("shipway-prod-churn")}, latency_p99_ms=200.0,
            drift_null_rate=0.07), SETTINGS, kms_key_arn=KEY_ARN)
        return holder["c"]

    rec = record(build, outputs=outputs)
    dashboard = json.loads(resolve(rec.result.dashboard_json))
    assert (dashboard["title"], dashboard["uid"], dashboard["tags"]) == (
        "Shipway prod", "shipway-prod", ["shipway", "prod"])
    targets = [t for p in dashboard["panels"] for t in p["targets"] if "metricName" in t]
    assert {(t["namespace"], t["metricName"]) for t in targets} == {
        ("AWS/SageMaker", "Invocations"), ("AWS/SageMaker", "Invocation5XXErrors"), ("AWS/SageMaker", "ModelLatency"),
        *(("Shipway/shipway-prod-churn", m) for m in ("DriftWasserstein", "DriftJensenShannon", "DriftNullRate",
                                                      "DriftSamples"))}
    assert {t["region"] for t in targets} == {REGION}
    null_rate = next(p for p in dashboard["panels"] if p["title"] == "churn: drift null-rate (worst feature)")
    assert null_rate["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 0.07
    latency = next(p for p in dashboard["panels"] if p["title"] == "churn: p99 model latency")
    assert latency["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 200_000  # microseconds


def test_otel_collector_config_sends_traces_to_xray_and_metrics_to_the_workspace():
    parameter = _observability().named("obs-otel-config").inputs
    assert (parameter["name"], parameter["type"]) == ("/shipway/prod/otel-collector/config", "String")
    value = parameter["value"]  # the provider marks Parameter.value secret in the schema
    config = json.loads(value["value"] if isinstance(value, dict) else value)
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["awsxray"]
    assert config["exporters"]["awsxray"]["region"] == REGION
    assert config["exporters"]["prometheusremotewrite"] == {
        "endpoint": "https://mock-aps/workspaces/ws-mock/api/v1/remote_write",
        "auth": {"authenticator": "sigv4auth"},
    }
    assert config["extensions"]["sigv4auth"] == {"region": REGION, "service": "aps"}
    # generated from the one source of every target's collector, not written here
    from shipway_core.observability.collector import adot_collector_config

    assert config == adot_collector_config(REGION, "https://mock-aps/workspaces/ws-mock/api/v1/remote_write", "prod")
    assert config["service"]["pipelines"]["traces"]["processors"] == [
        "memory_limiter", "resource", "filter/probes", "batch"]


# ------------------------------------------------------------------ deploy identity


def _identity(settings=SETTINGS):
    roles = [f"arn:aws:iam::{FAKE_ACCOUNT}:role/churn-role"]
    return record(
        lambda: DeployIdentity(
            "deploy",
            DeployIdentityArgs("prod", TAGS),
            settings,
            artifact_bucket=BUCKET,
            kms_key_arn=KEY_ARN,
            endpoint_role_arns=roles,
            tracking_server_arn=f"arn:aws:sagemaker:{REGION}:{FAKE_ACCOUNT}:"
            "mlflow-tracking-server/shipway-prod-mlflow",
        ),
        outputs=outputs,
    )


def test_github_oidc_trust_is_pinned_to_repository_environment_and_audience():
    rec = _identity()
    provider = rec.named("deploy-github-oidc").inputs
    assert (provider["url"], provider["clientIdLists"]) == (
        "https://token.actions.githubusercontent.com",
        ["sts.amazonaws.com"],
    )
    role = rec.named("deploy-role").inputs
    assert (role["name"], role["maxSessionDuration"]) == ("shipway-prod-deploy", 3600)
    assert json.loads(role["assumeRolePolicy"])["Statement"] == [
        {
            "Sid": "GithubEnvironmentOnly",
            "Effect": "Allow",
            "Principal": {"Federated": "arn:aws:mock:eu-west-1:000000000000:deploy-github-oidc"},
            "Action": ["sts:AssumeRoleWithWebIdentity"],
            "Condition": {
                "StringEquals": {
                    "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                    "token.actions.githubusercontent.com:sub": "repo:acme/shipway-models:environment:prod",
                }
            },
        }
    ]
    assert rec.of_type("aws:iam/accessKey:AccessKey") == []


def test_deploy_role_is_limited_to_the_promotion_scope():
    sids = statements_by_sid(_identity().named("deploy-policy"))
    sm = f"arn:aws:sagemaker:{REGION}:{FAKE_ACCOUNT}"
    assert sids["VersionedModelsAndConfigs"]["Resource"] == [
        f"{sm}:model/shipway-prod-*",
        f"{sm}:endpoint-config/shipway-prod-*",
    ]
    assert sids["UpdateAndVerifyEndpoints"]["Resource"] == [f"{sm}:endpoint/shipway-prod-*"]
    assert "sagemaker:DeleteEndpoint" not in sids["UpdateAndVerifyEndpoints"]["Action"]
    assert sids["PassEndpointRolesToSageMaker"] == {
        "Sid": "PassEndpointRolesToSageMaker",
        "Effect": "Allow",
        "Action": ["iam:PassRole"],
        "Resource": [f"arn:aws:iam::{FAKE_ACCOUNT}:role/churn-role"],
        "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    }
    assert sids["WritePromotedModels"]["Resource"] == [f"arn:aws:s3:::{BUCKET}/models/*"]
    assert sids["ReadAndAliasRegistry"]["Resource"] == [f"{sm}:mlflow-tracking-server/shipway-prod-mlflow"]
    assert sids["EndpointStorageKeyGrants"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"sagemaker.{REGION}.amazonaws.com"},
        "Bool": {"kms:GrantIsForAWSResource": "true"},
    }
    assert not any(
        a.startswith(("iam:Create", "iam:Put", "iam:Attach", "kms:CreateKey", "kms:PutKeyPolicy"))
        for s in sids.values()
        for a in s["Action"]
    )


def test_reads_the_source_environment_when_promoting_across_accounts():
    source_key = f"arn:aws:kms:{REGION}:{FAKE_ACCOUNT}:key/source"
    sids = statements_by_sid(
        _identity(
            replace(
                SETTINGS,
                promotion_source_bucket="shipway-test-artifacts-x",
                promotion_source_key_arn=source_key,
            )
        ).named("deploy-policy")
    )
    assert sids["ReadSourceModels"]["Resource"] == ["arn:aws:s3:::shipway-test-artifacts-x/models/*"]
    assert sids["SourceKeyViaS3"]["Resource"] == [source_key]
    assert sids["SourceKeyViaS3"]["Action"] == ["kms:Decrypt", "kms:DescribeKey"]


def test_existing_oidc_provider_is_referenced_not_created():
    rec = _identity(replace(SETTINGS, create_oidc_provider=False))
    assert rec.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    trust = json.loads(rec.named("deploy-role").inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {
        "Federated": f"arn:aws:iam::{FAKE_ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    }


def test_deploy_identity_needs_a_repository():
    with pytest.raises(ValueError) as error:
        _identity(replace(SETTINGS, github_repository=None))
    assert str(error.value) == (
        "aws.githubRepository: None is not valid; set owner/name of the repository whose "
        "workflows deploy this environment"
    )
