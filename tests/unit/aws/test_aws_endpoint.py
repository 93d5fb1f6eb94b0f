"""InferenceEndpoint under recording mocks: children, security inputs, guardrails, pin changes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from components.aws.endpoint import InferenceEndpoint
from components.common import InferenceEndpointArgs
from tests.support.recording import FAKE_ACCOUNT, Recording, record
from tests.unit.aws.support import IMAGE, KEY_ARN, REGION, SETTINGS, TAGS, outputs, statements_by_sid

BUCKET = "shipway-prod-artifacts-mock"
TOPIC = f"arn:aws:sns:{REGION}:{FAKE_ACCOUNT}:shipway-prod-alerts"
SECRET = f"arn:aws:secretsmanager:{REGION}:{FAKE_ACCOUNT}:secret:shipway/prod/endpoint-api-key-AbCdEf"


def args(**overrides: Any) -> InferenceEndpointArgs:
    base = InferenceEndpointArgs(
        environment="prod",
        model_name="churn",
        model_version=3,
        tracking_uri=f"arn:aws:sagemaker:{REGION}:{FAKE_ACCOUNT}:mlflow-tracking-server/shipway-prod-mlflow",
        tags=TAGS,
        instance_count=2,
        latency_p99_ms=250.0,
        max_error_rate=0.01,
        drift_psi=0.2,
    )
    return replace(base, **overrides)


def build(endpoint_args: InferenceEndpointArgs | None = None, settings=SETTINGS, **kwargs: Any) -> Recording:
    kwargs = {"api_key_secret_arn": SECRET, "alarm_topic_arn": TOPIC, **kwargs}
    return record(
        lambda: InferenceEndpoint(
            "churn", endpoint_args or args(), settings, kms_key_arn=KEY_ARN, artifact_bucket=BUCKET, **kwargs
        ),
        stack="prod",
        outputs=outputs,
    )


def test_children_have_exact_types_and_names():
    rec = build()
    assert sorted((r.type, r.name) for r in rec.resources) == sorted(
        [
            ("shipway:aws:InferenceEndpoint", "churn"),
            ("aws:ec2/securityGroup:SecurityGroup", "churn-sg"),
            ("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "churn-sg-https-out"),
            ("aws:cloudwatch/logGroup:LogGroup", "churn-logs"),
            ("aws:cloudwatch/logMetricFilter:LogMetricFilter", "churn-drift-metric"),
            ("aws:iam/role:Role", "churn-role"),
            ("aws:iam/rolePolicy:RolePolicy", "churn-role-policy"),
            ("aws:sagemaker/model:Model", "churn-model"),
            ("aws:sagemaker/endpointConfiguration:EndpointConfiguration", "churn-config"),
            ("aws:cloudwatch/metricAlarm:MetricAlarm", "churn-error-rate"),
            ("aws:cloudwatch/metricAlarm:MetricAlarm", "churn-p99-latency"),
            ("aws:cloudwatch/metricAlarm:MetricAlarm", "churn-drift"),
            ("aws:sagemaker/endpoint:Endpoint", "churn-endpoint"),
            ("aws:appautoscaling/target:Target", "churn-scaling-target"),
            ("aws:appautoscaling/policy:Policy", "churn-scaling-policy"),
        ]
    )


def test_model_serves_the_pinned_version_from_the_artifact_bucket_inside_the_vpc():
    model = build().named("churn-model").inputs
    assert model["name"] == "shipway-prod-churn-v3"
    container = model["primaryContainer"]
    assert container["image"] == IMAGE
    assert container["modelDataUrl"] == f"s3://{BUCKET}/models/churn/3/model.tar.gz"
    assert container["environment"]["SHIPWAY_MODEL_URI"] == "models:/churn/3"
    assert container["environment"]["SHIPWAY_MODEL_VERSION"] == "3"
    assert container["environment"]["SHIPWAY_API_KEY_SECRET_ARN"] == SECRET
    assert model["vpcConfig"] == {"subnets": ["subnet-0a", "subnet-0b"], "securityGroupIds": ["churn-sg-id"]}
    assert model["enableNetworkIsolation"] is False  # it must reach Secrets Manager for its API key
    assert model["tags"] == {**TAGS, "model-name": "churn", "model-version": "3"}


def test_network_isolation_when_the_container_calls_nothing():
    model = build(api_key_secret_arn=None).named("churn-model").inputs
    assert model["enableNetworkIsolation"] is True
    assert "SHIPWAY_API_KEY_SECRET_ARN" not in model["primaryContainer"]["environment"]


def test_endpoint_config_encrypts_storage_and_captures_inputs_and_outputs():
    config = build().named("churn-config").inputs
    assert config["name"] == "shipway-prod-churn-v3"
    assert config["kmsKeyArn"] == KEY_ARN
    assert config["productionVariants"] == [
        {
            "variantName": "primary",
            "modelName": "shipway-prod-churn-v3",
            "initialInstanceCount": 2,
            "instanceType": "ml.m5.large",
            "initialVariantWeight": 1.0,
        }
    ]
    capture = config["dataCaptureConfig"]
    assert capture["enableCapture"] is True
    assert capture["initialSamplingPercentage"] == 100
    assert capture["destinationS3Uri"] == f"s3://{BUCKET}/data-capture/churn"
    assert capture["kmsKeyId"] == KEY_ARN
    assert [o["captureMode"] for o in capture["captureOptions"]] == ["Input", "Output"]


def test_endpoint_is_blue_green_with_auto_rollback_on_all_three_alarms():
    endpoint = build().named("churn-endpoint").inputs
    assert endpoint["name"] == "shipway-prod-churn"
    assert endpoint["endpointConfigName"] == "shipway-prod-churn-v3"
    policy = endpoint["deploymentConfig"]["blueGreenUpdatePolicy"]
    assert policy["trafficRoutingConfiguration"] == {
        "type": "LINEAR",
        "waitIntervalInSeconds": 300,
        "linearStepSize": {"type": "CAPACITY_PERCENT", "value": 25},
    }
    assert policy["terminationWaitInSeconds"] == 600
    alarms = endpoint["deploymentConfig"]["autoRollbackConfiguration"]["alarms"]
    assert [a["alarmName"] for a in alarms] == [
        "shipway-prod-churn-error-rate",
        "shipway-prod-churn-p99-latency",
        "shipway-prod-churn-drift",
    ]


def test_alarms_derive_from_the_slos_and_notify_the_topic():
    rec = build(args(latency_p99_ms=180.0, max_error_rate=0.02, drift_psi=0.3))
    errors = rec.named("churn-error-rate").inputs
    assert errors["threshold"] == 0.02
    assert [q["id"] for q in errors["metricQueries"]] == ["errors", "invocations", "rate"]
    assert errors["metricQueries"][2]["expression"] == "IF(invocations > 0, errors / invocations, 0)"
    assert errors["metricQueries"][0]["metric"]["dimensions"] == {
        "EndpointName": "shipway-prod-churn",
        "VariantName": "primary",
    }
    latency = rec.named("churn-p99-latency").inputs
    assert (latency["metricName"], latency["extendedStatistic"], latency["threshold"]) == (
        "ModelLatency",
        "p99",
        180000.0,
    )
    drift = rec.named("churn-drift").inputs
    assert (drift["namespace"], drift["metricName"], drift["threshold"]) == (
        "Shipway/shipway-prod-churn",
        "PredictionDriftPsi",
        0.3,
    )
    metric_filter = rec.named("churn-drift-metric").inputs
    assert metric_filter["metricTransformation"]["namespace"] == "Shipway/shipway-prod-churn"
    assert metric_filter["metricTransformation"]["value"] == "$.max_feature_psi"
    for alarm in (errors, latency, drift):
        assert alarm["alarmActions"] == [TOPIC]
        assert alarm["tags"] == {**TAGS, "model-name": "churn"}


def test_autoscaling_never_goes_below_the_pinned_instance_count():
    rec = build(args(instance_count=3))
    target = rec.named("churn-scaling-target").inputs
    assert target["resourceId"] == "endpoint/shipway-prod-churn/variant/primary"
    assert (target["minCapacity"], target["maxCapacity"]) == (3, 12)
    assert target["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    policy = rec.named("churn-scaling-policy").inputs
    assert policy["policyType"] == "TargetTrackingScaling"
    tracking = policy["targetTrackingScalingPolicyConfiguration"]
    assert tracking["targetValue"] == 100.0
    assert (
        tracking["predefinedMetricSpecification"]["predefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )


def test_log_group_is_encrypted_with_retention_and_security_group_only_allows_https_out():
    rec = build()
    logs = rec.named("churn-logs").inputs
    assert logs == {
        "name": "/aws/sagemaker/Endpoints/shipway-prod-churn",
        "kmsKeyId": KEY_ARN,
        "retentionInDays": 365,
        "tags": {**TAGS, "model-name": "churn"},
    }
    egress = rec.named("churn-sg-https-out").inputs
    assert (egress["ipProtocol"], egress["fromPort"], egress["toPort"]) == ("tcp", 443, 443)
    assert rec.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []


def test_execution_role_reaches_only_this_models_data():
    rec = build()
    trust = statements_by_sid(rec.named("churn-role"), "assumeRolePolicy")["AssumedByService"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": FAKE_ACCOUNT}}
    sids = statements_by_sid(rec.named("churn-role-policy"))
    assert sids["ReadThisModelsArtifacts"]["Action"] == ["s3:GetObject"]
    assert sids["ReadThisModelsArtifacts"]["Resource"] == [f"arn:aws:s3:::{BUCKET}/models/churn/*"]
    assert sids["WriteThisModelsDataCapture"]["Resource"] == [f"arn:aws:s3:::{BUCKET}/data-capture/churn/*"]
    assert sids["ArtifactKeyViaS3"]["Resource"] == [KEY_ARN]
    assert sids["ArtifactKeyViaS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    }
    assert sids["ReadOwnApiKey"]["Resource"] == [SECRET]
    assert sids["ReadOwnApiKey"]["Action"] == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
    ]
    assert sids["CreateEnisInOwnSubnets"]["Resource"] == [
        f"arn:aws:ec2:{REGION}:{FAKE_ACCOUNT}:network-interface/*",
        f"arn:aws:ec2:{REGION}:{FAKE_ACCOUNT}:subnet/subnet-0a",
        f"arn:aws:ec2:{REGION}:{FAKE_ACCOUNT}:subnet/subnet-0b",
        f"arn:aws:ec2:{REGION}:{FAKE_ACCOUNT}:security-group/churn-sg-id",
    ]
    assert sids["PullServingImage"]["Resource"] == [
        f"arn:aws:ecr:{REGION}:{FAKE_ACCOUNT}:repository/shipway-serving"
    ]
    for sid in ("DescribeVpcForEnis", "EcrLogin"):  # the only "*" resources: AWS cannot scope them
        assert sids[sid]["Resource"] == ["*"]
        assert sids[sid]["Condition"] == {"StringEquals": {"aws:RequestedRegion": REGION}}


@pytest.mark.parametrize(
    ("overrides", "settings", "message"),
    [
        (
            {"model_version": 0},
            SETTINGS,
            "model_version: 0 is not valid; pin an exact registry version (a positive integer), "
            "never 'latest' or an alias",
        ),
        (
            {"instance_count": 1},
            SETTINGS,
            "instance_count: 1 is not valid in prod; use at least 2 for availability",
        ),
        (
            {"api_key": "s3cr3t"},
            SETTINGS,
            "api_key: a secret value is not accepted on AWS; SageMaker model environments are readable with "
            "DescribeModel, pass api_key_secret_arn (a Secrets Manager ARN) instead",
        ),
        (
            {},
            replace(SETTINGS, serving_image="ghcr.io/acme/serving:1"),
            "aws.servingImage: 'ghcr.io/acme/serving:1' is not valid; SageMaker pulls serving images "
            "from ECR only, "
            "use <account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>",
        ),
        (
            {},
            replace(SETTINGS, vpc_id=None),
            "aws.vpcId: None is not valid for inference endpoints; set the VPC to run in",
        ),
        (
            {},
            replace(SETTINGS, subnet_ids=("subnet-0a",)),
            "aws.subnetIds: ['subnet-0a'] is not valid for inference endpoints; "
            "use at least 2 private subnets in "
            "different availability zones",
        ),
        (
            {"model_name": "m" + "x" * 50},
            SETTINGS,
            f"model_name: 'shipway-prod-m{'x' * 50}-v3' is 67 characters; "
            "SageMaker allows at most 63, use a shorter "
            "model name",
        ),
    ],
)
def test_invalid_input_is_rejected_before_anything_is_created(overrides, settings, message):
    with pytest.raises(ValueError) as error:
        build(args(**overrides), settings)
    assert str(error.value) == message


# ------------------------------------------------------------------ changing only the pin


def _inputs_by_name(rec: Recording) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in rec.resources}


def _changed_paths(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b)) for p in _changed_paths(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in _changed_paths(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [path]


def test_changing_only_the_pin_changes_only_model_config_and_endpoint():
    v3 = _inputs_by_name(build(args(model_version=3)))
    v4 = _inputs_by_name(build(args(model_version=4)))
    assert set(v3) == set(v4), "a pin change must not add or remove resources"
    changed = {name: _changed_paths(v3[name], v4[name]) for name in v3 if v3[name] != v4[name]}
    assert changed == {
        # Model and EndpointConfig are immutable in SageMaker: the versioned name makes Pulumi create
        # new ones (create-before-delete) while the old fleet still serves.
        "churn-model": [
            ".name",
            ".primaryContainer.environment.SHIPWAY_MODEL_URI",
            ".primaryContainer.environment.SHIPWAY_MODEL_VERSION",
            ".primaryContainer.modelDataUrl",
            ".tags.model-version",
        ],
        "churn-config": [".name", ".productionVariants[0].modelName", ".tags.model-version"],
        # The Endpoint keeps its name: only the config it points at changes -> in-place blue/green update.
        "churn-endpoint": [".endpointConfigName", ".tags.model-version"],
    }
    assert v3["churn-endpoint"]["name"] == v4["churn-endpoint"]["name"] == "shipway-prod-churn"
    assert v4["churn-config"]["name"] == "shipway-prod-churn-v4"
