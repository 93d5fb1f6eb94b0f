"""Compliant baseline resources and stacks: every rule passes on them with the prod config.

Each rule test changes exactly one property of one of these and asserts the exact message.
Props are the camelCase inputs the engine sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.policies.support import UNKNOWN_STR, Res

ACCOUNT = "000000000000"
KEY_SECRET_ARN = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:churn-key"
KMS_ARN = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
TAGS = {
    "owner": "ml-platform",
    "cost-center": "cc-1234",
    "environment": "prod",
    "data-classification": "internal",
}
DYNAMIC = "pulumi-python:dynamic:Resource"
SUB = "/subscriptions/00000000-0000-0000-0000-000000000000"
RG = f"{SUB}/resourceGroups/shipway-prod"

PROD = {
    "environment": "prod",
    "minRetentionDays": 365,
    "allowedRegions": ["eu-west-1", "westeurope"],
    "trackingUri": "http://127.0.0.1:5000",
    "requireReachableRegistry": True,
}
DEV = {**PROD, "environment": "dev", "minRetentionDays": 30}


@dataclass
class Baseline:
    """One compliant resource."""

    type: str
    props: dict[str, Any]
    protect: bool = False
    provider: dict[str, Any] | None = None


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


OIDC_TRUST = {
    "Effect": "Allow",
    "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"},
    "Action": "sts:AssumeRoleWithWebIdentity",
    "Condition": {
        "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
        "StringLike": {"token.actions.githubusercontent.com:sub": "repo:acme/shipway:environment:prod"},
    },
}

RESOURCES: dict[str, Baseline] = {
    # ----------------------------------------------------------------- AWS
    "kms-key": Baseline(
        "aws:kms/key:Key",
        {
            "description": "shipway prod data key",
            "enableKeyRotation": True,
            "region": "eu-west-1",
            "tags": TAGS,
        },
    ),
    "sns-topic": Baseline(
        "aws:sns/topic:Topic", {"name": "shipway-prod-alerts", "kmsMasterKeyId": KMS_ARN, "tags": TAGS}
    ),
    "sm-secret": Baseline("aws:secretsmanager/secret:Secret", {"kmsKeyId": KMS_ARN, "tags": TAGS}),
    "log-group": Baseline(
        "aws:cloudwatch/logGroup:LogGroup",
        {
            "name": "/shipway/prod/churn",
            "retentionInDays": 365,
            "kmsKeyId": KMS_ARN,
            "tags": TAGS,
        },
    ),
    "trail": Baseline(
        "aws:cloudtrail/trail:Trail",
        {
            "s3BucketName": "shipway-prod-trail",
            "enableLogFileValidation": True,
            "kmsKeyId": KMS_ARN,
            "advancedEventSelectors": [
                {
                    "name": "model-data",
                    "fieldSelectors": [
                        {"field": "eventCategory", "equals": ["Data"]},
                        {"field": "resources.type", "equals": ["AWS::S3::Object"]},
                    ],
                }
            ],
            "tags": TAGS,
        },
    ),
    "rds": Baseline(
        "aws:rds/instance:Instance",
        {
            "engine": "postgres",
            "instanceClass": "db.t4g.medium",
            "username": "mlflow",
            "manageMasterUserPassword": True,
            "storageEncrypted": True,
            "kmsKeyId": KMS_ARN,
            "publiclyAccessible": False,
            "tags": TAGS,
        },
    ),
    "listener": Baseline(
        "aws:lb/listener:Listener",
        {
            "protocol": "HTTPS",
            "port": 443,
            "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
            "certificateArn": f"arn:aws:acm:eu-west-1:{ACCOUNT}:certificate/abc",
            "defaultActions": [
                {"type": "forward", "targetGroupArn": "arn:aws:elasticloadbalancing:tg/serving"}
            ],
            "tags": TAGS,
        },
    ),
    "iam-policy": Baseline(
        "aws:iam/policy:Policy",
        {
            "policy": _doc(
                {
                    "Sid": "ReadModels",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": ["arn:aws:s3:::shipway-prod-models/*"],
                },
                {"Sid": "EcrAuth", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                {"Sid": "NoHttp", "Effect": "Deny", "Action": "s3:*", "Resource": "*"},
            ),
            "tags": TAGS,
        },
    ),
    "role-attachment": Baseline(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        {
            "role": "shipway-prod-deploy",
            "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/shipway-prod-deploy",
        },
    ),
    "deploy-role": Baseline(
        "aws:iam/role:Role",
        {
            "assumeRolePolicy": _doc(OIDC_TRUST),
            "managedPolicyArns": [],
            "tags": TAGS,
        },
    ),
    "sm-model": Baseline(
        "aws:sagemaker/model:Model",
        {
            "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/shipway-prod-serving",
            "primaryContainer": {
                "image": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/shipway-serving@sha256:{'a' * 64}",
                "environment": {
                    "SHIPWAY_MODEL_URI": "models:/churn/3",
                    "SHIPWAY_API_KEY_SECRET_ARN": KEY_SECRET_ARN,
                },
            },
            "enableNetworkIsolation": True,
            "tags": TAGS,
        },
    ),
    # What components/aws/endpoint.py builds: the bytes of registry version 3, packaged by the
    # promotion step under models/<name>/<version>/, named by the same exact pin in the env.
    "sm-model-artifact": Baseline(
        "aws:sagemaker/model:Model",
        {
            "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/shipway-prod-serving",
            "primaryContainer": {
                "image": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/shipway-serving@sha256:{'a' * 64}",
                "modelDataUrl": "s3://shipway-prod-models/models/churn/3/model.tar.gz",
                "environment": {
                    "SHIPWAY_MODEL_URI": "models:/churn/3",
                    "SHIPWAY_API_KEY_SECRET_ARN": KEY_SECRET_ARN,
                },
            },
            "enableNetworkIsolation": True,
            "tags": TAGS,
        },
    ),
    "sm-endpoint-config": Baseline(
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
        {
            "kmsKeyArn": KMS_ARN,
            "productionVariants": [
                {
                    "variantName": "primary",
                    "modelName": "churn-3",
                    "initialInstanceCount": 2,
                    "instanceType": "ml.m5.large",
                }
            ],
            "dataCaptureConfig": {
                "enableCapture": True,
                "initialSamplingPercentage": 100,
                "destinationS3Uri": "s3://shipway-capture/churn",
                "kmsKeyId": KMS_ARN,
                "captureOptions": [{"captureMode": "Input"}, {"captureMode": "Output"}],
            },
            "tags": TAGS,
        },
    ),
    "sm-endpoint": Baseline(
        "aws:sagemaker/endpoint:Endpoint",
        {
            "name": "churn-prod",
            "endpointConfigName": "churn-prod-3",
            "deploymentConfig": {
                "blueGreenUpdatePolicy": {
                    "trafficRoutingConfiguration": {"type": "ALL_AT_ONCE", "waitIntervalInSeconds": 300}
                },
                "autoRollbackConfiguration": {
                    "alarms": [
                        {"alarmName": "churn-prod-latency-p99"},
                        {"alarmName": "churn-prod-error-rate"},
                        {"alarmName": "churn-prod-drift-psi"},
                    ]
                },
            },
            "tags": TAGS,
        },
    ),
    "model-package-group": Baseline(
        "aws:sagemaker/modelPackageGroup:ModelPackageGroup",
        {"modelPackageGroupName": "churn", "tags": TAGS},
        protect=True,
    ),
    "ecr-repository": Baseline(
        "aws:ecr/repository:Repository",
        {
            "name": "shipway-serving",
            "imageTagMutability": "IMMUTABLE",
            "encryptionConfigurations": [{"encryptionType": "KMS", "kmsKey": KMS_ARN}],
            "tags": TAGS,
        },
    ),
    # ----------------------------------------------------------------- Azure
    "storage-account": Baseline(
        "azure-native:storage:StorageAccount",
        {
            "location": "westeurope",
            "kind": "StorageV2",
            "sku": {"name": "Standard_ZRS"},
            "enableHttpsTrafficOnly": True,
            "minimumTlsVersion": "TLS1_2",
            "allowBlobPublicAccess": False,
            "allowSharedKeyAccess": False,
            "publicNetworkAccess": "Disabled",
            "networkRuleSet": {"defaultAction": "Deny", "bypass": "AzureServices"},
            "encryption": {
                "keySource": "Microsoft.Keyvault",
                "keyVaultProperties": {
                    "keyName": "storage-cmk",
                    "keyVaultUri": "https://mock-shipway-prod-kv.vault.azure.net/",
                },
            },
            "tags": TAGS,
        },
    ),
    # Managed Grafana's `apiKey` is an Enabled/Disabled switch, not a key (secret-name rule).
    "grafana": Baseline(
        "azure-native:dashboard:Grafana",
        {
            "location": "westeurope",
            "sku": {"name": "Standard"},
            "properties": {"apiKey": "Disabled", "publicNetworkAccess": "Disabled"},
            "tags": TAGS,
        },
    ),
    "blob-container": Baseline(
        "azure-native:storage:BlobContainer",
        {
            "accountName": "shipwayprodmodels",
            "resourceGroupName": "shipway-prod",
            "publicAccess": "None",
        },
    ),
    "key-vault": Baseline(
        "azure-native:keyvault:Vault",
        {
            "location": "westeurope",
            "properties": {
                "tenantId": "00000000-0000-0000-0000-000000000000",
                "sku": {"family": "A", "name": "standard"},
                "enablePurgeProtection": True,
                "enableSoftDelete": True,
                "enableRbacAuthorization": True,
            },
            "tags": TAGS,
        },
    ),
    "role-assignment": Baseline(
        "azure-native:authorization:RoleAssignment",
        {
            "principalId": "11111111-1111-1111-1111-111111111111",
            "principalType": "ServicePrincipal",
            "roleDefinitionId": f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/"
            "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
            # A narrow data role may be granted at resource-group scope; only broad roles may not.
            "scope": RG,
        },
    ),
    "role-definition": Baseline(
        "azure-native:authorization:RoleDefinition",
        {
            "roleName": "shipway-prod-deployer",
            "scope": RG,
            "assignableScopes": [RG],
            "permissions": [{"actions": ["Microsoft.Resources/deployments/write"], "notActions": []}],
        },
    ),
    "acr": Baseline(
        "azure-native:containerregistry:Registry",
        {
            "location": "westeurope",
            "sku": {"name": "Premium"},
            "adminUserEnabled": False,
            "tags": TAGS,
        },
    ),
    "aml-workspace": Baseline(
        "azure-native:machinelearningservices:Workspace",
        {
            "location": "westeurope",
            "publicNetworkAccess": "Disabled",
            "encryption": {
                "status": "Enabled",
                "keyVaultProperties": {
                    "keyVaultArmId": f"{RG}/providers/Microsoft.KeyVault/vaults/shipway-prod-kv",
                    "keyIdentifier": "https://mock-shipway-prod-kv.vault.azure.net/keys/aml-cmk",
                },
            },
            "tags": TAGS,
        },
    ),
    "aml-endpoint": Baseline(
        "azure-native:machinelearningservices:OnlineEndpoint",
        {
            "location": "westeurope",
            "properties": {"authMode": "AADToken", "publicNetworkAccess": "Disabled"},
            "tags": TAGS,
        },
    ),
    "aml-deployment": Baseline(
        "azure-native:machinelearningservices:OnlineDeployment",
        {
            "location": "westeurope",
            "properties": {
                "endpointComputeType": "Managed",
                "instanceType": "Standard_DS3_v2",
                "model": "azureml://registries/shipway/models/churn/versions/3",
                "dataCollector": {
                    "collections": {
                        "model_inputs": {"dataCollectionMode": "Enabled"},
                        "model_outputs": {"dataCollectionMode": "Enabled"},
                    }
                },
                "scaleSettings": {"scaleType": "TargetUtilization", "minInstances": 2, "maxInstances": 6},
            },
            "sku": {"name": "Default", "capacity": 2},
            "tags": TAGS,
        },
    ),
    "aml-registry": Baseline(
        "azure-native:machinelearningservices:Registry",
        {"location": "westeurope", "publicNetworkAccess": "Disabled", "tags": TAGS},
        protect=True,
    ),
    "log-analytics": Baseline(
        "azure-native:operationalinsights:Workspace",
        {
            "location": "westeurope",
            "retentionInDays": 365,
            "sku": {"name": "PerGB2018"},
            "tags": TAGS,
        },
    ),
    # ----------------------------------------------------------------- Kubernetes
    "k8s-serving": Baseline(
        "kubernetes:apps/v1:Deployment",
        {
            "metadata": {"name": "churn", "namespace": "shipway-prod", "labels": TAGS},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "churn"}},
                "template": {
                    "metadata": {"labels": {"app": "churn"}},
                    "spec": {
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                        "containers": [
                            {
                                "name": "serving",
                                "image": f"ghcr.io/shipway/serving@sha256:{'b' * 64}",
                                "env": [
                                    {"name": "SHIPWAY_MODEL_URI", "value": "models:/churn/3"},
                                    {
                                        "name": "SHIPWAY_API_KEY",
                                        "valueFrom": {
                                            "secretKeyRef": {"name": "churn-api-key", "key": "key"}
                                        },
                                    },
                                ],
                                "securityContext": {
                                    "readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    },
                },
            },
        },
    ),
    "k8s-role": Baseline(
        "kubernetes:rbac.authorization.k8s.io/v1:Role",
        {
            "metadata": {"name": "serving", "namespace": "shipway-prod"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}],
        },
    ),
    "k8s-binding": Baseline(
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
        {
            "metadata": {"name": "serving", "namespace": "shipway-prod"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "serving"},
            "subjects": [{"kind": "ServiceAccount", "name": "serving", "namespace": "shipway-prod"}],
        },
    ),
    # ----------------------------------------------------------------- local
    "local-endpoint": Baseline(
        DYNAMIC,
        {
            "__provider": "gASVexampleserialisedprovider",
            "shipwayKind": "InferenceEndpoint",
            "modelName": "churn",
            "modelVersion": 3,
            "host": "127.0.0.1",
            "port": 8100,
            "environment": "local",
            "apiKeyFile": ".shipway/local/secrets/churn-api-key",
        },
    ),
    "local-tracking": Baseline(
        DYNAMIC,
        {
            "__provider": "gASVexampleserialisedprovider",
            "shipwayKind": "TrackingServer",
            "host": "127.0.0.1",
            "port": 5000,
            "backendStoreUri": "sqlite:///.shipway/local/mlflow.db",
            "artifactRoot": ".shipway/local/artifacts",
        },
        protect=True,
    ),
    "local-pin": Baseline(
        DYNAMIC,
        {
            "__provider": "gASVexampleserialisedprovider",
            "shipwayKind": "RegistryPin",
            "modelName": "churn",
            "version": 3,
            "alias": "prod",
            "retainOnDelete": True,
        },
    ),
    "local-secret-file": Baseline(
        DYNAMIC,
        {
            "__provider": "gASVexampleserialisedprovider",
            "shipwayKind": "SecretFile",
            "path": ".shipway/local/secrets/churn-api-key",
            "mode": "0600",
            "value": "s3cr3t-value-only-here",
        },
    ),
    "local-prometheus": Baseline(
        DYNAMIC,
        {
            "__provider": "gASVexampleserialisedprovider",
            "shipwayKind": "Prometheus",
            "host": "127.0.0.1",
            "port": 9090,
        },
    ),
}


_KMS_DEFAULT = {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KMS_ARN}
# S3 delivers server access logs only to SSE-S3 buckets, so the log target uses AES256.
_SSE_S3_DEFAULT = {"sseAlgorithm": "AES256"}


def _bucket(name: str, physical: str, sse: dict[str, str] | None = None) -> list[Res]:
    """A bucket with its four companions; companions point at it through unknown ids (preview)."""
    deps = {"bucket": [name]}
    return [
        Res("aws:s3/bucket:Bucket", name, {"bucket": physical, "tags": TAGS}),
        Res(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            f"{name}-sse",
            {
                "bucket": UNKNOWN_STR,
                "rules": [
                    {
                        "applyServerSideEncryptionByDefault": dict(sse or _KMS_DEFAULT),
                        "bucketKeyEnabled": True,
                    }
                ],
            },
            deps=deps,
        ),
        Res(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            f"{name}-pab",
            {
                "bucket": UNKNOWN_STR,
                "blockPublicAcls": True,
                "blockPublicPolicy": True,
                "ignorePublicAcls": True,
                "restrictPublicBuckets": True,
            },
            deps=deps,
        ),
        Res(
            "aws:s3/bucketPolicy:BucketPolicy",
            f"{name}-tls",
            {
                "bucket": physical,
                "policy": _doc(
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [f"arn:aws:s3:::{physical}", f"arn:aws:s3:::{physical}/*"],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ),
            },
        ),
    ]


def aws_stack() -> list[Res]:
    return [
        *_bucket("models", "shipway-prod-models"),
        *_bucket("access-logs", "shipway-prod-access-logs", _SSE_S3_DEFAULT),
        Res(
            "aws:s3/bucketLogging:BucketLogging",
            "models-logging",
            {
                "bucket": "shipway-prod-models",
                "targetBucket": "shipway-prod-access-logs",
                "targetPrefix": "models/",
            },
        ),
        Res("aws:sagemaker/endpoint:Endpoint", "churn-endpoint", dict(RESOURCES["sm-endpoint"].props)),
        Res(
            "aws:appautoscaling/target:Target",
            "churn-scaling",
            {
                "serviceNamespace": "sagemaker",
                "scalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "resourceId": "endpoint/churn-prod/variant/primary",
                "minCapacity": 2,
                "maxCapacity": 6,
                "tags": TAGS,
            },
        ),
    ]


def azure_stack() -> list[Res]:
    audited = ["storage-account", "key-vault", "aml-workspace", "aml-endpoint", "acr"]
    out = [
        Res(RESOURCES[name].type, name, {**RESOURCES[name].props, "id": f"{RG}/providers/x/{name}"})
        for name in audited
    ]
    for name in audited:
        out.append(
            Res(
                "azure-native:monitor:DiagnosticSetting",
                f"{name}-diagnostics",
                {
                    "resourceUri": UNKNOWN_STR,
                    "workspaceId": f"{RG}/providers/Microsoft.OperationalInsights/workspaces/la",
                    "logs": [{"categoryGroup": "audit", "enabled": True}],
                },
                deps={"resourceUri": [name]},
            )
        )
    out.append(
        Res(RESOURCES["aml-deployment"].type, "churn-deployment", dict(RESOURCES["aml-deployment"].props))
    )
    return out


def kubernetes_stack() -> list[Res]:
    return [
        Res(
            "kubernetes:core/v1:Namespace",
            "namespace",
            {"metadata": {"name": "shipway-prod", "labels": TAGS}},
        ),
        Res(
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "default-deny",
            {
                "metadata": {"name": "default-deny", "namespace": "shipway-prod"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            },
        ),
        Res(
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "allow-serving",
            {
                "metadata": {"name": "allow-serving", "namespace": "shipway-prod"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "churn"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"ports": [{"port": 8080}]}],
                },
            },
        ),
        Res(RESOURCES["k8s-serving"].type, "churn", dict(RESOURCES["k8s-serving"].props)),
        Res(
            "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
            "churn-hpa",
            {
                "metadata": {"name": "churn", "namespace": "shipway-prod"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "churn"},
                    "minReplicas": 2,
                    "maxReplicas": 6,
                },
            },
        ),
    ]


STACKS = {"aws": aws_stack, "azure": azure_stack, "kubernetes": kubernetes_stack}
