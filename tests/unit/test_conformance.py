"""One platform contract on every target, checked by running ``infra`` as the real program.

Each case starts from a committed stack file (``stacks/``), fills the placeholders a user
fills with the example values in ``tests/support/stacks.py``, hands the config to the program
the way the engine does (``PULUMI_CONFIG``, secrets included) and runs ``infra.program.run``
under recording mocks (the cloud providers cannot run here). Every target must export the
same keys, readable by ``PlatformOutputs.from_exports``, and every common Arg is either
honoured (visible in the recorded resources) or rejected with an error that names it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import pytest

from shipway_core.config import raw_from_stack_file
from shipway_core.outputs import (
    STATUS_SCHEMES,
    EndpointOutputs,
    ObservabilityOutputs,
    PlatformOutputs,
    section_keys,
    top_level_keys,
)
from tests.support.recording import Recording, record, resolve
from tests.support.stacks import ROOT, SECRETS, with_target_settings
from tests.unit.aws.support import outputs as aws_outputs
from tests.unit.azure.provider import azure_outputs

STACKS = ROOT / "stacks"
# Committed stack per target (the local stack is the embedded default).
TARGET_STACKS = {"local": "local", "aws": "dev", "azure": "azure-dev", "kubernetes": "k8s-dev"}
MOCK_OUTPUTS: dict[str, Callable[..., dict[str, Any]] | None] = {
    "local": None, "aws": aws_outputs, "azure": azure_outputs, "kubernetes": None,
}
SELF_HOSTED = {
    "trackingMode": "self-hosted",
    "ingressCidrs": ["10.20.0.0/16"],
    "certificateArn": "arn:aws:acm:eu-west-1:000000000000:certificate/mock",
    "mlflowImage": "000000000000.dkr.ecr.eu-west-1.amazonaws.com/mlflow@sha256:" + "cd" * 32,
}
TWO_MODELS = {"iris-classifier": {"version": 3, "instances": 1}, "churn": {"version": 7, "instances": 1}}

# (target, option set name, changes to the committed stack's shipway: keys)
OPTION_SETS: list[tuple[str, str, dict[str, Any]]] = [
    ("local", "committed", {}),
    ("local", "two-models-protected", {"models": TWO_MODELS, "protectRegistry": True}),
    ("aws", "committed", {}),
    ("aws", "self-hosted-tracking", {"aws": SELF_HOSTED}),
    ("aws", "no-deploy-identity-shared-registry",
     {"aws": {"githubRepository": None}, "registryUri": "https://mlflow.shared.example.internal"}),
    ("aws", "two-models", {"models": TWO_MODELS}),
    ("azure", "committed", {}),
    ("azure", "existing-group-key-auth", {"azure": {"resourceGroupName": "rg-ml", "endpointAuthMode": "Key"}}),
    ("azure", "blue-green", {"models": TWO_MODELS, "azure": {"previousVersions": {"churn": 6}}}),
    ("kubernetes", "committed", {}),
    ("kubernetes", "s3-artifacts", {"kubernetes": {"artifactStore": "s3", "artifactUri": "s3://ml-artifacts/dev",
                                                   "artifactIdentity": "arn:aws:iam::000000000000:role/mlflow"}}),
    ("kubernetes", "external-secrets-kserve", {"kubernetes": {"externalSecrets": True, "kserve": True}}),
    ("kubernetes", "shared-registry", {"registryUri": "https://mlflow.shared.example.internal",
                                       "models": TWO_MODELS}),
]
STRUCTURED = {"allowedRegions", "aws", "azure", "gates", "kubernetes", "local", "models", "protectRegistry", "slo"}


def stack_raw(target: str, changes: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The committed stack's shipway: keys with the example placeholders and ``changes``."""
    stack = TARGET_STACKS[target]
    raw = raw_from_stack_file(STACKS / f"Pulumi.{stack}.yaml")
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(raw.get(key), Mapping) and key != "models":
            merged = {**raw[key], **value}
            raw[key] = {k: v for k, v in merged.items() if v is not None}
        else:
            raw[key] = value
    raw = with_target_settings(raw)
    for key in ("endpointApiKey", "trackingDbPassword"):
        raw.pop(key, None)
    return stack, raw


