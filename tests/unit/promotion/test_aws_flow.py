"""The AWS flow through the real CLI entry point against moto in server mode on 127.0.0.1:
`env status` -> `model promote --apply` (artifact copy into the env's bucket, InvokeEndpoint
verification) -> an alarm fires -> `model rollback --when-alarming` -> `env status`.

What runs for real: the `shipway` CLI (typer entry point), the AWS target adapter and every boto3
call it makes (S3 HeadObject/CopyObject/PutObject, SageMaker DescribeEndpoint/EndpointConfig/Model,
SageMaker runtime InvokeEndpoint, CloudWatch DescribeAlarms) against a moto server over HTTP, the
quality gates and the MLflow registry (sqlite; the MLflow API SageMaker managed MLflow also speaks).

What is injected: the engine step. `pulumi up` on an AWS stack needs the pulumi-aws provider binary,
which cannot be built here (docs/targets/aws.md), so ``SageMakerEngine.up`` does what that `up`
does to the endpoint: a new versioned model + endpoint config for the pinned version, and the
endpoint moved onto it. moto's InvokeEndpoint answers from a queue of canned responses, which the
test fills with the version's real offline predictions (or wrong ones, for the failing case).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from typer.testing import CliRunner

from shipway import aws_ops, stackfile
from shipway.audit import AuditLog
from shipway.cli import app as root
from shipway.gates import LABEL_COLUMN
from shipway.promotion import SMOKE_ROWS, Services

from .conftest import ACTOR, MODEL, FakeEngine

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    """Fake credentials (moto accepts any), a reset moto, and a session the test itself uses."""
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    httpx.post(f"{moto_url}/moto-api/reset").raise_for_status()
    return boto3.Session(region_name=REGION)


def _client(session: boto3.Session, moto_url: str, service: str) -> Any:
    return session.client(service, region_name=REGION, endpoint_url=moto_url)


AWS_SETTINGS = """\
  shipway:aws:
    trackingMode: managed
    vpcId: vpc-0123456789abcdef0
    subnetIds: [subnet-0123456789abcdef0, subnet-0123456789abcdef1]
    servingImage: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shipway-serving@sha256:%s
""" % ("0" * 64)


def aws_stack(env: str, version: int) -> str:
    return f"""\
# {env} on AWS: promotion edits only the pin below.
config:
  shipway:cloud: aws
  shipway:environment: {env}
  shipway:owner: ml-platform
  shipway:costCenter: cc-0000-ml
  shipway:dataClassification: confidential
  shipway:region: {REGION}
{AWS_SETTINGS}  shipway:models:
    {MODEL}:
      version: {version}        # pinned exact registry version
  shipway:gates:
    maxRegression: 0.02
  shipway:slo:
    latencyP99Ms: 5000
