"""One model served by SageMaker at one exact registry version, rolled out blue/green.

Changing the pin updates the endpoint in place: the Model and EndpointConfig are immutable in
SageMaker, so their *physical* names carry the version (``shipway-<env>-<model>-v<N>``) and a
new version creates new ones; the Endpoint keeps its stable name and only its
``endpoint_config_name`` changes, which SageMaker applies as a blue/green update. Traffic
shifts linearly to the new fleet while the error-rate (5xx), p99-latency and drift alarms bake; any
alarm firing rolls the endpoint back to the previous config with no request dropped. Alarms,
autoscaling, logs, role and security group are keyed by the stable endpoint name, so a pin
change touches nothing else.

Model data comes from the registry's artifact bucket at ``models/<name>/<version>/model.tar.gz``,
the layout ``shipway_core.names.model_artifact_key`` writes when a version is promoted.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws._base import (
    AccountFacts,
    account_facts,
    aws_tags,
    ecr_pull_statements,
    ecr_repository_arn,
    kms_use_statement,
    prefix,
    scoped_role,
    statement,
    unscopable_statement,
    validate_network,
    validate_sagemaker_name,
)
from components.common import (
    InferenceEndpointArgs,
    validate_drift_thresholds,
    validate_instance_count,
    validate_model_pin,
)
from shipway_core import contract
from shipway_core.config import AwsSettings
from shipway_core.names import model_artifact_key
from shipway_core.observability import cloudwatch
from shipway_core.observability import drift as drift_decision

VARIANT = "primary"
# The serving SLIs SageMaker publishes per endpoint variant: what the rollback alarms read and the
# environment dashboard (components/aws/observability.py) charts, spelled once here.
SERVING_NAMESPACE = cloudwatch.NAMESPACE
INVOCATIONS_METRIC = "Invocations"
ERRORS_METRIC = "Invocation5XXErrors"
LATENCY_METRIC = "ModelLatency"
LATENCY_UNIT = "Microseconds"  # SageMaker reports ModelLatency in microseconds
SERVING_PERIOD = 60
# The error-rate alarm's math over the ids "errors" (5xx Sum) and "invocations" (Sum).
ERROR_RATE_EXPRESSION = "IF(invocations > 0, errors / invocations, 0)"
DRIFT_PERIOD = 300
# Blue/green: shift a quarter of capacity every 5 minutes, keep the old fleet 10 minutes after
# the last step so a late alarm can still roll back.
TRAFFIC_STEP_PERCENT = 25
TRAFFIC_STEP_WAIT_SECONDS = 300
TERMINATION_WAIT_SECONDS = 600
MAX_SCALE_FACTOR = 4
DRIFT_NAMESPACE_PREFIX = "Shipway/"
# Contract with the serving app on SageMaker (shipway_core.contract): on every drift refresh it
# logs one JSON line {"event": "drift_window", "max_feature_psi": <float>, ...}; a metric filter
# turns it into a PSI metric (context only: no alarm and no dashboard panel reads it). No
# cloudwatch:PutMetricData, which cannot be scoped.
DRIFT_LOG_PATTERN = f'{{ $.event = "{contract.DRIFT_LOG_EVENT}" }}'
DRIFT_LOG_VALUE = f"$.{contract.DRIFT_LOG_VALUE_FIELD}"
# The drift rollback alarms read the app's ``drift_effects`` line (shipway_core.observability.drift):
# the largest effect per statistic and the window's sample count, one metric each. An alarm per
# statistic fires when its effect is above the stack's threshold and the window holds at least
# drift.MIN_SAMPLES rows: the decision the Prometheus rule ShipwayFeatureDrift makes.
DRIFT_EFFECTS_PATTERN = f'{{ $.event = "{drift_decision.LOG_EVENT}" }}'
DRIFT_EFFECT_METRICS = {"wasserstein": "DriftWasserstein", "jensen_shannon": "DriftJensenShannon",
                        "null_rate": "DriftNullRate"}
DRIFT_SAMPLES_METRIC = "DriftSamples"
DRIFT_METRIC_FIELDS = {
    **{DRIFT_EFFECT_METRICS[s]: drift_decision.LOG_EFFECT_FIELDS[s] for s in drift_decision.STATISTICS},
    DRIFT_SAMPLES_METRIC: drift_decision.LOG_SAMPLES_FIELD,
}


def serving_dimensions(stable: str) -> dict[str, str]:
    """Dimensions of the endpoint's SageMaker metrics (one production variant, ``VARIANT``)."""
    return {"EndpointName": stable, "VariantName": VARIANT}