def engine_config(raw: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
    """The flat map the engine hands a program: JSON for structured keys, decrypted secrets."""
    config = {f"shipway:{k}": json.dumps(v) if k in STRUCTURED else str(v) for k, v in raw.items()}
    config.update({f"shipway:{k}": v for k, v in secrets.items()})
    return config


def run_program(target: str, stack: str, raw: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch,
                secrets: Mapping[str, str] = SECRETS) -> Recording:
    from infra import program

    config = engine_config(raw, secrets)
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps([f"shipway:{k}" for k in secrets]))
    return record(program.run, stack=stack, outputs=MOCK_OUTPUTS[target], config=config)


@cache
def option_set_run(target: str, option: str) -> tuple[str, dict[str, Any], dict[str, Any], Recording]:
    """One recorded run of ``infra`` per option set, shared by every test that reads it.

    This module, the policy coverage table and the ``env status`` tests all read the same option
    sets; the run is deterministic, so each is recorded once per process (tests must not mutate it).
    """
    (changes,) = [c for t, o, c in OPTION_SETS if (t, o) == (target, option)]
    stack, raw = stack_raw(target, changes)
    with pytest.MonkeyPatch.context() as mp:
        rec = run_program(target, stack, raw, mp)
    return stack, raw, resolve(rec.result), rec


@pytest.fixture(scope="module", params=OPTION_SETS, ids=[f"{t}-{n}" for t, n, _ in OPTION_SETS])
def case(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], dict[str, Any], Recording]:
    target, option, _ = request.param
    _, raw, exports, rec = option_set_run(target, option)
    return target, raw, exports, rec


def test_every_target_exports_exactly_the_contract_keys(case: tuple[str, dict, dict, Recording]) -> None:
    target, raw, exports, _ = case
    assert tuple(exports) == top_level_keys()
    assert set(exports["observability"]) == set(section_keys(ObservabilityOutputs))
    assert set(exports["endpoints"]) == set(raw["models"])
    for model, endpoint in exports["endpoints"].items():
        assert set(endpoint) == set(section_keys(EndpointOutputs)), model


def test_the_cli_reads_every_target_back_with_the_pinned_versions(case: tuple[str, dict, dict, Recording]) -> None:
    target, raw, exports, _ = case
    out = PlatformOutputs.from_exports(exports, stack=target)
    assert (out.cloud, out.environment) == (target, raw["environment"])
    assert {m: e.version for m, e in out.endpoints.items()} == {m: p["version"] for m, p in raw["models"].items()}
    for endpoint in out.endpoints.values():
        assert endpoint.status.startswith(STATUS_SCHEMES[target])
        assert endpoint.api_key_ref or raw.get("kubernetes", {}).get("externalSecrets")
    if raw.get("registryUri"):
        assert out.registry_uri == raw["registryUri"]


# --------------------------------------------------------------- common Args, per target
# Where each target shows that an Arg reached its resources: (resource type, input path).
def _dig(value: Any, path: str) -> Any:
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value.get(part) if value is not None else None
    return value


def _serving_replicas(target: str, rec: Recording, model: str) -> Any:
    if target == "aws":
        config = next(r for r in rec.of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")
                      if r.name.startswith(model))
        return _dig(config.inputs, "productionVariants.0.initialInstanceCount")
    if target == "azure":
        deployment = next(r for r in rec.of_type("azure-native:machinelearningservices:OnlineDeployment")
                          if r.name.startswith(model))
        return _dig(deployment.inputs, "sku.capacity")
    deployment = rec.one("kubernetes:apps/v1:Deployment", f"serve-{model}-deployment")
    return _dig(deployment.inputs, "spec.replicas")