"""


def endpoint_name(env: str) -> str:
    return f"shipway-{env}-{MODEL}"


def outputs(env: str, version: int, kms_key: str) -> dict[str, Any]:
    """The exports components/aws/platform.py gives an AWS stack (shape of PlatformExports)."""
    name = endpoint_name(env)
    return {
        "cloud": "aws", "environment": env,
        "trackingUri": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/shipway-{env}",
        "registryUri": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/shipway-{env}",
        "endpoints": {MODEL: {"url": f"https://runtime.sagemaker.{REGION}.amazonaws.com/endpoints/{name}/invocations",
                              "version": version, "status": f"sagemaker:{REGION}:{name}",
                              "apiKeyRef": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:shipway-{env}-api-key"}},
        "observability": {"alertsUrl": f"arn:aws:sns:{REGION}:{ACCOUNT}:shipway-{env}-alerts"},
        "target": {"region": REGION, "artifactBucket": f"shipway-{env}-artifacts", "kmsKeyArn": kms_key,
                   "endpointNames": {MODEL: name},
                   "rollbackAlarms": {MODEL: [f"{name}-error-rate", f"{name}-p99-latency"]}},
    }


@dataclass
class SageMakerEngine(FakeEngine):
    """`pulumi up` as it changes the endpoint: deploy the version the stack file pins.

    ``stuck`` simulates SageMaker's blue/green auto-rollback: `up` "succeeds" but the endpoint
    keeps serving the previous config."""

    session: Any = None
    moto_url: str = ""
    stuck: bool = False
    deployed: list[int] = field(default_factory=list)

    def deploy(self, env: str, version: int) -> None:
        sm = _client(self.session, self.moto_url, "sagemaker")
        name, versioned = endpoint_name(env), f"{endpoint_name(env)}-v{version}"
        existing = {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
        if versioned not in existing:
            package = f"s3://shipway-{env}-artifacts/models/{MODEL}/{version}/model.tar.gz"
            sm.create_model(ModelName=versioned, ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/endpoint",
                            PrimaryContainer={"Image": "serving", "ModelDataUrl": package,
                                              "Environment": {"SHIPWAY_MODEL_VERSION": str(version)}})
            sm.create_endpoint_config(EndpointConfigName=versioned, ProductionVariants=[{
                "VariantName": "AllTraffic", "ModelName": versioned, "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}])
        if name in {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}:
            sm.delete_endpoint(EndpointName=name)  # moto has no UpdateEndpoint; the result is the same
        sm.create_endpoint(EndpointName=name, EndpointConfigName=versioned)
        self.deployed.append(version)

    def up(self, env: str, message: str) -> dict[str, Any]:
        result = super().up(env, message)
        if not self.stuck:
            self.deploy(env, stackfile.read_pins(stackfile.stack_path(self.root, env))[MODEL])
        return result


@pytest.fixture
def flow(repo: Path, aws: boto3.Session, moto_url: str, services: Services, registry: Any,
         iris_registry: Any) -> dict[str, Any]:
    """dev and test on AWS: dev serves v4 (its package in dev's bucket), test serves v1 (known-good)."""
    s3, kms = _client(aws, moto_url, "s3"), _client(aws, moto_url, "kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    for env in ("dev", "test"):
        s3.create_bucket(Bucket=f"shipway-{env}-artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    v1, v4 = iris_registry.versions["good"], iris_registry.versions["good2"]
    (repo / "stacks" / "Pulumi.dev.yaml").write_text(aws_stack("dev", v4))
    (repo / "stacks" / "Pulumi.test.yaml").write_text(aws_stack("test", v1))
    for env, version in (("dev", v4), ("test", v1)):  # what each env's earlier deploys left in its bucket
        aws_ops.upload_model_package(registry.model_path(registry.version(MODEL, version)), MODEL, version,
                                     bucket=f"shipway-{env}-artifacts", region=REGION, kms_key_id=key,
                                     session=_Endpointed(aws, moto_url))  # type: ignore[arg-type]
    engine = SageMakerEngine(root=repo, session=aws, moto_url=moto_url)
    engine.outputs = {"dev": outputs("dev", v4, key), "test": outputs("test", v1, key)}
    engine.deploy("test", v1)
    cw = _client(aws, moto_url, "cloudwatch")
    for alarm in outputs("test", v1, key)["target"]["rollbackAlarms"][MODEL]:
        cw.put_metric_alarm(AlarmName=alarm, MetricName="Invocation5XXErrors", Namespace="AWS/SageMaker",
                            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1.0,
                            ComparisonOperator="GreaterThanOrEqualToThreshold")
    services.engine = engine
    services.aws_endpoint_url = moto_url
    # The session a deploy role's assumed credentials would come in: every command's adapter reuses it
    # (and its loaded service models) instead of building the default chain's session per command.
    services.aws_session = aws
    services.probe_seconds = 1.0
    AuditLog(services.audit_path or repo / ".shipway" / "audit" / "audit.jsonl").append(
        actor=ACTOR, action="verify", env="test", model=MODEL, to_version=v1, outcome="ok",
        reason="first deploy of this model in this environment")
    return {"engine": engine, "key": key, "v1": v1, "v4": v4, "s3": s3, "cw": cw}


class _Endpointed:
    def __init__(self, session: boto3.Session, url: str):
        self.session, self.url = session, url

    def client(self, service: str, region_name: str) -> Any:
        return self.session.client(service, region_name=region_name, endpoint_url=self.url)


def queue_predictions(moto_url: str, rows: Any, predictions: list[Any]) -> None:
    """moto's InvokeEndpoint answers distinct bodies from this queue in order: first the smoke
    request (all rows), then the probe's one-row requests."""
    bodies = [json.dumps({"predictions": predictions}), *(json.dumps({"predictions": [p]}) for p in predictions)]
    httpx.post(f"{moto_url}/moto-api/static/sagemaker/endpoint-results", json={
        "account_id": ACCOUNT, "region": REGION,
        "results": [{"Body": b, "ContentType": "application/json", "InvokedProductionVariant": "AllTraffic",
                     "CustomAttributes": ""} for b in bodies]}).raise_for_status()


def offline(registry: Any, iris_registry: Any, version: int) -> tuple[Any, list[Any]]:
    import mlflow.pyfunc

    from shipway.registry import mlflow_uris

    rows = iris_registry.golden.drop(columns=[LABEL_COLUMN]).head(SMOKE_ROWS)
    with mlflow_uris(registry.tracking_uri):
        model = mlflow.pyfunc.load_model(str(registry.model_path(registry.version(MODEL, version))))
    return rows, [int(p) for p in model.predict(rows)]


def cli(services: Services, *args: str) -> Any:
    result = CliRunner().invoke(root, list(args), obj=services, env={"COLUMNS": "200"})
    return result


def status_of(services: Services, env: str) -> dict[str, Any]:
    result = cli(services, "env", "status", env, "--output", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["envs"][0]["models"][0]


def test_env_status_promote_verify_alarm_rollback_on_aws(flow: dict[str, Any], services: Services, registry: Any,
                                                         iris_registry: Any, moto_url: str, repo: Path) -> None:
    v1, v4 = flow["v1"], flow["v4"]
    before = status_of(services, "test")
    assert (before["pinned"], before["serving_version"], before["health"]) == (v1, v1, "up")
    assert before["endpoint"] == endpoint_name("test") and before["traffic"] == {"AllTraffic": 100.0}

    rows, predictions = offline(registry, iris_registry, v4)
    queue_predictions(moto_url, rows, predictions)
    promoted = cli(services, "model", "promote", MODEL, "--to", "test", "--version", str(v4), "--apply",
                   "--output", "json")
    assert promoted.exit_code == 0, promoted.output
    outcome = json.loads(promoted.stdout)
    assert outcome["status"] == "verified"
    key = f"models/{MODEL}/{v4}/model.tar.gz"
    assert outcome["prepare"]["action"] == "copied"
    assert outcome["prepare"]["target"] == f"s3://shipway-test-artifacts/{key}"
    head = flow["s3"].head_object(Bucket="shipway-test-artifacts", Key=key)
    assert head["Metadata"][aws_ops.SOURCE_META].startswith(f"s3://shipway-dev-artifacts/{key}#")
    checks = outcome["verification"]["checks"]
    assert checks["version"]["served"] == v4 and checks["smoke"]["mismatches"] == 0
    assert outcome["verification"]["probe"]["requests"] > 0 and outcome["verification"]["probe"]["error_rate"] == 0.0
    assert outcome["verification"]["url"] == f"sagemaker:{REGION}:{endpoint_name('test')}"
    assert status_of(services, "test")["serving_version"] == v4
    assert registry.alias_target(MODEL, "test") == v4 and checks["alias"]["ok"] is True

    # Nothing fires: a guarded rollback leaves the pin alone.
    quiet = cli(services, "model", "rollback", MODEL, "--env", "test", "--when-alarming", "--output", "json")
    assert quiet.exit_code == 0, quiet.output
    assert json.loads(quiet.stdout)["status"] == "unchanged"
    assert stackfile.read_pins(stackfile.stack_path(repo, "test"))[MODEL] == v4

    flow["cw"].set_alarm_state(AlarmName=f"{endpoint_name('test')}-error-rate", StateValue="ALARM",
                               StateReason="5xx above the SLO")
    rolled = cli(services, "model", "rollback", MODEL, "--env", "test", "--when-alarming", "--output", "json")
    assert rolled.exit_code == 0, rolled.output
    back = json.loads(rolled.stdout)
    assert (back["status"], back["from_version"], back["to_version"]) == ("verified", v4, v1)
    assert back["decision"]["reason"] == (f"alarm firing: {endpoint_name('test')}-error-rate (error_rate); "
                                          f"roll back to version {v1}")
    assert back["verification"]["checks"]["version"]["served"] == v1
    assert registry.alias_target(MODEL, "test") == v1  # the env alias follows the verified pin
    assert stackfile.read_pins(stackfile.stack_path(repo, "test"))[MODEL] == v1
    after = status_of(services, "test")
    assert (after["pinned"], after["serving_version"]) == (v1, v1)
    trail = AuditLog(repo / ".shipway" / "audit" / "audit.jsonl")
    actions = [(r["action"], r["outcome"]) for r in trail.query(env="test")]
    assert ("prepare", "copied") in actions and actions[-1] == ("verify", "ok")


def test_a_deploy_that_sagemaker_rolled_back_fails_verification_and_repins(
        flow: dict[str, Any], services: Services, registry: Any, iris_registry: Any, repo: Path) -> None:
    """`up` succeeded but the endpoint still serves v1 (SageMaker's alarm-driven blue/green rollback):
    InvokeEndpoint verification sees the old version, so the promotion rolls the pin back."""
    flow["engine"].stuck = True
    result = cli(services, "model", "promote", MODEL, "--to", "test", "--version", str(flow["v4"]), "--apply",
                 "--output", "json")
    assert result.exit_code == 1
    assert (f"endpoint '{endpoint_name('test')}' serves version {flow['v1']} of '{MODEL}', "
            f"expected {flow['v4']}") in result.output
    assert stackfile.read_pins(stackfile.stack_path(repo, "test"))[MODEL] == flow["v1"]


def test_env_verify_checks_every_pin_through_invoke_endpoint(flow: dict[str, Any], services: Services,
                                                            registry: Any, iris_registry: Any,
                                                            moto_url: str) -> None:
    """What deploy-env.yml runs after `pulumi up`: `shipway env verify ENV` (no script of its own)."""
    rows, predictions = offline(registry, iris_registry, flow["v1"])
    queue_predictions(moto_url, rows, predictions)
    ok = cli(services, "env", "verify", "test", "--output", "json")
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["ok"] is True and report["models"][MODEL]["checks"]["smoke"]["mismatches"] == 0

    flow["engine"].deploy("test", flow["v4"])  # the endpoint drifted off its pin
    bad = cli(services, "env", "verify", "test", "--output", "json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["models"][MODEL]["reason"] == (
        f"endpoint '{endpoint_name('test')}' serves version {flow['v4']} of '{MODEL}', expected {flow['v1']}")


def test_revert_pins_repins_what_a_push_changed(flow: dict[str, Any], services: Services, repo: Path) -> None:
    """What deploy-env.yml runs when a deploy fails: `shipway env revert-pins ENV --since BEFORE_SHA`."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "add", "stacks")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "before")
    before = git("rev-parse", "HEAD").strip()
    path = stackfile.stack_path(repo, "test")
    path.write_text(path.read_text().replace(f"version: {flow['v1']} ", f"version: {flow['v4']} "))
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-am", "promote")
    result = cli(services, "env", "revert-pins", "test", "--since", before, "--output", "json")
    assert result.exit_code == 0, result.output
    (changed,) = json.loads(result.stdout)["changed"]
    assert (changed["model"], changed["from_version"], changed["to_version"]) == (MODEL, flow["v4"], flow["v1"])
    assert stackfile.read_pins(path)[MODEL] == flow["v1"] and flow["engine"].up_calls == []
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-am", "rollback")
    again = cli(services, "env", "revert-pins", "test", "--since", "HEAD", "--output", "json")
    assert json.loads(again.stdout)["changed"] == []
    wrong = cli(services, "env", "revert-pins", "test", "--since", "no-such-rev", "--output", "json")
    assert wrong.exit_code == 2 and "--since: 'no-such-rev' is not a revision of this repository" in wrong.output


def test_env_capture_writes_one_window_per_model_from_sagemaker_data_capture(
        flow: dict[str, Any], services: Services, tmp_path: Path) -> None:
    """What drift-watch.yml runs: `shipway env capture ENV --day` reads the env's data capture in S3."""
    import base64

    split = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0], [3.0, 4.0]]}}
    lines = [json.dumps({"captureData": {"endpointInput": {"data": json.dumps(split), "encoding": "JSON"}}}),
             json.dumps({"captureData": {"endpointInput": {
                 "data": base64.b64encode(json.dumps(split).encode()).decode(), "encoding": "BASE64"}}})]
    prefix = f"data-capture/{MODEL}/{endpoint_name('test')}/AllTraffic"
    flow["s3"].put_object(Bucket="shipway-test-artifacts", Key=f"{prefix}/2026/12/03/10/x.jsonl", Body="\n".join(lines))
    flow["s3"].put_object(Bucket="shipway-test-artifacts", Key=f"{prefix}/2026/12/02/10/y.jsonl", Body=lines[0])
    result = cli(services, "env", "capture", "test", "--day", "2026-12-03", "--out", str(tmp_path / "w"),
                 "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == {MODEL: 4}
    assert (tmp_path / "w" / f"{MODEL}.csv").read_text().splitlines() == ["a,b", "1.0,2.0", "3.0,4.0",
                                                                          "1.0,2.0", "3.0,4.0"]
    bad = cli(services, "env", "capture", "test", "--day", "yesterday")
    assert bad.exit_code == 2 and "'yesterday' is not a day; use YYYY-MM-DD" in bad.output


def test_env_preflight_stops_on_a_pin_the_registry_does_not_have(flow: dict[str, Any], services: Services,
                                                                  repo: Path) -> None:
    """What deploy-env.yml runs before every `pulumi up`: `shipway env preflight ENV`."""
    ok = cli(services, "env", "preflight", "test", "--output", "json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["pins"] == {MODEL: flow["v1"]}
    path = stackfile.stack_path(repo, "test")
    path.write_text(path.read_text().replace(f"version: {flow['v1']} ", "version: 99 "))
    missing = cli(services, "env", "preflight", "test", "--output", "json")
    assert missing.exit_code == 1
    assert "99" in missing.output and MODEL in missing.output
