"""The classes of non-compliance that once got through (issue 22): each a failing case and its twin.

Every test builds the resource as the engine presents it (JSON strings stay strings, numbers
become floats) and asserts the exact message; the compliant twin differs in one property.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from policies.registry import by_name
from tests.policies.baselines import DEV, KEY_SECRET_ARN, PROD, RESOURCES, TAGS
from tests.policies.support import Res, check, check_stack, mutate

DIGEST = "sha256:" + "c" * 64
KSERVE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"


def _inference_service(**predictor_changes: Any) -> dict[str, Any]:
    """The KServe InferenceService components/kubernetes/endpoint.py creates, compliant for prod."""
    serving = RESOURCES["k8s-serving"].props["spec"]["template"]["spec"]
    predictor: dict[str, Any] = {
        "minReplicas": 2,
        "maxReplicas": 6,
        "canaryTrafficPercent": 10,
        "securityContext": copy.deepcopy(serving["securityContext"]),
        "containers": copy.deepcopy(serving["containers"]),
    }
    predictor["containers"][0]["image"] = f"registry.example.internal/shipway/serving@{DIGEST}"
    predictor.update(predictor_changes)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "churn", "namespace": "shipway-prod", "labels": TAGS},
        "spec": {"predictor": predictor},
    }


def _task_definition(container_changes: dict[str, Any]) -> dict[str, Any]:
    """The MLflow ECS task definition components/aws/tracking.py creates: containers as a JSON string."""
    container = {
        "name": "mlflow",
        "image": f"000000000000.dkr.ecr.eu-west-1.amazonaws.com/mlflow@{DIGEST}",
        "essential": True,
        "environment": [{"name": "DB_HOST", "value": "db.internal"}],
        "secrets": [{"name": "DB_PASSWORD", "valueFrom": KEY_SECRET_ARN + ":password::"}],
        **container_changes,
    }
    return {"family": "shipway-prod-mlflow", "containerDefinitions": json.dumps([container]), "tags": TAGS}


# ------------------------------------------------------------------ KServe InferenceService


def test_kserve_inference_service_is_a_workload_for_every_hardening_rule() -> None:
    compliant = _inference_service()
    rules = {
        "kubernetes-apps-workload-disallow-privilege-escalation": (
            "containers.0.securityContext.privileged", True,
            ["containers[serving] is privileged; remove securityContext.privileged"],
        ),
        "kubernetes-apps-workload-require-non-root": (
            "containers.0.securityContext.runAsUser", 0,
            ["containers[serving] may run as root; set securityContext.runAsNonRoot=true and a non-zero "
             "runAsUser"],
        ),
        "kubernetes-apps-workload-require-readonly-rootfs": (
            "containers.0.securityContext.readOnlyRootFilesystem", False,
            ["containers[serving] securityContext.readOnlyRootFilesystem is not true"],
        ),
    }
    for name, (path, value, messages) in rules.items():
        policy = by_name(name)
        assert check(policy, KSERVE, compliant, config=PROD) == [], name
        changed = mutate(compliant, f"spec.predictor.{path}", value)
        assert check(policy, KSERVE, changed, config=PROD) == messages, name


def test_kserve_latest_model_pin_is_reported_and_exact_pin_passes() -> None:
    policy = by_name("kubernetes-apps-workload-pin-registry-version")
    compliant = _inference_service()
    assert check(policy, KSERVE, compliant, config=PROD) == []
    moving = mutate(compliant, "spec.predictor.containers.0.env.0.value", "models:/churn/latest")
    assert check(policy, KSERVE, moving, config=PROD) == [
        "containers[serving].env.SHIPWAY_MODEL_URI 'models:/churn/latest' is a moving reference 'latest', "
        "not an exact version; serve an exact registry version such as 'models:/<name>/<version>'"
    ]


def test_kserve_single_minimum_replica_is_reported_in_prod_only() -> None:
    policy = by_name("kubernetes-apps-deployment-require-min-replicas")
    assert check(policy, KSERVE, _inference_service(), config=PROD) == []
    single = _inference_service(minReplicas=1)
    assert check(policy, KSERVE, single, config=PROD) == [
        "spec.predictor.minReplicas is 1; prod serving runs at least 2"
    ]
    assert check(policy, KSERVE, single, config=DEV) == []


# ------------------------------------------------------------------ secrets inside JSON strings


def test_secret_inside_ecs_container_definitions_json_is_reported() -> None:
    policy = by_name("any-security-input-disallow-plaintext-secrets")
    assert check(policy, TASK_DEFINITION, _task_definition({}), config=PROD) == []
    leaked = _task_definition({"environment": [{"name": "DB_PASSWORD", "value": "hunter2-prod"}]})
    assert check(policy, TASK_DEFINITION, leaked, config=PROD) == [
        "containerDefinitions[0].environment[0].value is a secret-named input with a literal value; pass a "
        "reference (secret ARN, Key Vault URI, file path or valueFrom.secretKeyRef) instead"
    ]


# ------------------------------------------------------------------ other spellings of a model pin


def _sm_env(**env: str) -> dict[str, Any]:
    return mutate(
        RESOURCES["sm-model"].props,
        "primaryContainer.environment",
        {**RESOURCES["sm-model"].props["primaryContainer"]["environment"], **env},
    )


def test_model_version_variable_saying_latest_is_reported_and_a_number_passes() -> None:
    policy = by_name("aws-sagemaker-model-pin-registry-version")
    model = "aws:sagemaker/model:Model"
    assert check(policy, model, _sm_env(SHIPWAY_MODEL_VERSION="3"), config=PROD) == []
    assert check(policy, model, _sm_env(SHIPWAY_MODEL_VERSION="latest"), config=PROD) == [
        "primaryContainer.environment.SHIPWAY_MODEL_VERSION 'latest' is a moving reference 'latest', not an "
        "exact version; serve an exact registry version such as 'models:/<name>/<version>'"
    ]


def test_any_spelling_of_a_model_uri_variable_is_judged() -> None:
    policy = by_name("kubernetes-apps-workload-pin-registry-version")
    base = RESOURCES["k8s-serving"]
    env_path = "spec.template.spec.containers.0.env"
    for spelling in ("MODEL_URI", "modelUri", "CHURN_MODEL_URI", "model-version"):
        value = "7" if spelling == "model-version" else "models:/churn/7"
        extra = [*base.props["spec"]["template"]["spec"]["containers"][0]["env"], {"name": spelling, "value": value}]
        assert check(policy, base.type, mutate(base.props, env_path, extra), config=PROD) == [], spelling
        moving = "Production" if spelling == "model-version" else "models:/churn@champion"
        extra[-1] = {"name": spelling, "value": moving}
        found = check(policy, base.type, mutate(base.props, env_path, extra), config=PROD)
        assert len(found) == 1 and found[0].startswith(f"containers[serving].env.{spelling} {moving!r} is a "), (
            spelling, found)


def test_artifact_url_outside_the_registry_location_is_reported() -> None:
    policy = by_name("aws-sagemaker-model-pin-registry-version")
    base = RESOURCES["sm-model-artifact"]
    config = {**PROD, "artifactRoot": "s3://shipway-prod-models/"}
    assert check(policy, base.type, base.props, config=config) == []
    elsewhere = mutate(base.props, "primaryContainer.modelDataUrl", "s3://attacker-bucket/models/churn/3/model.tar.gz")
    assert check(policy, base.type, elsewhere, config=config) == [
        "primaryContainer.modelDataUrl 's3://attacker-bucket/models/churn/3/model.tar.gz' is an artifact "
        "outside this environment's registry location 's3://shipway-prod-models/'; serve an exact registry "
        "version such as 'models:/<name>/<version>'"
    ]


# ------------------------------------------------------------------ the two false positives


def test_tags_from_provider_default_tags_json_string_count() -> None:
    policy = by_name("any-compliance-resource-require-tags")
    props = {"bucket": "shipway-prod-models"}
    bucket = "aws:s3/bucketV2:BucketV2"
    # What the engine sends for `aws.Provider(default_tags=...)`: a JSON string.
    provider = {"region": "eu-west-1", "defaultTags": json.dumps({"tags": TAGS})}
    assert check(policy, bucket, props, config=PROD, provider=provider) == []
    partial = {"region": "eu-west-1", "defaultTags": json.dumps({"tags": {"owner": "ml-platform"}})}
    assert check(policy, bucket, props, config=PROD, provider=partial) == [
        "missing required tags: cost-center, environment, data-classification"
    ]


def _bucket_v2_stack(algorithm: str) -> list[Res]:
    from tests.policies.baselines import KMS_ARN

    rule = {"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm, "kmsMasterKeyId": KMS_ARN}}
    if algorithm == "AES256":
        rule = {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
    props = {"bucket": "shipway-prod-models", "tags": TAGS, "serverSideEncryptionConfigurations": [{"rules": [rule]}]}
    return [Res("aws:s3/bucketV2:BucketV2", "models", props)]


def test_bucket_v2_inline_kms_encryption_counts() -> None:
    policy = by_name("aws-s3-bucket-require-kms-encryption")
    assert check_stack(policy, _bucket_v2_stack("aws:kms"), config=PROD) == []
    assert check_stack(policy, _bucket_v2_stack("AES256"), config=PROD) == [
        ("bucket 'models' uses sseAlgorithm 'AES256'; use aws:kms with a customer-managed key", "models")
    ]


# ------------------------------------------------------------------ container images by digest

IMAGE_RULE = "any-container-image-pin-digest"
TEST = {**PROD, "environment": "test"}


def test_ecs_image_inside_container_definitions_json_needs_a_digest() -> None:
    policy = by_name(IMAGE_RULE)
    assert check(policy, TASK_DEFINITION, _task_definition({}), config=TEST) == []
    tagged = _task_definition({"image": "000000000000.dkr.ecr.eu-west-1.amazonaws.com/mlflow:2.17"})
    assert check(policy, TASK_DEFINITION, tagged, config=TEST) == [
        "containerDefinitions[0].image '000000000000.dkr.ecr.eu-west-1.amazonaws.com/mlflow:2.17' is pinned by "
        "tag '2.17' only; in test pin it as <repository>@sha256:<digest>"
    ]


def test_kserve_image_on_a_moving_tag_is_reported() -> None:
    policy = by_name(IMAGE_RULE)
    assert check(policy, KSERVE, _inference_service(), config=PROD) == []
    moving = mutate(_inference_service(), "spec.predictor.containers.0.image", "registry.example.internal/serving")
    assert check(policy, KSERVE, moving, config=PROD) == [
        "containers[serving].image 'registry.example.internal/serving' has no tag or digest (it means 'latest'); "
        "in prod pin it as <repository>@sha256:<digest>"
    ]


def test_a_tag_is_enough_in_dev_but_latest_never_is() -> None:
    policy = by_name(IMAGE_RULE)
    base = RESOURCES["k8s-serving"]
    path = "spec.template.spec.containers.0.image"
    # A registry port is not a tag: only the part after the last '/' can carry one.
    tagged = mutate(base.props, path, "registry.example.internal:5000/shipway/serving:0.1.0")
    assert check(policy, base.type, tagged, config=DEV) == []
    latest = mutate(base.props, path, "registry.example.internal:5000/shipway/serving:latest")
    assert check(policy, base.type, latest, config=DEV) == [
        "containers[serving].image 'registry.example.internal:5000/shipway/serving:latest' uses the moving tag "
        "'latest'; in dev pin it as <repository>@sha256:<digest>"
    ]
    untagged = mutate(base.props, path, "registry.example.internal:5000/shipway/serving")
    assert check(policy, base.type, untagged, config=DEV) == [
        "containers[serving].image 'registry.example.internal:5000/shipway/serving' has no tag or digest (it "
        "means 'latest'); in dev pin it as <repository>@sha256:<digest>"
    ]


def test_azure_ml_environment_image_and_deployment_environment_are_pinned() -> None:
    policy = by_name(IMAGE_RULE)
    env_type = "azure-native:machinelearningservices:EnvironmentVersion"
    env = {"properties": {"image": f"acrshipway.azurecr.io/serving@{DIGEST}"}, "version": "3"}
    assert check(policy, env_type, env, config=PROD) == []
    tagged = mutate(env, "properties.image", "acrshipway.azurecr.io/serving:1.2")
    assert check(policy, env_type, tagged, config=PROD) == [
        "properties.image 'acrshipway.azurecr.io/serving:1.2' is pinned by tag '1.2' only; in prod pin it as "
        "<repository>@sha256:<digest>"
    ]
    deployment = RESOURCES["aml-deployment"]
    pinned = mutate(deployment.props, "properties.environmentId", "azureml:shipway-serving:3")
    assert check(policy, deployment.type, pinned, config=PROD) == []
    floating = mutate(deployment.props, "properties.environmentId", "azureml:shipway-serving@latest")
    assert check(policy, deployment.type, floating, config=PROD) == [
        "properties.environmentId 'azureml:shipway-serving@latest' does not name an exact environment version; "
        "use .../environments/<name>/versions/<N> (its image pinned by digest)"
    ]


# ------------------------------------------------------------------ common alternative resource types


def test_role_inline_policy_is_judged_like_a_policy_resource() -> None:
    policy = by_name("aws-iam-policy-disallow-wildcards")
    role = RESOURCES["deploy-role"]
    scoped = RESOURCES["iam-policy"].props["policy"]
    inline = mutate(role.props, "inlinePolicies", [{"name": "serve", "policy": scoped}])
    assert check(policy, role.type, inline, config=PROD) == []
    wild = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "All", "Effect": "Allow", "Action": "s3:*",
                                                              "Resource": "*"}]})
    assert check(policy, role.type, mutate(role.props, "inlinePolicies", [{"name": "serve", "policy": wild}]),
                 config=PROD) == [
        "inlinePolicies[serve] statement All allows wildcard action 's3:*'; name the exact actions and "
        "resource ARNs"
    ]


def test_exclusive_policy_attachments_cannot_attach_full_access() -> None:
    policy = by_name("aws-iam-role-disallow-full-access")
    kind = "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive"
    own = "arn:aws:iam::000000000000:policy/shipway-prod-serving"
    assert check(policy, kind, {"roleName": "serving", "policyArns": [own]}, config=PROD) == []
    broad = {"roleName": "serving", "policyArns": [own, "arn:aws:iam::aws:policy/AmazonS3FullAccess"]}
    found = check(policy, kind, broad, config=PROD)
    assert len(found) == 1 and "AmazonS3FullAccess" in found[0], found


def test_aurora_cluster_encryption_and_cluster_instance_exposure() -> None:
    encryption = by_name("aws-rds-instance-require-kms-encryption")
    cluster = "aws:rds/cluster:Cluster"
    key = RESOURCES["rds"].props["kmsKeyId"]
    encrypted = {"engine": "aurora-postgresql", "storageEncrypted": True, "kmsKeyId": key,
                 "manageMasterUserPassword": True, "tags": TAGS}
    assert check(encryption, cluster, encrypted, config=PROD) == []
    assert check(encryption, cluster, mutate(encrypted, "storageEncrypted", False), config=PROD) == [
        "storageEncrypted is not true; encrypt the instance storage"
    ]
    exposure = by_name("aws-rds-instance-disallow-public-access")
    member = "aws:rds/clusterInstance:ClusterInstance"
    private = {"clusterIdentifier": "mlflow", "instanceClass": "db.r6g.large", "publiclyAccessible": False}
    assert check(exposure, member, private, config=PROD) == []
    assert check(exposure, member, mutate(private, "publiclyAccessible", True), config=PROD) == [
        "publiclyAccessible is true; keep the instance in private subnets"
    ]


def test_separate_bucket_acl_resource_cannot_make_a_bucket_public() -> None:
    from tests.policies.baselines import STACKS

    policy = by_name("aws-s3-bucket-disallow-public-access")
    private = Res("aws:s3/bucketAclV2:BucketAclV2", "models-acl",
                  {"bucket": "shipway-prod-models", "acl": "private"})
    assert check_stack(policy, [*STACKS["aws"](), private], config=PROD) == []
    public = Res(private.type, private.name, {**private.props, "acl": "public-read"})
    assert check_stack(policy, [*STACKS["aws"](), public], config=PROD) == [
        ("bucket 'models' has acl 'public-read' set by 'models-acl'; remove the public ACL", "models")
    ]
    grant = {"grantee": {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers"},
             "permission": "READ"}
    granted = Res(private.type, private.name,
                  {"bucket": "shipway-prod-models", "accessControlPolicy": {"grants": [grant], "owner": {"id": "o"}}})
    assert check_stack(policy, [*STACKS["aws"](), granted], config=PROD) == [
        ("bucket 'models' grants READ to AllUsers through 'models-acl'; remove the public ACL", "models")
    ]
