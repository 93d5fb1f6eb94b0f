"""MLflow tracking server + model registry on AWS, managed or self-hosted.

Trade-off (``aws.trackingMode``; details in docs/targets/aws.md):

* ``managed`` (default): SageMaker managed MLflow (``aws.sagemaker.MlflowTrackingServer``). AWS
  patches and backs up the server and its metadata store; clients authenticate with IAM
  (SigV4 via the ``sagemaker-mlflow`` plugin), so there is no password or TLS certificate to
  run. In exchange the MLflow version follows AWS's supported list, the server is sized
  Small/Medium/Large only, it is reached through the SageMaker API (PrivateLink, not your
  subnets), it bills per hour even when idle, and plugins or custom auth are impossible.
* ``self-hosted``: MLflow on ECS Fargate behind an internal ALB with TLS 1.2+/1.3, metadata in
  an encrypted, private RDS PostgreSQL instance whose master password RDS generates, stores in
  Secrets Manager with the platform key and rotates. You choose the MLflow version and
  plugins and keep all traffic in your subnets, and you own patching, scaling, certificates,
  database upgrades and backups.

Both modes store artifacts in the same hardened S3 bucket (SSE-KMS with the platform key,
versioned, public access blocked, TLS-only, access-logged, lifecycle-managed).
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
    kms_use_statement,
    prefix,
    scoped_role,
    statement,
    validate_network,
)
from components.aws._storage import artifact_bucket, log_bucket
from components.common import TrackingServerArgs
from shipway_core import vendor_telemetry
from shipway_core.config import TRACKING_MODES, AwsSettings

MLFLOW_PORT = 5000
# TLS 1.3 with TLS 1.2 fallback, forward secrecy only.
ALB_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"

# Builds the backend URI inside the container so the RDS-generated password never appears in
# the task definition, the command line or the logs, and is URL-quoted whatever it contains.
_ENTRYPOINT = (
    "import os, urllib.parse as u; "
    "uri = 'postgresql://%s:%s@%s:5432/mlflow?sslmode=require' % ("
    "u.quote(os.environ['DB_USER'], safe=''), u.quote(os.environ.pop('DB_PASSWORD'), safe=''), "
    "os.environ['DB_HOST']); "
    "os.execvp('mlflow', ['mlflow', 'server', '--host', '0.0.0.0', '--port', '5000', "
    "'--backend-store-uri', uri, '--artifacts-destination', os.environ['ARTIFACTS_DESTINATION'], "
    "'--serve-artifacts'])"
)


def validate_tracking_settings(settings: AwsSettings) -> None:
    """Fail before creating anything when the chosen mode lacks what it needs."""
    if settings.tracking_mode not in TRACKING_MODES:
        raise ValueError(
            f"aws.trackingMode: {settings.tracking_mode!r} is not valid; allowed: {', '.join(TRACKING_MODES)}"
        )
    if settings.tracking_mode == "managed":
        return
    validate_network(settings, "self-hosted tracking")
    if not settings.certificate_arn:
        raise ValueError(
            "aws.certificateArn: None is not valid for self-hosted tracking; "
            "the internal ALB only listens on HTTPS, set an ACM certificate ARN"
        )
    if not settings.mlflow_image:
        raise ValueError(
            "aws.mlflowImage: None is not valid for self-hosted tracking; set the MLflow image URI"
        )
    if not settings.ingress_cidrs:
        raise ValueError(
            "aws.ingressCidrs: [] is not valid for self-hosted tracking; "
            "list the private CIDRs allowed to reach the tracking server"
        )


class TrackingServer(pulumi.ComponentResource):
    """An environment's MLflow tracking server and registry (see the module docstring for the modes)."""

    tracking_uri: pulumi.Output[str]
    """MLFLOW_TRACKING_URI for clients: the server ARN when managed, an https URL when self-hosted."""
    artifact_location: pulumi.Output[str]
    """``s3://<bucket>/mlflow``: where runs and registered model versions store artifacts."""
    artifact_bucket_name: pulumi.Output[str]
    """The artifact bucket; packaged model versions live under ``models/<name>/<version>/``."""
    log_bucket_name: pulumi.Output[str]
    """Access-log bucket (S3 server access logs, ALB logs)."""
    role_arn: pulumi.Output[str]
    """The server's own role (SageMaker role when managed, ECS task role when self-hosted)."""

    def __init__(
        self,
        name: str,
        args: TrackingServerArgs,
        settings: AwsSettings,
        *,
        kms_key_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("shipway:aws:TrackingServer", name, None, opts)
        validate_tracking_settings(settings)
        tags = aws_tags(args.tags)
        facts = account_facts(self)
        retain = args.protect
        self.logs = log_bucket(
            f"{name}-access-logs",
            bucket_prefix=f"{prefix(args.environment)}-access-logs-",
            tags=tags,
            facts=facts,
            retention_days=settings.log_retention_days,
            parent=self,
            retain=retain,
        )
        self.bucket = artifact_bucket(
            f"{name}-artifacts",
            bucket_prefix=f"{prefix(args.environment)}-artifacts-",
            tags=tags,
            kms_key_arn=kms_key_arn,
            logs=self.logs,
            parent=self,
            retain=retain,
            readers=settings.promotion_reader_arns,
        )
        self.artifact_location = pulumi.Output.concat("s3://", self.bucket.bucket, "/mlflow")
        storage = self._artifact_statements(kms_key_arn, facts)
        if settings.tracking_mode == "managed":
            self.server: Any = self._managed(name, args, settings, tags, facts, storage)
            self.tracking_uri = self.server.arn
        else:
            self.server = self._self_hosted(name, args, settings, tags, facts, storage, kms_key_arn)
        self.artifact_bucket_name = self.bucket.bucket
        self.log_bucket_name = self.logs.bucket
        self.register_outputs(
            {
                "tracking_uri": self.tracking_uri,
                "artifact_location": self.artifact_location,
                "artifact_bucket_name": self.artifact_bucket_name,
                "log_bucket_name": self.log_bucket_name,
                "role_arn": self.role_arn,
            }
        )

    def _artifact_statements(
        self, kms_key_arn: pulumi.Input[str], facts: AccountFacts
    ) -> list[dict[str, Any]]:
        """Read/write ``mlflow/`` only: the server never touches packaged models or data capture."""
        return [
            statement(
                "ListArtifactPrefix",
                ["s3:GetBucketLocation", "s3:ListBucket"],
                [self.bucket.arn],
                {"StringLike": {"s3:prefix": ["mlflow/*", "mlflow"]}},
            ),
            statement(
                "ReadWriteArtifacts",
                ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                [pulumi.Output.concat(self.bucket.arn, "/mlflow/*")],
            ),
            kms_use_statement(
                "ArtifactKeyViaS3", kms_key_arn, pulumi.Output.concat("s3.", facts.region, ".amazonaws.com")
            ),
        ]

    def _managed(
        self,
        name: str,
        args: TrackingServerArgs,
        settings: AwsSettings,
        tags: dict[str, str],
        facts: AccountFacts,
        storage: list[dict[str, Any]],
    ) -> aws.sagemaker.MlflowTrackingServer:
        role = scoped_role(
            f"{name}-role",
            service="sagemaker.amazonaws.com",
            description="SageMaker managed MLflow: artifact store access only",
            statements=storage,
            tags=tags,
            facts=facts,
            parent=self,
        )
        self.role_arn = role.arn
        return aws.sagemaker.MlflowTrackingServer(
            f"{name}-server",
            tracking_server_name=f"{prefix(args.environment)}-mlflow",
            artifact_store_uri=self.artifact_location,
            role_arn=role.arn,
            tracking_server_size=settings.tracking_server_size,
            # Registration is explicit (gates first), never a side effect of logging a model.
            automatic_model_registration=False,
            weekly_maintenance_window_start="Sun:03:00",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.protect, depends_on=[role]),
        )

    def _self_hosted(
        self,
        name: str,
        args: TrackingServerArgs,
        settings: AwsSettings,
        tags: dict[str, str],
        facts: AccountFacts,
        storage: list[dict[str, Any]],
        kms_key_arn: pulumi.Input[str],
    ) -> aws.ecs.Service:
        child = pulumi.ResourceOptions(parent=self)
        env = args.environment
        groups = self._security_groups(name, settings, tags)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/shipway/{env}/tracking",
            kms_key_id=kms_key_arn,
            retention_in_days=settings.log_retention_days,
            tags=tags,
            opts=child,
        )
        db = self._database(name, args, settings, tags, groups["db"], kms_key_arn)
        # RDS creates this secret (manage_master_user_password); it always has an ARN once created.
        master_secret: pulumi.Output[str] = db.master_user_secrets.apply(lambda s: s[0].secret_arn or "")
        execution = scoped_role(
            f"{name}-execution-role",
            service="ecs-tasks.amazonaws.com",
            description="ECS agent for the MLflow task: image pull, logs, DB secret injection",
            statements=[
                statement(
                    "WriteTaskLogs",
                    ["logs:CreateLogStream", "logs:PutLogEvents"],
                    [pulumi.Output.concat(log_group.arn, ":*")],
                ),
                statement("InjectDbCredentials", ["secretsmanager:GetSecretValue"], [master_secret]),
                kms_use_statement(
                    "DecryptDbSecret",
                    kms_key_arn,
                    pulumi.Output.concat("secretsmanager.", facts.region, ".amazonaws.com"),
                    encrypt=False,
                ),
                *ecr_pull_statements(settings.mlflow_image or "", facts),
            ],
            tags=tags,
            facts=facts,
            parent=self,
        )
        task = scoped_role(
            f"{name}-task-role",
            service="ecs-tasks.amazonaws.com",
            description="MLflow server: artifact store access only",
            statements=storage,
            tags=tags,
            facts=facts,
            parent=self,
        )
        self.role_arn = task.arn
        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=f"{prefix(env)}-tracking",
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            tags=tags,
            opts=child,
        )
        container = pulumi.Output.json_dumps(
            [
                {
                    "name": "mlflow",
                    "image": settings.mlflow_image,
                    "essential": True,
                    "entryPoint": ["python", "-c"],
                    "command": [_ENTRYPOINT],
                    "portMappings": [{"containerPort": MLFLOW_PORT, "protocol": "tcp"}],
                    "environment": [
                        {"name": "DB_HOST", "value": db.address},
                        {"name": "ARTIFACTS_DESTINATION", "value": self.artifact_location},
                        *({"name": k, "value": v} for k, v in vendor_telemetry.OFF.items()),
                    ],
                    "secrets": [
                        {"name": "DB_USER", "valueFrom": pulumi.Output.concat(master_secret, ":username::")},
                        {
                            "name": "DB_PASSWORD",
                            "valueFrom": pulumi.Output.concat(master_secret, ":password::"),
                        },
                    ],
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": log_group.name,
                            "awslogs-region": facts.region,
                            "awslogs-stream-prefix": "mlflow",
                        },
                    },
                    "user": "1000",
                    "privileged": False,
                    "linuxParameters": {"capabilities": {"drop": ["ALL"]}, "initProcessEnabled": True},
                }
            ]
        )
        task_def = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=f"{prefix(env)}-mlflow",
            cpu="1024",
            memory="2048",
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            execution_role_arn=execution.arn,
            task_role_arn=task.arn,
            container_definitions=container,
            tags=tags,
            opts=child,
        )
        listener, target_group = self._load_balancer(name, env, settings, tags, groups["alb"], args.protect)
        return aws.ecs.Service(
            f"{name}-service",
            name=f"{prefix(env)}-mlflow",
            cluster=cluster.arn,
            task_definition=task_def.arn,
            desired_count=2 if env == "prod" else 1,
            launch_type="FARGATE",
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=list(settings.subnet_ids),
                security_groups=[groups["service"].id],
                assign_public_ip=False,
            ),
            load_balancers=[
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=target_group.arn, container_name="mlflow", container_port=MLFLOW_PORT
                )
            ],
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            enable_execute_command=False,
            propagate_tags="SERVICE",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[listener]),
        )

    def _security_groups(
        self, name: str, settings: AwsSettings, tags: dict[str, str]
    ) -> dict[str, aws.ec2.SecurityGroup]:
        """ALB <- client CIDRs on 443; service <- ALB on 5000; database <- service on 5432."""
        child = pulumi.ResourceOptions(parent=self)
        groups = {
            role: aws.ec2.SecurityGroup(
                f"{name}-{role}-sg", vpc_id=settings.vpc_id, description=text, tags=tags, opts=child
            )
            for role, text in (
                ("alb", "MLflow internal ALB"),
                ("service", "MLflow ECS tasks"),
                ("db", "MLflow metadata database"),
            )
        }
        for index, cidr in enumerate(settings.ingress_cidrs):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-alb-in-{index}",
                security_group_id=groups["alb"].id,
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                cidr_ipv4=cidr,
                description="HTTPS from MLflow clients",
                tags=tags,
                opts=child,
            )
        hops: list[tuple[str, str, int, str]] = [
            ("alb", "service", MLFLOW_PORT, "ALB to MLflow"),
            ("service", "db", 5432, "MLflow to PostgreSQL"),
        ]
        for source, target, port, text in hops:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{source}-to-{target}",
                security_group_id=groups[source].id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=groups[target].id,
                description=text,
                tags=tags,
                opts=child,
            )
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{target}-from-{source}",
                security_group_id=groups[target].id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=groups[source].id,
                description=text,
                tags=tags,
                opts=child,
            )
        # S3, Secrets Manager, ECR and logs over HTTPS (through VPC endpoints or NAT); nothing else.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-service-to-aws-apis",
            security_group_id=groups["service"].id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            description="HTTPS to AWS APIs",
            tags=tags,
            opts=child,
        )
        return groups

    def _database(
        self,
        name: str,
        args: TrackingServerArgs,
        settings: AwsSettings,
        tags: dict[str, str],
        group: aws.ec2.SecurityGroup,
        kms_key_arn: pulumi.Input[str],
    ) -> aws.rds.Instance:
        """Private, encrypted PostgreSQL; RDS owns and rotates the master password (PG 15+ forces TLS)."""
        env = args.environment
        subnets = aws.rds.SubnetGroup(
            f"{name}-db-subnets",
            subnet_ids=list(settings.subnet_ids),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return aws.rds.Instance(
            f"{name}-db",
            identifier=f"{prefix(env)}-mlflow",
            engine="postgres",
            instance_class=settings.db_instance_class,
            allocated_storage=20,
            max_allocated_storage=200,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=kms_key_arn,
            db_name="mlflow",
            username="mlflow",
            manage_master_user_password=True,
            master_user_secret_kms_key_id=kms_key_arn,
            iam_database_authentication_enabled=True,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[group.id],
            publicly_accessible=False,
            multi_az=env == "prod",
            backup_retention_period=35 if env == "prod" else 7,
            deletion_protection=args.protect,
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{prefix(env)}-mlflow-final",
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=kms_key_arn,
            enabled_cloudwatch_logs_exports=["postgresql"],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.protect),
        )

    def _load_balancer(
        self,
        name: str,
        env: str,
        settings: AwsSettings,
        tags: dict[str, str],
        group: aws.ec2.SecurityGroup,
        protect: bool,
    ) -> tuple[aws.lb.Listener, aws.lb.TargetGroup]:
        """Internal ALB, HTTPS only (no port-80 listener to redirect from)."""
        child = pulumi.ResourceOptions(parent=self)
        balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            name=f"{prefix(env)}-mlflow",
            internal=True,
            load_balancer_type="application",
            security_groups=[group.id],
            subnets=list(settings.subnet_ids),
            drop_invalid_header_fields=True,
            enable_deletion_protection=protect,
            access_logs=aws.lb.LoadBalancerAccessLogsArgs(
                bucket=self.logs.bucket, prefix="alb", enabled=True
            ),
            tags=tags,
            opts=child,
        )
        target_group = aws.lb.TargetGroup(
            f"{name}-targets",
            port=MLFLOW_PORT,
            protocol="HTTP",
            target_type="ip",
            vpc_id=settings.vpc_id,
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(path="/health", matcher="200", interval=15),
            tags=tags,
            opts=child,
        )
        listener = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=balancer.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=ALB_SSL_POLICY,
            certificate_arn=settings.certificate_arn,
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)
            ],
            tags=tags,
            opts=child,
        )
        self.tracking_uri = pulumi.Output.concat("https://", balancer.dns_name)
        return listener, target_group
