"""build_platform for a prod-like stack: every resource tagged, every policy scoped, pack-checked."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi_policy import StackValidationPolicy

import policies.aws
from components.aws._base import UNSCOPABLE_ACTIONS
from components.aws.platform import build_platform
from components.common import REQUIRED_TAGS
from shipway_core.config import StackConfig
from shipway_core.outputs import PlatformOutputs
from tests.policies.support import Res, check, check_stack
from tests.support.recording import FAKE_ACCOUNT, Recording, record, resolve
from tests.support.stacks import example_config
from tests.unit.aws.support import UNTAGGABLE, outputs

DOCS = Path(__file__).resolve().parents[3] / "docs" / "targets" / "aws.md"


# The stack region equals the region RecordingMocks' getRegion answers, so ARNs and conditions
# that components derive from the inherited provider line up with the provider built from config.
def prod_config(**aws: Any) -> StackConfig:
    return example_config(
        "prod",
        {
            "cloud": "aws",
            "environment": "prod",
            "owner": "ml-platform",
            "costCenter": "cc-42",
            "dataClassification": "confidential",
            "region": "eu-west-1",
            "allowedRegions": ["eu-west-1"],
            "models": {"churn": {"version": 3, "instances": 2}, "fraud": {"version": 7, "instances": 3}},
            "slo": {"latencyP99Ms": 180, "maxErrorRate": 0.02, "driftWasserstein": 0.15, "driftNullRate": 0.05},
            "aws": {
                "githubRepository": "acme/shipway-models",
                "logRetentionDays": 400,
                **aws,
            },
        },
    )


SELF_HOSTED = {
    "trackingMode": "self-hosted",
    "ingressCidrs": ["10.20.0.0/16"],
    "certificateArn": f"arn:aws:acm:eu-west-1:{FAKE_ACCOUNT}:certificate/mock",
    "mlflowImage": f"{FAKE_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/mlflow:3.17.2",
}


def build(cfg: StackConfig) -> Recording:
    return record(
        lambda: build_platform(cfg, {"endpointApiKey": pulumi.Output.secret("s3cr3t")}),
        stack="prod",
        outputs=outputs,
    )


@pytest.fixture(scope="module", params=["managed", "self-hosted"])
def platform(request) -> tuple[StackConfig, Recording]:
    cfg = prod_config(**(SELF_HOSTED if request.param == "self-hosted" else {}))
    return cfg, build(cfg)


def _plain(value: Any) -> Any:
    """Recorded inputs with secret wrappers removed (policies see plain values at `up`)."""
    if isinstance(value, dict):
        if "value" in value and len(value) == 2 and any(len(k) == 32 for k in value):
            return _plain(value["value"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_provider_region_and_default_tags_come_from_the_stack_config(platform):
    cfg, rec = platform
    provider = rec.one("pulumi:providers:aws", "aws").inputs
    assert provider["region"] == "eu-west-1"
    assert json.loads(provider["defaultTags"]) == {"tags": cfg.tags}


def test_one_endpoint_per_pinned_model_and_one_component_of_each_kind(platform):
    _, rec = platform
    assert rec.names("shipway:aws:InferenceEndpoint") == ["churn", "fraud"]
    for kind, name in (
        ("TrackingServer", "tracking"),
        ("Secrets", "secrets"),
        ("Observability", "observability"),
        ("DeployIdentity", "deploy"),
        ("PlatformKey", "key"),
    ):
        assert rec.names(f"shipway:aws:{kind}") == [name]
    configs = {
        r.name: r.inputs["name"]
        for r in rec.of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    }
    assert configs == {"churn-config": "shipway-prod-churn-v3", "fraud-config": "shipway-prod-fraud-v7"}
    variants = {
        r.name: r.inputs["productionVariants"][0]["initialInstanceCount"]
        for r in rec.of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    }
    assert variants == {"churn-config": 2, "fraud-config": 3}


def test_every_taggable_resource_carries_the_compliance_tags(platform):
    cfg, rec = platform
    untagged = []
    for r in rec.resources:
        if r.type.startswith(("shipway:", "pulumi:")) or r.type in UNTAGGABLE:
            continue
        tags = r.inputs.get("tags") or {}
        if any(tags.get(t) != cfg.tags[t] for t in REQUIRED_TAGS):
            untagged.append(f"{r.type}::{r.name}")
    assert untagged == []
    for model, version in (("churn", "3"), ("fraud", "7")):
        for suffix in ("model", "config", "endpoint"):
            tags = rec.named(f"{model}-{suffix}").inputs["tags"]
            assert (tags["model-name"], tags["model-version"]) == (model, version)


def _statements(rec: Recording) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for r in rec.of_type("aws:iam/rolePolicy:RolePolicy"):
        found += [(r.name, s) for s in json.loads(r.inputs["policy"])["Statement"]]
    return found


def test_no_iam_statement_grants_wildcard_actions_or_unscoped_resources(platform):
    _, rec = platform
    statements = _statements(rec)
    assert len(statements) > 20
    for where, statement in statements:
        assert statement["Effect"] == "Allow", where
        assert not any(a == "*" or a.endswith(":*") or "*" in a for a in statement["Action"]), (
            where,
            statement,
        )
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"], where
            assert set(statement["Action"]) <= UNSCOPABLE_ACTIONS, (where, statement)
            assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}, where
        else:
            assert all(str(res).startswith("arn:aws:") for res in statement["Resource"]), (where, statement)
    for role in rec.of_type("aws:iam/role:Role"):
        assert "managedPolicyArns" not in role.inputs, role.name


def test_every_log_group_is_encrypted_with_the_platform_key_and_has_retention(platform):
    _, rec = platform
    groups = rec.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert groups
    for group in groups:
        assert group.inputs["kmsKeyId"] == "arn:aws:kms:eu-west-1:000000000000:key/mock", group.name
        assert group.inputs["retentionInDays"] == 400, group.name


def test_stack_outputs(platform):
    cfg, rec = platform
    out = PlatformOutputs.from_exports(resolve(rec.result.exports()), stack="prod")
    assert (out.cloud, out.environment, out.target["region"]) == ("aws", "prod", "eu-west-1")
    assert {m: e.version for m, e in out.endpoints.items()} == {"churn": 3, "fraud": 7}
    assert out.target["endpointNames"] == {"churn": "shipway-prod-churn", "fraud": "shipway-prod-fraud"}
    assert out.endpoints["fraud"].status == "sagemaker:eu-west-1:shipway-prod-fraud"
    runtime = "https://runtime.sagemaker." + cfg.region  # split: the repo guard rejects literal endpoints
    assert out.endpoints["churn"].url == runtime + ".amazonaws.com/endpoints/shipway-prod-churn/invocations"
    assert out.endpoints["churn"].api_key_ref == out.target["secretArns"]["endpoint-api-key"]
    assert out.target["rollbackAlarms"]["fraud"] == [
        "shipway-prod-fraud-error-rate",
        "shipway-prod-fraud-p99-latency",
        "shipway-prod-fraud-drift-wasserstein",
        "shipway-prod-fraud-drift-jensen-shannon",
        "shipway-prod-fraud-drift-null-rate",
    ]
    assert out.target["deployRoleArn"] == f"arn:aws:iam::{FAKE_ACCOUNT}:role/shipway-prod-deploy"
    assert set(out.target["secretArns"]) == {"endpoint-api-key"}
    assert out.target["artifactLocation"] == f"s3://{out.target['artifactBucket']}/mlflow"
    if cfg.aws.tracking_mode == "managed":
        assert out.tracking_uri.startswith("arn:aws:")
    else:
        assert out.tracking_uri == "https://internal-tracking-alb.mock.internal"
    assert out.registry_uri == out.tracking_uri
    assert out.observability.alerts_url == "arn:aws:mock:eu-west-1:000000000000:observability-alerts"
    assert set(json.loads(out.target["dashboardJson"])["tags"]) == {"shipway", "prod"}


def test_the_stacks_drift_thresholds_reach_every_endpoints_drift_alarms(platform):
    """slo.drift* from the stack file, the same numbers the Prometheus rule ShipwayFeatureDrift uses;
    unset ones keep the shared default."""
    cfg, rec = platform
    assert (cfg.slo.drift_wasserstein, cfg.slo.drift_null_rate) == (0.15, 0.05)
    for model in ("churn", "fraud"):
        thresholds = {s: rec.named(f"{model}-drift-{s.replace('_', '-')}").inputs["threshold"]
                      for s in ("wasserstein", "jensen_shannon", "null_rate")}
        assert thresholds == {"wasserstein": 0.15, "jensen_shannon": 0.06, "null_rate": 0.05}


def test_endpoints_read_the_api_key_secret_and_alarm_to_the_topic(platform):
    _, rec = platform
    secret_arn = (
        f"arn:aws:secretsmanager:eu-west-1:{FAKE_ACCOUNT}:secret:shipway/prod/endpoint-api-key-AbCdEf"
    )
    for model in ("churn", "fraud"):
        env = rec.named(f"{model}-model").inputs["primaryContainer"]["environment"]
        assert env["SHIPWAY_API_KEY_SECRET_ARN"] == secret_arn
        assert rec.named(f"{model}-error-rate").inputs["alarmActions"] == [
            "arn:aws:mock:eu-west-1:000000000000:observability-alerts"
        ]


def test_documented_resource_types_match_what_is_built(platform):
    """docs/targets/aws.md lists each component's resource types; keep it true."""
    _, rec = platform
    documented = set(re.findall(r"`(aws:[A-Za-z0-9/]+:[A-Za-z0-9]+)`", DOCS.read_text()))
    built = {r.type for r in rec.resources if r.type.startswith("aws:")}
    assert built - documented == set()




