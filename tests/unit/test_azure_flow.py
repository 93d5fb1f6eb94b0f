"""The Azure flow through the real CLI entry point against a recorded-contract fake of Azure ML:
`env status` -> `model promote --apply` (registry check, verification through the scoring URI
with the endpoint key, 10% -> 50% -> 100% traffic shift watching the alerts) -> `model rollback`.

What runs for real: the `shipway` CLI (typer entry point), the Azure target adapter and every
HTTP call it makes, the quality gates, the MLflow registry (sqlite) the gates read, and the
real models' predictions (the fake's deployments answer with them).

What is faked, and how: Azure ML itself. ``tests/support/azureml_fake.py`` is a small HTTP
server on 127.0.0.1 replaying the request/response shapes of the Azure ML and Alerts Management
REST reference (it is not Azure: no RBAC, no provisioning time, no network). The engine step is
injected: `pulumi up` on an Azure stack needs the azure-native provider binary, which cannot be
built here, so ``AzureMLEngine.up`` does to the fake what that `up` does to the endpoint
(components/azure/endpoint.py): deployments for the pin and ``previousVersions``, the traffic
map ``traffic_map`` gives, the others deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from components.azure.endpoint import traffic_map
from components.azure.identity import deploy_permissions
from shipway import stackfile
from shipway.audit import AuditLog
from shipway.cli import app as root
from shipway.gates import LABEL_COLUMN
from shipway.promotion import Promoter, Services
from shipway.targets import azure as azure_target
from shipway_core.config import SloSettings
from tests.support.azureml_fake import AzureMLFake, FakeDeployment, FakeEndpoint, serve
from tests.unit.promotion.conftest import ACTOR, MODEL, FakeEngine, iris_registry, registry  # noqa: F401

SUB = "00000000-0000-0000-0000-000000000000"
RG, WS, REG = "shipway-test", "tracking-workspace", "shipway-models"
ENDPOINT = "iris-classifier-test-1a2b3c4d"
ALERTS = [f"observability-{MODEL}-latency", f"observability-{MODEL}-errors", f"observability-{MODEL}-drift"]


def azure_stack(env: str, version: int, previous: int) -> str:
    return f"""\
# {env} on Azure: promotion edits only the pin below.
config:
  shipway:cloud: azure
  shipway:environment: {env}
  shipway:owner: ml-platform
  shipway:costCenter: cc-0000-ml
  shipway:dataClassification: confidential
  shipway:region: westeurope
  shipway:azure:
    subscriptionId: {SUB}
    registryName: {REG}
    endpointAuthMode: Key
    previousVersions: {{{MODEL}: {previous}}}   # the version serving now: kept warm during the shift
    trafficSteps: [10, 50, 100]
    bakeMinutes: 10
  shipway:models:
    {MODEL}:
      version: {version}        # pinned exact registry version
  shipway:gates:
    maxRegression: 0.02
  shipway:slo:
    latencyP99Ms: 5000