def drift_namespace(stable: str) -> str:
    """Namespace of the endpoint's drift metrics (the log metric filters write no dimensions)."""
    return f"{DRIFT_NAMESPACE_PREFIX}{stable}"


def drift_guard_expression() -> str:
    """The drift alarms' math over the ids "effect" and "samples": no drift below MIN_SAMPLES rows."""
    return f"IF(samples >= {drift_decision.MIN_SAMPLES}, effect, 0)"


def endpoint_name(environment: str, model_name: str) -> str:
    """Stable for the life of the model in this environment: pin changes never rename it."""
    return f"{prefix(environment)}-{model_name}"


def versioned_name(environment: str, model_name: str, model_version: int) -> str:
    """Model and EndpointConfig name: one per pinned version, so a new pin creates new ones."""
    return f"{endpoint_name(environment, model_name)}-v{model_version}"


def validate_endpoint(args: InferenceEndpointArgs, settings: AwsSettings) -> None:
    """Everything that would otherwise fail half-way through a deployment."""
    validate_model_pin(args.model_name, args.model_version)
    validate_instance_count(args.environment, args.instance_count)
    validate_drift_thresholds(args.drift_thresholds())
    validate_network(settings, "inference endpoints")
    if not settings.serving_image or ecr_repository_arn(settings.serving_image) is None:
        raise ValueError(
            f"aws.servingImage: {settings.serving_image!r} is not valid; SageMaker pulls serving images "
            "from ECR only, use <account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>"
        )
    if args.api_key is not None:
        raise ValueError(
            "api_key: a secret value is not accepted on AWS; SageMaker model environments are readable "
            "with DescribeModel, pass api_key_secret_arn (a Secrets Manager ARN) instead"
        )
    validate_sagemaker_name(
        "model_name", versioned_name(args.environment, args.model_name, args.model_version)
    )