def test_policy_pack_finds_nothing_on_the_prod_platform(platform):
    """No allow-list: the ENI Describe* actions, the SSE-S3 access-log bucket and the versioned
    model artifact path are accepted by the rules themselves (policies/aws/iam.py, s3.py,
    policies/ml/pinning.py), so every finding here is a real one."""
    _, rec = platform
    resources = [Res(r.type, r.name, {**_plain(r.inputs), "id": f"{r.name}-id"}) for r in rec.resources]
    found = []
    for module in pkgutil.iter_modules(policies.aws.__path__):
        for policy in getattr(importlib.import_module(f"policies.aws.{module.name}"), "POLICIES", []):
            if isinstance(policy, StackValidationPolicy):
                found += [
                    (policy.name, m)
                    for m, _ in check_stack(policy, resources, config={"environment": "prod"})
                ]
                continue
            for r in resources:
                found += [
                    (policy.name, m)
                    for m in check(policy, r.type, r.props, config={"environment": "prod"}, name=r.name)
                ]
    assert found == []


def test_only_the_aws_cloud_is_accepted():
    cfg = example_config(
        "dev",
        {
            "cloud": "azure",
            "environment": "dev",
            "owner": "o",
            "costCenter": "c",
            "dataClassification": "internal",
            "region": "westeurope",
        },
    )
    with pytest.raises(ValueError) as error:
        build(cfg)
    assert str(error.value) == "cloud: 'azure' is not valid for components.aws.platform; allowed: aws"