"""


def outputs(env: str, version: int, fake: AzureMLFake) -> dict[str, Any]:
    """The exports components/azure/platform.py gives an Azure stack (shape of PlatformExports)."""
    return {
        "cloud": "azure", "environment": env,
        "trackingUri": "azureml://westeurope.api.azureml.ms/mlflow/v1.0/tracking-workspace",
        "registryUri": "azureml://westeurope.api.azureml.ms/mlflow/v1.0/tracking-workspace",
        "endpoints": {MODEL: {"url": fake.scoring_uri(ENDPOINT), "version": version,
                              "status": f"azureml:{RG}/{WS}/{ENDPOINT}"}},
        "target": {"region": "westeurope", "resourceGroupName": RG, "workspaceName": WS, "subscriptionId": SUB,
                   "modelRegistry": REG, "endpointNames": {MODEL: ENDPOINT}, "alertNames": ALERTS},
    }


@dataclass
class AzureMLEngine(FakeEngine):
    """`pulumi up` as it changes the online endpoint (see the module docstring)."""

    fake: AzureMLFake = field(default_factory=AzureMLFake)
    predictors: dict[int, Any] = field(default_factory=dict)

    def apply(self, env: str) -> None:
        cfg = stackfile.load_config(stackfile.stack_path(self.root, env))
        pin = cfg.models[MODEL].version
        previous = cfg.azure.previous_versions.get(MODEL)
        previous = None if previous == pin else previous
        endpoint = self.fake.endpoints[ENDPOINT]
        wanted = [pin] + ([previous] if previous is not None else [])
        endpoint.deployments = {
            f"v{v}": endpoint.deployments.get(f"v{v}") or FakeDeployment(
                f"v{v}", f"azureml://registries/{REG}/models/{MODEL}/versions/{v}", self.predictors[v])
            for v in wanted
        }
        endpoint.traffic = traffic_map(pin, previous, gradual=cfg.azure.traffic_steps[0] < 100)
        self.outputs[env] = outputs(env, pin, self.fake)


def _predictor(reg: Any, version: int) -> Any:
    import mlflow.pyfunc

    from shipway.registry import mlflow_uris

    with mlflow_uris(reg.tracking_uri):
        model = mlflow.pyfunc.load_model(str(reg.model_path(reg.version(MODEL, version))))

    def predict(body: dict[str, Any]) -> list[Any]:
        split = body["dataframe_split"]
        frame = pd.DataFrame(split["data"], columns=split["columns"])
        return [int(p) for p in model.predict(frame)]

    return predict


@pytest.fixture
def flow(tmp_path: Path, registry: Any, iris_registry: Any,  # noqa: F811 - fixtures
         monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """test on Azure serves v1 (known-good); dev serves v4; both in the shared registry."""
    v1, v4 = iris_registry.versions["good"], iris_registry.versions["good2"]
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(azure_stack("dev", v4, v4))
    (tmp_path / "stacks" / "Pulumi.test.yaml").write_text(azure_stack("test", v1, v1))
    fake = AzureMLFake(subscription=SUB, endpoints={ENDPOINT: FakeEndpoint(ENDPOINT)},
                       registry_versions={(REG, MODEL, v) for v in (v1, v4)})
    slept: list[float] = []
    shifts: list[dict[str, int]] = []
    fake.on_traffic = lambda _name, traffic: shifts.append(traffic)
    monkeypatch.setattr(azure_target, "get_token", lambda scope: f"token-for-{scope}")
    monkeypatch.setattr(azure_target, "sleep", slept.append)
    with serve(fake):
        monkeypatch.setattr(azure_target, "ARM_URL", fake.url)
        engine = AzureMLEngine(root=tmp_path, fake=fake,
                               predictors={v: _predictor(registry, v) for v in (v1, v4)})
        engine.on_up = engine.apply
        engine.apply("test")
        engine.outputs["dev"] = outputs("dev", v4, fake)
        services = Services(engine=engine, registry_factory=lambda _uri: registry, actor=ACTOR,
                            tracking_uri=iris_registry.uri, probe_seconds=0.5)
        AuditLog(tmp_path / ".shipway" / "audit" / "audit.jsonl").append(
            actor=ACTOR, action="verify", env="test", model=MODEL, to_version=v1, outcome="ok",
            reason="first deploy of this model in this environment")
        yield {"fake": fake, "engine": engine, "services": services, "v1": v1, "v4": v4, "slept": slept,
               "shifts": shifts, "root": tmp_path, "iris_golden": iris_registry.golden}


def cli(services: Services, *args: str) -> Any:
    return CliRunner().invoke(root, list(args), obj=services, env={"COLUMNS": "200"})


def status_of(services: Services, env: str) -> dict[str, Any]:
    result = cli(services, "env", "status", env, "--output", "json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout)["envs"][0]["models"][0])


def test_env_status_promote_shift_verify_rollback_on_azure(flow: dict[str, Any]) -> None:
    services, fake, v1, v4 = flow["services"], flow["fake"], flow["v1"], flow["v4"]
    before = status_of(services, "test")
    assert (before["pinned"], before["serving_version"], before["health"]) == (v1, v1, "up")
    assert before["endpoint"] == ENDPOINT and before["traffic"] == {f"v{v1}": 100.0}

    promoted = cli(services, "model", "promote", MODEL, "--to", "test", "--version", str(v4), "--apply",
                   "--output", "json")
    assert promoted.exit_code == 0, promoted.output
    outcome = json.loads(promoted.stdout)
    assert outcome["status"] == "verified"
    asset = f"azureml://registries/{REG}/models/{MODEL}/versions/{v4}"
    assert (outcome["prepare"]["action"], outcome["prepare"]["target"]) == ("present", asset)
    checks = outcome["verification"]["checks"]
    assert checks["version"]["served"] == v4 and checks["version"]["model"] == asset
    assert checks["smoke"]["mismatches"] == 0
    assert outcome["verification"]["probe"]["requests"] > 0 and outcome["verification"]["probe"]["error_rate"] == 0.0
    # The probe went to the new deployment directly (while it had 0% of traffic), with the key.
    scored = [c for c in fake.calls if c.route == "score"]
    assert {c.headers["azureml-model-deployment"] for c in scored} == {f"v{v4}"}
    assert {c.headers["Authorization"] for c in scored} == {"Bearer primary-key-0123"}
    # Gradual shift: 10 -> 50 -> 100, the first two held 10 minutes each (in alarm polls of 60 s).
    assert flow["shifts"] == [{f"v{v4}": 10, f"v{v1}": 90}, {f"v{v4}": 50, f"v{v1}": 50},
                              {f"v{v4}": 100, f"v{v1}": 0}]
    assert sum(flow["slept"]) == 2 * 600
    assert checks["traffic"]["ok"] is True and checks["traffic"]["steps"] == [10, 50, 100]
    after = status_of(services, "test")
    assert (after["pinned"], after["serving_version"]) == (v4, v4)
    assert after["traffic"] == {f"v{v4}": 100.0, f"v{v1}": 0.0}

    # Rollback: the pin goes back to v1 (kept warm), `up` drops v4, v1 takes all traffic at once.
    flow["shifts"].clear()
    rolled = cli(services, "model", "rollback", MODEL, "--env", "test", "--output", "json")
    assert rolled.exit_code == 0, rolled.output
    back = json.loads(rolled.stdout)
    assert (back["status"], back["from_version"], back["to_version"]) == ("verified", v4, v1)
    assert back["verification"]["checks"]["version"]["served"] == v1
    assert back["verification"]["checks"]["traffic"]["message"] == f"v{v1} receives 100% of traffic"
    assert stackfile.read_pins(stackfile.stack_path(flow["root"], "test"))[MODEL] == v1
    final = status_of(services, "test")
    assert (final["pinned"], final["serving_version"], final["traffic"]) == (v1, v1, {f"v{v1}": 100.0})
    # Every management call carried the pinned api-version and a bearer token (the fake refuses others).
    assert {c.query.get("api-version") for c in fake.calls if c.route not in ("score", "alerts-list")} == {
        "2024-10-01"}


def test_an_alert_during_the_shift_returns_traffic_and_rolls_the_pin_back(flow: dict[str, Any]) -> None:
    services, fake, v1, v4 = flow["services"], flow["fake"], flow["v1"], flow["v4"]
    p99 = (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Insights/metricAlerts/"
           f"observability-{MODEL}-latency-5f3a")

    def fire_at_half(_name: str, traffic: dict[str, int]) -> None:
        flow["shifts"].append(traffic)
        if traffic.get(f"v{v4}") == 50:
            fake.fired_alerts.append(p99)

    fake.on_traffic = fire_at_half
    result = cli(services, "model", "promote", MODEL, "--to", "test", "--version", str(v4), "--apply",
                 "--output", "json")
    assert result.exit_code == 1
    assert (f"alert firing at 50% on v{v4}: observability-{MODEL}-latency (latency_p99); "
            f"all traffic returned to v{v1}") in result.output
    assert flow["shifts"][:3] == [{f"v{v4}": 10, f"v{v1}": 90}, {f"v{v4}": 50, f"v{v1}": 50},
                                  {f"v{v4}": 0, f"v{v1}": 100}]
    assert stackfile.read_pins(stackfile.stack_path(flow["root"], "test"))[MODEL] == v1
    assert fake.endpoints[ENDPOINT].traffic == {f"v{v1}": 100}
    assert list(fake.endpoints[ENDPOINT].deployments) == [f"v{v1}"]

    # The same alerts drive the rollback decision while they fire.
    promoter = Promoter(services)
    cfg = stackfile.load_config(stackfile.stack_path(flow["root"], "test"))
    decision = services.adapter("test", cfg, promoter.audit).rollback_decision(MODEL)
    assert decision.rollback is True
    assert {a.name: a.state for a in decision.alarms} == {
        f"observability-{MODEL}-latency": "ALARM", f"observability-{MODEL}-errors": "OK",
        f"observability-{MODEL}-drift": "OK"}


def test_preflight_refuses_a_version_missing_from_the_shared_registry(flow: dict[str, Any]) -> None:
    services, fake, v4 = flow["services"], flow["fake"], flow["v4"]
    fake.registry_versions.discard((REG, MODEL, v4))
    result = cli(services, "model", "promote", MODEL, "--to", "test", "--version", str(v4), "--apply",
                 "--output", "json")
    assert result.exit_code == 1  # a clear error, not a traceback
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    said = json.loads(result.stdout[result.stdout.index("{"):])
    assert said["ok"] is False
    assert f"version {v4} of '{MODEL}' is not usable in the Azure ML registry '{REG}'" in said["error"]
    assert stackfile.read_pins(stackfile.stack_path(flow["root"], "test"))[MODEL] == flow["v1"]
    assert flow["engine"].up_calls == []


def test_the_deploy_identity_holds_exactly_what_the_adapter_calls(flow: dict[str, Any]) -> None:
    """The adapter's management calls in a whole promote + rollback, mapped to ARM actions, are
    inside the deploy role derived from the stack's resources; the role's extra actions are the
    ones `pulumi up` itself performs (deployments, autoscale, identity assign, traffic template)."""
    services, fake, v4 = flow["services"], flow["fake"], flow["v4"]
    assert cli(services, "model", "promote", MODEL, "--to", "test", "--version", str(v4), "--apply").exit_code == 0
    assert cli(services, "model", "rollback", MODEL, "--env", "test").exit_code == 0
    types = ["azure-native:machinelearningservices:Workspace", "azure-native:machinelearningservices:OnlineEndpoint",
             "azure-native:machinelearningservices:OnlineDeployment", "azure-native:monitor:AutoscaleSetting",
             "azure-native:resources:Deployment", "azure-native:managedidentity:UserAssignedIdentity",
             "azure-native:monitor:MetricAlert", "azure-native:monitor:ScheduledQueryRule"]
    actions, data_actions = deploy_permissions(types, "Key")
    used = fake.actions_used()
    registry_reads = {"Microsoft.MachineLearningServices/registries/assets/read"}
    assert used - registry_reads <= set(actions)
    assert used & registry_reads  # granted by the registry-reader role on the shared registry
    ws = "Microsoft.MachineLearningServices/workspaces"
    by_up = {  # what `pulumi up` of a pin change does itself (components/azure/endpoint.py)
        f"{ws}/read", f"{ws}/onlineEndpoints/deployments/write", f"{ws}/onlineEndpoints/deployments/delete",
        "Microsoft.Insights/autoscalesettings/read", "Microsoft.Insights/autoscalesettings/write",
        "Microsoft.Insights/autoscalesettings/delete",
        "Microsoft.ManagedIdentity/userAssignedIdentities/read",
        "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
        "Microsoft.Resources/deployments/read", "Microsoft.Resources/deployments/write",
        "Microsoft.Resources/deployments/validate/action", "Microsoft.Resources/deployments/operationStatuses/read",
        "Microsoft.Resources/subscriptions/resourceGroups/read",
    }
    assert set(actions) - used == by_up
    assert data_actions == []


def test_aad_token_endpoints_are_probed_with_an_entra_token_not_a_key(flow: dict[str, Any]) -> None:
    """The default auth mode (AADToken): no listKeys call; the probe carries a token for ml.azure.com."""
    services, fake, v1 = flow["services"], flow["fake"], flow["v1"]
    fake.endpoints[ENDPOINT].auth_mode = "AADToken"
    cfg = stackfile.load_config(stackfile.stack_path(flow["root"], "test"))
    adapter = services.adapter("test", cfg, Promoter(services).audit)
    golden = flow["iris_golden"].drop(columns=[LABEL_COLUMN]).head(5)
    probed = adapter.verify(MODEL, v1, SloSettings(latency_p99_ms=5000), features=golden)
    assert probed.ok, probed.reason
    assert "endpoint-listkeys" not in fake.routes_called()
    assert {c.headers["Authorization"] for c in fake.calls if c.route == "score"} == {
        "Bearer token-for-https://ml.azure.com/.default"}
