"""Tagging rule: every taggable resource says who owns it, who pays, where it runs, how sensitive it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, decoded, entries, environment, get, schema

REQUIRED_TAGS: Final = ("owner", "cost-center", "environment", "data-classification")

# Taggable types Shipway creates and their common alternatives (tests/policies/test_coverage.py checks
# every created type whose installed SDK takes `tags` is here, and that each listed type takes it).
TAGGABLE: Final = frozenset(
    {
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketV2:BucketV2",
        "aws:kms/key:Key",
        "aws:iam/role:Role",
        "aws:iam/policy:Policy",
        "aws:secretsmanager/secret:Secret",
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "aws:cloudwatch/compositeAlarm:CompositeAlarm",
        "aws:rds/instance:Instance",
        "aws:lb/loadBalancer:LoadBalancer",
        "aws:lb/listener:Listener",
        "aws:lb/targetGroup:TargetGroup",
        "aws:cloudtrail/trail:Trail",
        "aws:ecr/repository:Repository",
        "aws:sagemaker/model:Model",
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
        "aws:sagemaker/endpoint:Endpoint",
        "aws:sagemaker/modelPackageGroup:ModelPackageGroup",
        "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer",
        "aws:appautoscaling/target:Target",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:amp/ruleGroupNamespace:RuleGroupNamespace",
        "aws:amp/workspace:Workspace",
        "aws:ecs/cluster:Cluster",
        "aws:ecs/service:Service",
        "aws:ecs/taskDefinition:TaskDefinition",
        "aws:grafana/workspace:Workspace",
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "aws:rds/subnetGroup:SubnetGroup",
        "aws:rds/cluster:Cluster",
        "aws:rds/clusterInstance:ClusterInstance",
        "aws:sns/topic:Topic",
        "aws:ssm/parameter:Parameter",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "azure-native:applicationinsights:Component",
        "azure-native:keyvault:Key",
        "azure-native:keyvault:Secret",
        "azure-native:monitor:ScheduledQueryRule",
        "azure-native:resources:Deployment",
        "azure-native:resources:ResourceGroup",
        "azure-native:storage:StorageAccount",
        "azure-native:keyvault:Vault",
        "azure-native:machinelearningservices:Workspace",
        "azure-native:machinelearningservices:OnlineEndpoint",
        "azure-native:machinelearningservices:OnlineDeployment",
        "azure-native:machinelearningservices:Registry",
        "azure-native:network:VirtualNetwork",
        "azure-native:network:PrivateEndpoint",
        "azure-native:privatedns:PrivateZone",
        "azure-native:privatedns:VirtualNetworkLink",
        "azure-native:containerregistry:Registry",
        "azure-native:operationalinsights:Workspace",
        "azure-native:monitor:MetricAlert",
        "azure-native:monitor:AutoscaleSetting",
        "azure-native:managedidentity:UserAssignedIdentity",
    }
)
# Kubernetes objects carry the same keys as labels.
LABELLED: Final = frozenset(
    {
        "kubernetes:core/v1:Namespace",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:apps/v1:StatefulSet",
        "kubernetes:apps/v1:DaemonSet",
        "kubernetes:core/v1:Service",
        "kubernetes:core/v1:PersistentVolumeClaim",
        "kubernetes:batch/v1:Job",
        "kubernetes:batch/v1:CronJob",
    }
)


def _tags(args: ResourceValidationArgs) -> Any:
    """The resource's tags (labels on Kubernetes), merged over the AWS provider's default tags."""
    if args.resource_type in LABELLED:
        labels = get(args.props, "metadata.labels", {})
        return UNKNOWN if labels is UNKNOWN else dict(entries(labels))
    own = get(args.props, "tags")
    if own is UNKNOWN:
        return UNKNOWN
    merged: dict[str, Any] = {}
    if args.provider is not None:
        # The AWS provider resource sends `defaultTags` as a JSON string, explicit config as an object.
        defaults = decoded(get(args.provider.props, "defaultTags", {}))
        merged.update(entries(get(defaults, "tags", {})))
    merged.update(entries(own if own is not None else {}))
    return merged


def _require_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Ownership, cost and data-classification questions are answered from the resource itself."""
    taggable = args.resource_type in TAGGABLE or args.resource_type in LABELLED
    if not taggable and get(args.props, "tags") is None:
        return
    tags = _tags(args)
    if tags is UNKNOWN or not isinstance(tags, Mapping):
        return
    missing = [t for t in REQUIRED_TAGS if tags.get(t) in (None, "")]
    if missing:
        report_violation(f"missing required tags: {', '.join(missing)}", None)
    env = tags.get("environment")
    if isinstance(env, str) and env and env != environment(args):
        report_violation(f"tag environment is {env!r} but this stack is {environment(args)!r}", None)


resource_require_tags = ResourceValidationPolicy(
    name="any-compliance-resource-require-tags",
    description="Taggable resources carry owner, cost-center, environment and data-classification tags "
    "(labels on Kubernetes) matching the stack's environment.",
    validate=_require_tags,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    config_schema=schema("environment"),
    remediation_steps=(
        "Pass the stack's StackConfig.tags (set shipway:owner, shipway:costCenter, "
        "shipway:dataClassification "
        "in stacks/Pulumi.<env>.yaml) to the component's args.tags; components forward them to every child."
    ),
)

POLICIES = [resource_require_tags]