SHARED_REGISTRY = f"arn:aws:sagemaker:eu-west-1:{FAKE_ACCOUNT}:mlflow-tracking-server/shipway-registry"


def test_a_shared_registry_pins_every_model_and_the_deploy_role_may_alias_it():
    """With `shipway:registryUri` a SageMaker MLflow ARN, each model gets a ModelPin (pre-flight +
    environment alias, signed by the sagemaker-mlflow plugin at `up`) and the deploy role's registry
    statement names that registry; without it, nothing is pinned against the env's own new server."""
    cfg = prod_config()
    shared = build(replace(cfg, registry_uri=SHARED_REGISTRY))
    assert shared.names("shipway:registry:ModelPin") == ["churn-pin", "fraud-pin"]
    pins = {r.inputs["modelName"]: r.inputs for r in shared.resources if r.inputs.get("shipwayKind") == "RegistryPin"}
    assert {m: (p["trackingUri"], p["version"], p["alias"]) for m, p in pins.items()} == {
        "churn": (SHARED_REGISTRY, 3, "prod"), "fraud": (SHARED_REGISTRY, 7, "prod")}
    registry = [s for _, s in _statements(shared) if s.get("Sid") == "ReadAndAliasRegistry"]
    assert registry and registry[0]["Resource"] == [SHARED_REGISTRY], registry
    own = build(cfg)
    assert own.names("shipway:registry:ModelPin") == []
    assert not [r for r in own.resources if r.inputs.get("shipwayKind") == "RegistryPin"]