@pytest.mark.parametrize("target", ["aws", "azure", "kubernetes"])
def test_instance_count_is_honoured_by_every_cloud_target(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    models = {"iris-classifier": {"version": 2, "instances": 3}}
    stack, raw = stack_raw(target, {"models": models})
    rec = run_program(target, stack, raw, monkeypatch)
    assert _serving_replicas(target, rec, "iris-classifier") == 3


def test_instance_count_the_local_target_cannot_honour_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    stack, raw = stack_raw("local", {"models": {"iris-classifier": {"version": 2, "instances": 2}}})
    with pytest.raises(Exception, match=r"instance_count: 2 is not valid on the local target"):
        run_program("local", stack, raw, monkeypatch)


@pytest.mark.parametrize("target", ["local", "aws", "azure", "kubernetes"])
def test_a_missing_secret_stops_the_program_with_the_one_config_error(
        target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stack, raw = stack_raw(target, {})
    with pytest.raises(Exception) as error:
        run_program(target, stack, raw, monkeypatch, secrets={})
    text = str(error.value)
    assert f"stack '{stack}' has" in text
    assert f"shipway:endpointApiKey: is required; set it as a secret with `pulumi config set --secret " \
           f"shipway:endpointApiKey <value> --stack {stack}`" in text
    assert ("shipway:trackingDbPassword: is required" in text) == (target == "kubernetes")


def test_every_target_stack_is_checked() -> None:
    assert {t for t, _, _ in OPTION_SETS} == set(STATUS_SCHEMES) == set(TARGET_STACKS)
    assert all((STACKS / f"Pulumi.{s}.yaml").exists() for s in TARGET_STACKS.values())


# log_retention_days: honoured where the target keeps logs, rejected where it keeps none.
@pytest.mark.parametrize(("target", "key", "resource_type", "field"), [
    ("aws", "aws", "aws:cloudwatch/logGroup:LogGroup", "retentionInDays"),
    ("azure", "azure", "azure-native:operationalinsights:Workspace", "retentionInDays"),
])
def test_log_retention_is_honoured_where_the_target_keeps_logs(
        target: str, key: str, resource_type: str, field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stack, raw = stack_raw(target, {key: {"logRetentionDays": 30}})
    rec = run_program(target, stack, raw, monkeypatch)
    kept = {r.name: r.inputs.get(field) for r in rec.of_type(resource_type)}
    assert kept and set(kept.values()) == {30}, kept


def _observability_args(**changes: Any) -> Any:
    from components.common import ObservabilityArgs

    return ObservabilityArgs("dev", {"owner": "o", "cost-center": "c", "environment": "dev",
                                     "data-classification": "internal"}, **changes)


def test_log_retention_the_kubernetes_target_cannot_keep_is_rejected() -> None:
    from components.kubernetes.observability import Observability
    from shipway_core.config import KubernetesSettings

    with pytest.raises(ValueError) as error:
        record(lambda: Observability("obs", _observability_args(log_retention_days=30), KubernetesSettings(),
                                     namespace="ns"))
    assert str(error.value) == ("log_retention_days: 30 is not supported on the kubernetes target; container "
                                "logs are kept by the cluster's log pipeline; leave it unset")


def test_log_retention_the_local_target_cannot_keep_is_rejected(tmp_path: Any) -> None:
    from components.local.components import LocalPlacement, Observability

    with pytest.raises(ValueError) as error:
        record(lambda: Observability("obs", _observability_args(log_retention_days=30),
                                     LocalPlacement(str(tmp_path), 9090), rules_yaml="groups: []\n",
                                     alertmanager=LocalPlacement(str(tmp_path / "am"), 9093)))
    assert str(error.value) == ("log_retention_days: 30 is not supported on the local target; local logs live in "
                                "the stack's data directory until `make down`; leave it unset")


def test_a_plain_api_key_is_rejected_where_the_target_reads_it_from_its_secret_store(tmp_path: Any) -> None:
    """The key reaches AWS, Azure and local endpoints only by reference (ARN, Key Vault, 0600 file);
    Kubernetes honours a value by writing it to a Secret (tests/unit/kubernetes/test_k8s_endpoint.py)."""
    from components.aws.endpoint import validate_endpoint
    from components.azure import AzureTarget, WorkspaceRef
    from components.azure.endpoint import InferenceEndpoint as AzureEndpoint
    from components.common import InferenceEndpointArgs
    from components.local.components import InferenceEndpoint as LocalEndpoint
    from components.local.components import LocalPlacement
    from tests.unit.aws.support import SETTINGS

    tags = {"owner": "o", "cost-center": "c", "environment": "dev", "data-classification": "internal"}
    args = InferenceEndpointArgs("dev", "iris-classifier", 2, "http://127.0.0.1:5000", tags, api_key="k")
    with pytest.raises(ValueError, match=r"^api_key: a secret value is not accepted on AWS"):
        validate_endpoint(args, SETTINGS)
    with pytest.raises(ValueError, match=r"^api_key: '<secret>' is not supported on the azure target; Azure ML"):
        record(lambda: AzureEndpoint("iris", args, AzureTarget("rg", "westeurope"),
                                     WorkspaceRef("ws", "ws-id", "st-id", "acr-id")))
    with pytest.raises(ValueError, match=r"^api_key: '<secret>' is not supported on the local target; the key"):
        record(lambda: LocalEndpoint("iris", args, LocalPlacement(str(tmp_path), 8100), api_key_file="/k"))


@pytest.mark.parametrize("target", ["aws", "azure", "kubernetes", "local"])
def test_secret_names_follow_one_rule_on_every_target(target: str, tmp_path: Any) -> None:
    from components.common import SecretsArgs

    tags = {"owner": "o", "cost-center": "c", "environment": "dev", "data-classification": "internal"}
    args = SecretsArgs("dev", tags, values={"endpointApiKey": "a", "db_password": "b"})
    from components.aws.secrets import Secrets as AwsSecrets
    from components.azure import AzureTarget
    from components.azure.secrets import Secrets as AzureSecrets
    from components.kubernetes.secrets import Secrets as KubernetesSecrets
    from components.local.components import Secrets as LocalSecrets
    from shipway_core.config import KubernetesSettings
    from tests.unit.aws.support import SETTINGS

    build: dict[str, Callable[[], Any]] = {
        "aws": lambda: AwsSecrets("s", args, SETTINGS, kms_key_arn="k"),
        "azure": lambda: AzureSecrets("s", args, AzureTarget("rg", "westeurope")),
        "kubernetes": lambda: KubernetesSecrets("s", args, KubernetesSettings()),
        "local": lambda: LocalSecrets("s", args, directory=str(tmp_path)),
    }
    with pytest.raises(ValueError) as error:
        record(build[target])
    assert str(error.value) == (
        "values: secret name 'db_password' is not valid; use the camelCase config key it is set with "
        "(`pulumi config set --secret shipway:<key>`), e.g. endpointApiKey"
    )


def _serving_env(target: str, rec: Recording, model: str) -> dict[str, Any]:
    """The environment (or, on local, the process inputs) a target gives the serving app."""
    if target == "aws":
        sm_model = next(r for r in rec.of_type("aws:sagemaker/model:Model") if r.name.startswith(model))
        return dict(_dig(sm_model.inputs, "primaryContainer.environment"))
    if target == "azure":
        deployment = next(r for r in rec.of_type("azure-native:machinelearningservices:OnlineDeployment")
                          if r.name.startswith(model))
        return dict(_dig(deployment.inputs, "properties.environmentVariables"))
    if target == "kubernetes":
        deployment = rec.one("kubernetes:apps/v1:Deployment", f"serve-{model}-deployment")
        (container,) = _dig(deployment.inputs, "spec.template.spec.containers")
        return {e["name"]: e.get("value") for e in container["env"]}
    (server,) = [r for r in rec.resources if r.name == f"{model}-server"]
    return dict(server.inputs)


@pytest.mark.parametrize("target", ["local", "aws", "azure", "kubernetes"])
def test_explanations_opted_in_per_model_reach_the_serving_app_on_every_target(
        target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipway_core import contract

    models = {"iris-classifier": {"version": 2, "explain": True}, "churn": {"version": 3}}
    stack, raw = stack_raw(target, {"models": models})
    rec = run_program(target, stack, raw, monkeypatch)
    on, off = _serving_env(target, rec, "iris-classifier"), _serving_env(target, rec, "churn")
    if target == "local":
        assert (on.get("explain"), "explain" in off) == (True, False)
    else:
        assert (on.get(contract.EXPLAIN), contract.EXPLAIN in off) == ("true", False)