class InferenceEndpoint(pulumi.ComponentResource):
    """SageMaker Model + EndpointConfig + Endpoint for one pinned version, with guardrails."""

    endpoint_name: pulumi.Output[str]
    """Stable SageMaker endpoint name."""
    endpoint_url: pulumi.Output[str]
    """SageMaker runtime invocation URL (SigV4-authenticated)."""
    model_version: pulumi.Output[int]
    """The registry version being served."""
    model_data_url: pulumi.Output[str]
    """``s3://<bucket>/models/<name>/<version>/model.tar.gz``."""
    role_arn: pulumi.Output[str]
    """Execution role of the model containers."""
    alarm_names: pulumi.Output[list[str]]
    """Alarms that roll a deployment back: 5xx rate, p99 latency, drift."""

    def __init__(
        self,
        name: str,
        args: InferenceEndpointArgs,
        settings: AwsSettings,
        *,
        kms_key_arn: pulumi.Input[str],
        artifact_bucket: pulumi.Input[str],
        api_key_secret_arn: pulumi.Input[str] | None = None,
        alarm_topic_arn: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("shipway:aws:InferenceEndpoint", name, None, opts)
        validate_endpoint(args, settings)
        facts = account_facts(self)
        child = pulumi.ResourceOptions(parent=self)
        stable = endpoint_name(args.environment, args.model_name)
        versioned = versioned_name(args.environment, args.model_name, args.model_version)
        # Version tags only on what a pin change replaces or updates anyway (see module docstring).
        tags = aws_tags(args.tags, model_name=args.model_name)
        version_tags = aws_tags(args.tags, model_name=args.model_name, model_version=str(args.model_version))
        bucket_arn = pulumi.Output.concat("arn:", facts.partition, ":s3:::", artifact_bucket)
        self.model_data_url = pulumi.Output.concat(
            "s3://", artifact_bucket, "/", model_artifact_key(args.model_name, args.model_version)
        )
        capture_uri = pulumi.Output.concat("s3://", artifact_bucket, f"/data-capture/{args.model_name}")

        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=settings.vpc_id,
            description=f"SageMaker endpoint {stable}",
            tags=tags,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-sg-https-out",
            security_group_id=group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            description="HTTPS to S3, Secrets Manager and the OTLP collector",
            tags=tags,
            opts=child,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/sagemaker/Endpoints/{stable}",
            kms_key_id=kms_key_arn,
            retention_in_days=settings.log_retention_days,
            tags=tags,
            opts=child,
        )
        aws.cloudwatch.LogMetricFilter(
            f"{name}-drift-metric",
            log_group_name=log_group.name,
            pattern=DRIFT_LOG_PATTERN,
            metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                name="PredictionDriftPsi",
                namespace=drift_namespace(stable),
                value=DRIFT_LOG_VALUE,
                unit="None",
            ),
            opts=child,
        )
        for metric_name, log_field in DRIFT_METRIC_FIELDS.items():
            aws.cloudwatch.LogMetricFilter(
                f"{name}-drift-{log_field.removeprefix('max_').replace('_', '-')}-metric",
                log_group_name=log_group.name,
                pattern=DRIFT_EFFECTS_PATTERN,
                metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                    name=metric_name,
                    namespace=drift_namespace(stable),
                    value=f"$.{log_field}",
                    unit="None",
                ),
                opts=child,
            )

        role = scoped_role(
            f"{name}-role",
            service="sagemaker.amazonaws.com",
            description=f"SageMaker endpoint {stable}: its model artifacts, data capture, logs and VPC ENIs",
            statements=self._statements(
                args, settings, facts, bucket_arn, kms_key_arn, log_group, group, api_key_secret_arn
            ),
            tags=tags,
            facts=facts,
            parent=self,
        )
        self.role_arn = role.arn

        environment: dict[str, pulumi.Input[str]] = {
            contract.PLATFORM: contract.SAGEMAKER,
            # The registry identity of the bytes in model_data_url (the promotion step packaged exactly
            # this version there); the serving app reports it and the policy pack checks it. The app
            # reads the model from /opt/ml/model and never calls the registry on SageMaker, so an
            # ARN tracking URI (which would need the sagemaker-mlflow plugin) is provenance only.
            contract.MODEL_URI: f"models:/{args.model_name}/{args.model_version}",
            contract.MODEL_NAME: args.model_name,
            contract.MODEL_VERSION: str(args.model_version),
            contract.ENVIRONMENT: args.environment,
            contract.TRACKING_URI: args.tracking_uri,
        }
        if args.otlp_endpoint is not None:
            environment[contract.OTLP_ENDPOINT] = args.otlp_endpoint
        if args.explain:
            environment[contract.EXPLAIN] = "true"
        if api_key_secret_arn is not None:
            # Fetched by the app at start with the role's secretsmanager:GetSecretValue (below).
            environment[contract.API_KEY_SECRET_ARN] = api_key_secret_arn
        self.model = aws.sagemaker.Model(
            f"{name}-model",
            name=versioned,
            execution_role_arn=role.arn,
            primary_container=aws.sagemaker.ModelPrimaryContainerArgs(
                image=settings.serving_image,
                mode="SingleModel",
                model_data_url=self.model_data_url,
                environment=environment,
            ),
            vpc_config=aws.sagemaker.ModelVpcConfigArgs(
                subnets=list(settings.subnet_ids), security_group_ids=[group.id]
            ),
            # Isolation blocks all egress; only possible when the container calls nothing.
            enable_network_isolation=args.otlp_endpoint is None and api_key_secret_arn is None,
            tags=version_tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
        )
        self.config = aws.sagemaker.EndpointConfiguration(
            f"{name}-config",
            name=versioned,
            kms_key_arn=kms_key_arn,
            production_variants=[
                aws.sagemaker.EndpointConfigurationProductionVariantArgs(
                    variant_name=VARIANT,
                    model_name=self.model.name,
                    initial_instance_count=args.instance_count,
                    instance_type=settings.endpoint_instance_type,
                    initial_variant_weight=1.0,
                )
            ],
            data_capture_config=aws.sagemaker.EndpointConfigurationDataCaptureConfigArgs(
                enable_capture=True,
                initial_sampling_percentage=settings.data_capture_percent,
                destination_s3_uri=capture_uri,
                kms_key_id=kms_key_arn,
                capture_options=[
                    aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureOptionArgs(capture_mode=mode)
                    for mode in ("Input", "Output")
                ],
                capture_content_type_header=aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureContentTypeHeaderArgs(
                    json_content_types=["application/json"], csv_content_types=["text/csv"]
                ),
            ),
            tags=version_tags,
            opts=child,
        )

        alarms = self._alarms(name, args, stable, tags, alarm_topic_arn)
        self.alarm_names = pulumi.Output.all(*[alarm.name for alarm in alarms])
        self.endpoint = aws.sagemaker.Endpoint(
            f"{name}-endpoint",
            name=stable,
            endpoint_config_name=self.config.name,
            deployment_config=aws.sagemaker.EndpointDeploymentConfigArgs(
                blue_green_update_policy=aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyArgs(
                    traffic_routing_configuration=aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgs(
                        type="LINEAR",
                        wait_interval_in_seconds=TRAFFIC_STEP_WAIT_SECONDS,
                        linear_step_size=aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationLinearStepSizeArgs(
                            type="CAPACITY_PERCENT", value=TRAFFIC_STEP_PERCENT
                        ),
                    ),
                    termination_wait_in_seconds=TERMINATION_WAIT_SECONDS,
                    maximum_execution_timeout_in_seconds=3600,
                ),
                auto_rollback_configuration=aws.sagemaker.EndpointDeploymentConfigAutoRollbackConfigurationArgs(
                    alarms=[
                        aws.sagemaker.EndpointDeploymentConfigAutoRollbackConfigurationAlarmArgs(
                            alarm_name=alarm.name
                        )
                        for alarm in alarms
                    ]
                ),
            ),
            tags=version_tags,
            opts=child,
        )
        self._autoscaling(name, args, settings, tags)
        self.endpoint_name = self.endpoint.name
        self.endpoint_url = pulumi.Output.concat(
            "https://runtime.sagemaker.",
            facts.region,
            ".amazonaws.com/endpoints/",
            self.endpoint.name,
            "/invocations",
        )
        self.model_version = pulumi.Output.from_input(args.model_version)
        self.register_outputs(
            {
                "endpoint_name": self.endpoint_name,
                "endpoint_url": self.endpoint_url,
                "model_version": self.model_version,
                "model_data_url": self.model_data_url,
                "role_arn": self.role_arn,
                "alarm_names": self.alarm_names,
            }
        )

    def _statements(
        self,
        args: InferenceEndpointArgs,
        settings: AwsSettings,
        facts: AccountFacts,
        bucket_arn: pulumi.Output[str],
        kms_key_arn: pulumi.Input[str],
        log_group: aws.cloudwatch.LogGroup,
        group: aws.ec2.SecurityGroup,
        api_key_secret_arn: pulumi.Input[str] | None,
    ) -> list[dict[str, Any]]:
        """This model's artifacts and capture prefix, its log group, ENIs in its subnets; nothing else."""
        s3_service = pulumi.Output.concat("s3.", facts.region, ".amazonaws.com")
        eni = facts.arn("ec2", "network-interface/*")
        subnets = [facts.arn("ec2", f"subnet/{subnet}") for subnet in settings.subnet_ids]
        statements = [
            statement(
                "ReadThisModelsArtifacts",
                ["s3:GetObject"],
                [pulumi.Output.concat(bucket_arn, f"/models/{args.model_name}/*")],
            ),
            statement(
                "WriteThisModelsDataCapture",
                ["s3:PutObject"],
                [pulumi.Output.concat(bucket_arn, f"/data-capture/{args.model_name}/*")],
            ),
            kms_use_statement("ArtifactKeyViaS3", kms_key_arn, s3_service),
            statement(
                "WriteEndpointLogs",
                ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                [pulumi.Output.concat(log_group.arn, ":*")],
            ),
            statement(
                "CreateEnisInOwnSubnets",
                ["ec2:CreateNetworkInterface"],
                [eni, *subnets, pulumi.Output.concat(facts.arn("ec2", "security-group/"), group.id)],
            ),
            statement(
                "ManageOwnEnis",
                [
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                [eni],
                {"StringEquals": {"ec2:Vpc": facts.arn("ec2", f"vpc/{settings.vpc_id}")}},
            ),
            unscopable_statement(
                "DescribeVpcForEnis",
                [
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcs",
                ],
                facts.region,
            ),
            *ecr_pull_statements(settings.serving_image or "", facts),
        ]
        if api_key_secret_arn is not None:
            statements += [
                statement(
                    "ReadOwnApiKey",
                    ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
                    [api_key_secret_arn],
                ),
                kms_use_statement(
                    "DecryptOwnApiKey",
                    kms_key_arn,
                    pulumi.Output.concat("secretsmanager.", facts.region, ".amazonaws.com"),
                    encrypt=False,
                ),
            ]
        return statements

    def _alarms(
        self,
        name: str,
        args: InferenceEndpointArgs,
        stable: str,
        tags: dict[str, str],
        topic: pulumi.Input[str] | None,
    ) -> list[aws.cloudwatch.MetricAlarm]:
        """Rollback triggers derived from the SLOs; names are stable so pin changes leave them alone."""
        child = pulumi.ResourceOptions(parent=self)
        actions = [topic] if topic is not None else []
        dims = serving_dimensions(stable)

        def metric(id_: str, metric_name: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
            return aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=id_,
                return_data=False,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=SERVING_NAMESPACE, metric_name=metric_name, dimensions=dims, period=SERVING_PERIOD,
                    stat="Sum"
                ),
            )

        common: dict[str, Any] = {
            "alarm_actions": actions,
            "ok_actions": actions,
            "tags": tags,
            "treat_missing_data": "notBreaching",
            "comparison_operator": "GreaterThanThreshold",
        }
        return [
            aws.cloudwatch.MetricAlarm(
                f"{name}-error-rate",
                name=f"{stable}-error-rate",
                evaluation_periods=3,
                datapoints_to_alarm=2,
                threshold=args.max_error_rate,
                alarm_description=f"5xx share of invocations above {args.max_error_rate} (SLO error budget)",
                metric_queries=[
                    metric("errors", ERRORS_METRIC),
                    metric("invocations", INVOCATIONS_METRIC),
                    aws.cloudwatch.MetricAlarmMetricQueryArgs(
                        id="rate",
                        expression=ERROR_RATE_EXPRESSION,
                        label="5xx rate",
                        return_data=True,
                    ),
                ],
                **common,
                opts=child,
            ),
            aws.cloudwatch.MetricAlarm(
                f"{name}-p99-latency",
                name=f"{stable}-p99-latency",
                namespace=SERVING_NAMESPACE,
                metric_name=LATENCY_METRIC,
                dimensions=dims,
                extended_statistic="p99",
                period=SERVING_PERIOD,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                unit=LATENCY_UNIT,
                threshold=args.latency_p99_ms * 1000,  # ModelLatency is reported in microseconds
                alarm_description=f"p99 model latency above {args.latency_p99_ms} ms",
                **common,
                opts=child,
            ),
            *[self._drift_alarm(name, stable, statistic, threshold, common)
              for statistic, threshold in args.drift_thresholds().items()],
        ]

    def _drift_alarm(self, name: str, stable: str, statistic: str, threshold: float,
                     common: dict[str, Any]) -> aws.cloudwatch.MetricAlarm:
        """One rollback alarm per drift statistic: the worst feature's effect in a 5-minute period
        above ``threshold``, counted only while the live window holds drift.MIN_SAMPLES rows."""

        def maximum(id_: str, metric_name: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
            return aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=id_,
                return_data=False,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=drift_namespace(stable), metric_name=metric_name, period=DRIFT_PERIOD,
                    stat="Maximum"),
            )

        kebab = statistic.replace("_", "-")
        return aws.cloudwatch.MetricAlarm(
            f"{name}-drift-{kebab}",
            name=f"{stable}-drift-{kebab}",
            evaluation_periods=1,
            threshold=threshold,
            alarm_description=(f"feature drift: {drift_decision.MEANING[statistic]} above {threshold:g} "
                               f"with at least {drift_decision.MIN_SAMPLES} live samples (slo.drift*)"),
            metric_queries=[
                maximum("effect", DRIFT_EFFECT_METRICS[statistic]),
                maximum("samples", DRIFT_SAMPLES_METRIC),
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="guarded",
                    expression=drift_guard_expression(),
                    label=f"worst feature {statistic} (0 below {drift_decision.MIN_SAMPLES} samples)",
                    return_data=True,
                ),
            ],
            **common,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _autoscaling(
        self, name: str, args: InferenceEndpointArgs, settings: AwsSettings, tags: dict[str, str]
    ) -> None:
        """Scale on invocations per instance, never below the pinned instance count."""
        resource_id = pulumi.Output.concat("endpoint/", self.endpoint.name, f"/variant/{VARIANT}")
        target = aws.appautoscaling.Target(
            f"{name}-scaling-target",
            service_namespace="sagemaker",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            resource_id=resource_id,
            min_capacity=args.instance_count,
            max_capacity=args.instance_count * MAX_SCALE_FACTOR,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.appautoscaling.Policy(
            f"{name}-scaling-policy",
            policy_type="TargetTrackingScaling",
            resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            service_namespace=target.service_namespace,
            target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                target_value=float(settings.target_invocations_per_instance),
                predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type="SageMakerVariantInvocationsPerInstance"
                ),
                scale_in_cooldown=300,
                scale_out_cooldown=60,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
