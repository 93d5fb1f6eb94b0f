"""InferenceEndpoint under recording mocks: children, security inputs, guardrails, pin changes."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from components.aws.endpoint import InferenceEndpoint
from components.common import InferenceEndpointArgs
from shipway_core.config import SloSettings
from shipway_core.observability import drift as drift_decision
from shipway_core.observability.rules import generate_rules
from tests.support.recording import FAKE_ACCOUNT, Recording, record
from tests.unit.aws.support import IMAGE, KEY_ARN, REGION, SETTINGS, TAGS, outputs, statements_by_sid
from tests.unit.drift import live_effects

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
            ("aws:cloudwatch/logMetricFilter:LogMetricFilter", "churn-drift-wasserstein-metric"),
            ("aws:cloudwatch/logMetricFilter:LogMetricFilter", "churn-drift-jensen-shannon-metric"),
            ("aws:cloudwatch/logMetricFilter:LogMetricFilter", "churn-drift-null-rate-metric"),
            ("aws:cloudwatch/logMetricFilter:LogMetricFilter", "churn-drift-samples-metric"),
            ("aws:iam/role:Role", "churn-role"),
            ("aws:iam/rolePolicy:RolePolicy", "churn-role-policy"),
            ("aws:sagemaker/model:Model", "churn-model"),
            ("aws:sagemaker/endpointConfiguration:EndpointConfiguration", "churn-config"),
            ("aws:cloudwatch/metricAlarm:MetricAlarm", "churn-error-rate"),
            ("aws:cloudwatch/metricAlarm:MetricAlarm", "churn-p99-latency"),
            ("aws:cloudwatch/metricAlarm:MetricAlarm", "churn-drift-wasserstein"),
            ("aws:cloudwatch/metricAlarm:MetricAlarm", "churn-drift-jensen-shannon"),
            ("aws:cloudwatch/metricAlarm:MetricAlarm", "churn-drift-null-rate"),
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


def test_endpoint_is_blue_green_with_auto_rollback_on_every_guardrail_alarm():
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
        "shipway-prod-churn-drift-wasserstein",
        "shipway-prod-churn-drift-jensen-shannon",
        "shipway-prod-churn-drift-null-rate",
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
    for alarm in (errors, latency):
        assert alarm["alarmActions"] == [TOPIC]
        assert alarm["tags"] == {**TAGS, "model-name": "churn"}


# ------------------------------------------------------------------ drift: effect sizes, as ShipwayFeatureDrift


def _drift_alarms(rec: Recording) -> dict[str, dict[str, Any]]:
    return {s: rec.named(f"churn-drift-{s.replace('_', '-')}").inputs for s in drift_decision.STATISTICS}


def _metric_fields(rec: Recording) -> dict[str, tuple[str, str]]:
    """metric name -> (the log event its filter matches, the JSON field it reads), from the recorded filters."""
    out = {}
    for f in rec.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter"):
        (event,) = re.fullmatch(r'\{ \$\.event = "(\w+)" \}', f.inputs["pattern"]).groups()
        transform = f.inputs["metricTransformation"]
        assert transform["namespace"] == "Shipway/shipway-prod-churn"
        out[transform["name"]] = (event, transform["value"].removeprefix("$."))
    return out


def _alarm_fires(alarm: dict[str, Any], fields: dict[str, tuple[str, str]], line: dict[str, Any]) -> bool:
    """What CloudWatch decides on a period whose only drift line is ``line``: each metric query's
    Maximum is the line's field (when its filter matches the line's event), then the expression, then
    the threshold with the alarm's operator."""
    values = {}
    for query in alarm["metricQueries"]:
        if "metric" in query:
            event, field = fields[query["metric"]["metricName"]]
            assert query["metric"]["stat"] == "Maximum" and query["metric"]["period"] == 300
            values[query["id"]] = line[field] if line["event"] == event else None
    (returned,) = [q for q in alarm["metricQueries"] if q.get("returnData")]
    guard, minimum, effect = re.fullmatch(r"IF\((\w+) >= (\d+), (\w+), 0\)", returned["expression"]).groups()
    if values[guard] is None or values[effect] is None:
        return False  # no data: treat_missing_data notBreaching
    value = values[effect] if values[guard] >= int(minimum) else 0
    assert alarm["comparisonOperator"] == "GreaterThanThreshold" and alarm["treatMissingData"] == "notBreaching"
    return bool(value > alarm["threshold"])


def test_drift_alarms_read_the_effect_sizes_with_the_stacks_thresholds_and_the_sample_guard():
    rec = build(args(drift_wasserstein=0.15, drift_jensen_shannon=0.08, drift_null_rate=0.04, drift_psi=0.3))
    alarms = _drift_alarms(rec)
    fields = _metric_fields(rec)
    assert {m: fields[m] for m in ("DriftWasserstein", "DriftJensenShannon", "DriftNullRate", "DriftSamples")} == {
        "DriftWasserstein": ("drift_effects", "max_wasserstein"),
        "DriftJensenShannon": ("drift_effects", "max_jensen_shannon"),
        "DriftNullRate": ("drift_effects", "max_null_rate"),
        "DriftSamples": ("drift_effects", "samples"),
    }
    assert {s: a["threshold"] for s, a in alarms.items()} == {
        "wasserstein": 0.15, "jensen_shannon": 0.08, "null_rate": 0.04}
    for statistic, metric in (("wasserstein", "DriftWasserstein"), ("jensen_shannon", "DriftJensenShannon"),
                              ("null_rate", "DriftNullRate")):
        queries = {q["id"]: q for q in alarms[statistic]["metricQueries"]}
        assert queries["effect"]["metric"]["metricName"] == metric
        assert queries["samples"]["metric"]["metricName"] == "DriftSamples"
        assert queries["guarded"]["expression"] == "IF(samples >= 500, effect, 0)"
        assert alarms[statistic]["alarmActions"] == [TOPIC]
        assert alarms[statistic]["tags"] == {**TAGS, "model-name": "churn"}
    # No alarm decides on PSI any more (the PSI filter stays as context).
    assert not [r for r in rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
                if "Psi" in str(r.inputs.get("metricName")) + str(r.inputs.get("metricQueries"))]


def test_default_thresholds_are_the_ones_the_prometheus_rule_uses():
    alarms = _drift_alarms(build())
    assert {s: a["threshold"] for s, a in alarms.items()} == drift_decision.effect_thresholds(SloSettings())
    rule = next(r for g in generate_rules(SloSettings(), ["churn"], "prod")["groups"] for r in g["rules"]
                if r.get("alert") == "ShipwayFeatureDrift")
    for statistic, threshold in drift_decision.DEFAULT_THRESHOLDS.items():
        assert f'statistic="{statistic}"}}) > {threshold:g}' in rule["expr"]
    assert f">= {drift_decision.MIN_SAMPLES}" in rule["expr"]


@pytest.mark.parametrize("scenario", [*live_effects.REAL, *live_effects.NEGLIGIBLE])
def test_drift_alarms_fire_on_real_shifts_only_given_the_apps_live_effect_line(scenario):
    """The line the serving app's DriftMonitor writes after 5,000 live rows, through the recorded
    metric filters and alarms: the statistic that moved fires, negligible moves fire nothing."""
    rec = build()
    fields = _metric_fields(rec)
    line = live_effects.drift_effects_line(scenario)
    fired = {s for s, alarm in _drift_alarms(rec).items() if _alarm_fires(alarm, fields, line)}
    assert fired == ({live_effects.REAL[scenario]} if scenario in live_effects.REAL else set())
    assert fired == set(drift_decision.firing({s: line[f"max_{s}"] for s in drift_decision.STATISTICS},
                                              line["samples"], drift_decision.DEFAULT_THRESHOLDS))


def test_drift_alarms_stay_quiet_below_the_minimum_window_even_on_a_real_shift():
    rec = build()
    line = live_effects.drift_effects_line("mean +0.25 sd", rows=300)
    assert line["max_wasserstein"] > 0.1  # the shift is visible...
    # ...but too few rows
    assert not any(_alarm_fires(a, _metric_fields(rec), line) for a in _drift_alarms(rec).values())
    # and the PSI line (drift_window) feeds no effect metric
    psi_line = {"event": "drift_window", "max_feature_psi": 5.0, "samples": 9000.0}
    assert not any(_alarm_fires(a, _metric_fields(rec), psi_line) for a in _drift_alarms(rec).values())


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
            {"drift_jensen_shannon": 1.5},
            SETTINGS,
            "drift_jensen_shannon: 1.5 is not valid; use a positive threshold no larger than 1 "
            "(default 0.06, set slo.drift* in the stack)",
        ),
        (
            {"drift_wasserstein": 0},
            SETTINGS,
            "drift_wasserstein: 0 is not valid; use a positive threshold (default 0.1, set slo.drift* in the stack)",
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
