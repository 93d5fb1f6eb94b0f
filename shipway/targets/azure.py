"""The Azure target's adapter: managed online endpoints through the Azure ML REST API (ARM).

What it calls (api-version ``2024-10-01``; docs/targets/azure.md lists each call with the ARM
action the deploy identity is granted for it):

* status: Online Endpoints - Get (traffic, scoring URI, state) + Online Deployments - List
  (which registry version each deployment serves);
* preflight/prepare: Registry Model Versions - Get in the shared Azure ML registry. Nothing is
  copied: dev, test and prod deployments pin the same ``azureml://registries/...`` asset;
* verify: Online Deployments - Get (the new deployment serves the pinned version), List Keys,
  then the smoke and SLO probe through the scoring URI with the endpoint key, addressed to the
  new deployment (``azureml-model-deployment`` header) while it still has 0% of traffic; then
  the gradual traffic shift (``azure.trafficSteps``, each step held ``azure.bakeMinutes``) by
  Online Endpoints - Create Or Update of the endpoint's ``traffic`` map, watching the stack's
  error-rate, p99 and drift alerts (Alerts Management - Get All). A firing alert puts all
  traffic back on the previous deployment at once and fails verification, so the promotion's
  automatic rollback re-pins the previous version. A version verified here before (a rollback)
  takes all traffic at once.
* rollback_decision: the same alerts, the same rule as every target (base.decide).

MLflow's client is not used for the Azure ML registry: the ``azureml-mlflow`` plugin pins
``mlflow-skinny<=3.15.0`` while Shipway runs MLflow 3.17.2, so the registry checks go through
the REST API above and gates read models through ``--tracking-uri`` (docs/targets/azure.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from shipway.targets.base import (
    AdapterContext,
    Alarm,
    Check,
    EndpointState,
    PrepareResult,
    RollbackDecision,
    TargetError,
    VerificationResult,
    alarm_signal,
    decide_from_alarms,
    known_good_from_audit,
)
from shipway_core.config import SloSettings, StackConfig
from shipway_core.outputs import PlatformOutputs

if TYPE_CHECKING:
    import pandas as pd

    from shipway.registry import Registry

API_VERSION = "2024-10-01"
ALERTS_API_VERSION = "2019-05-05-preview"
# The Azure Resource Manager endpoint and how a token for it is obtained. Module attributes so a
# sovereign cloud (or the recorded-contract fake in tests) can be pointed at explicitly.
ARM_URL = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
# Bake waits go through this, so tests replace time instead of waiting for it.
sleep: Callable[[float], None] = time.sleep
POLL_SECONDS = 10.0
ALARM_POLL_SECONDS = 60.0
PROVISION_TIMEOUT_SECONDS = 900.0

_STATES = {"Succeeded": "up", "Updating": "updating", "Creating": "updating", "Deleting": "updating",
           "Failed": "failed", "Canceled": "failed"}


def get_token(scope: str) -> str:
    """An Entra ID token for ``scope``: workload identity / OIDC in CI, ``az login`` on a laptop."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:  # pragma: no cover - azure-identity is a dependency
        raise TargetError("azure-identity is not installed; run .venv/bin/pip install -e .") from exc
    try:
        return str(DefaultAzureCredential().get_token(scope).token)
    except Exception as exc:
        raise TargetError(f"cannot get an Azure token for {scope}: {exc}; run `az login` or, in CI, "
                          "azure/login with the stack's deployClientId") from exc


def version_of(model_uri: str, model: str) -> int | None:
    """``azureml://registries/r/models/m/versions/4`` (or a workspace model id) -> 4 for model ``m``."""
    parts = model_uri.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "versions" and parts[-4] == "models" and parts[-3] == model:
        return int(parts[-1]) if parts[-1].isdigit() else None
    return None


class AzureAdapter:
    """The ``azure`` target (Azure ML managed online endpoints, shared Azure ML registry)."""

    cloud = "azure"

    def __init__(self, outputs: PlatformOutputs, config: StackConfig, context: AdapterContext):
        self.outputs, self.config, self.context = outputs, config, context
        self._registry: Registry | None = None
        self._http = httpx.Client(timeout=30.0)
        target = outputs.target
        self.subscription = str(target.get("subscriptionId") or config.azure.subscription_id or "")
        self.resource_group = str(target.get("resourceGroupName") or "")
        self.workspace = str(target.get("workspaceName") or "")
        self.model_registry = str(target.get("modelRegistry") or config.azure.registry_name or "")
        self.registry_group = str(config.azure.registry_resource_group or self.resource_group)
        missing = [k for k, v in (("subscriptionId", self.subscription), ("resourceGroupName", self.resource_group),
                                  ("workspaceName", self.workspace), ("modelRegistry", self.model_registry)) if not v]
        if missing:
            raise TargetError(f"stack '{outputs.environment}' exports no target.{', target.'.join(missing)}; "
                              "redeploy it with this version of Shipway")

    # -------------------------------------------------------------------- REST
    def _url(self, path: str) -> str:
        return ARM_URL.rstrip("/") + path

    def _workspace_path(self) -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}")

    def _arm(self, method: str, path: str, *, body: Any = None, api_version: str = API_VERSION,
             params: Mapping[str, str] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {get_token(ARM_SCOPE)}"}
        try:
            resp = self._http.request(method, self._url(path), params={"api-version": api_version, **(params or {})},
                                      json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TargetError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                err = resp.json().get("error", {})
                detail = f"{err.get('code')}: {err.get('message')}"
            except ValueError:
                detail = resp.text[:200]
            raise TargetError(f"{method} {path} answered {resp.status_code} ({detail})")
        return resp.json() if resp.content else {}

    def endpoint_name(self, model: str) -> str:
        name = (self.outputs.target.get("endpointNames") or {}).get(model)
        if not name:
            raise TargetError(f"stack '{self.outputs.environment}' exports no online endpoint for '{model}' "
                              "(target.endpointNames); is it pinned and deployed?")
        return str(name)

    def _endpoint(self, name: str) -> dict[str, Any]:
        return dict(self._arm("GET", f"{self._workspace_path()}/onlineEndpoints/{name}"))

    def _deployments(self, name: str) -> list[dict[str, Any]]:
        return list(self._arm("GET", f"{self._workspace_path()}/onlineEndpoints/{name}/deployments").get("value", []))

    def _registry_version(self, model: str, version: int) -> dict[str, Any]:
        path = (f"/subscriptions/{self.subscription}/resourceGroups/{self.registry_group}/providers/"
                f"Microsoft.MachineLearningServices/registries/{self.model_registry}/models/{model}/versions/{version}")
        try:
            found = dict(self._arm("GET", path))
        except TargetError as exc:
            raise TargetError(f"version {version} of '{model}' is not usable in the Azure ML registry "
                              f"'{self.model_registry}': {exc}; register it there first (every environment "
                              "deploys from that registry)") from exc
        state = (found.get("properties") or {}).get("provisioningState", "Succeeded")
        if state != "Succeeded":
            raise TargetError(f"version {version} of '{model}' in registry '{self.model_registry}' is {state}, "
                              "not Succeeded; wait for it or register it again")
        return found

    def asset_uri(self, model: str, version: int) -> str:
        return f"azureml://registries/{self.model_registry}/models/{model}/versions/{version}"

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, EndpointState]:
        out: dict[str, EndpointState] = {}
        for model in sorted(set(self.config.models) | set(self.outputs.endpoints)):
            try:
                name = self.endpoint_name(model)
                endpoint = self._endpoint(name)
                deployments = self._deployments(name)
            except TargetError as exc:
                out[model] = EndpointState(model, "", None, "unknown", "", {}, str(exc))
                continue
            props = endpoint.get("properties") or {}
            traffic = {k: float(v) for k, v in (props.get("traffic") or {}).items()}
            versions = {d["name"]: version_of(str((d.get("properties") or {}).get("model", "")), model)
                        for d in deployments}
            live = sorted((pct, dep) for dep, pct in traffic.items() if pct > 0)
            served = versions.get(live[-1][1]) if live else None
            state = str(props.get("provisioningState", ""))
            detail = ", ".join(f"{d}=v{v}" for d, v in sorted(versions.items()))
            out[model] = EndpointState(model, name, served, _STATES.get(state, "unknown"),
                                       str(props.get("scoringUri", "")), traffic,
                                       f"{state}; deployments {detail}" if detail else state)
        return out

    # ---------------------------------------------------------------- registry
    def registry(self) -> Registry:
        if self._registry is None:
            uri = self.context.tracking_uri or self.config.registry_uri or self.outputs.registry_uri
            if uri.startswith("azureml:"):
                raise TargetError(
                    f"registryUri: {uri!r} needs the azureml-mlflow plugin, which requires mlflow-skinny<=3.15.0 "
                    "and cannot be installed beside Shipway's MLflow 3.17.2; pass --tracking-uri with the MLflow "
                    "server the model was registered from (pins are still checked in the Azure ML registry)")
            self._registry = self.context.registry_factory(uri)
        return self._registry

    def preflight(self, pins: Mapping[str, int]) -> None:
        for model, version in sorted(pins.items()):
            self._registry_version(model, version)

    def prepare(self, model: str, version: int) -> PrepareResult:
        """Nothing to copy: the deployment pins the shared registry's asset; confirm it is there."""
        self._registry_version(model, version)
        uri = self.asset_uri(model, version)
        return PrepareResult(model, version, "present", uri, uri)

    # ------------------------------------------------------------------ verify
    def _keys(self, name: str, endpoint: Mapping[str, Any]) -> str:
        mode = (endpoint.get("properties") or {}).get("authMode")
        if mode == "Key":
            keys = self._arm("POST", f"{self._workspace_path()}/onlineEndpoints/{name}/listKeys")
            return str(keys["primaryKey"])
        return get_token("https://ml.azure.com/.default")  # AADToken endpoints take an Entra token

    def _version_check(self, model: str, name: str, version: int) -> Check:
        deployment = f"v{version}"
        try:
            dep = self._arm("GET", f"{self._workspace_path()}/onlineEndpoints/{name}/deployments/{deployment}")
        except TargetError as exc:
            return Check("version", False, f"deployment {deployment!r} of endpoint {name!r}: {exc}")
        props = dep.get("properties") or {}
        served = version_of(str(props.get("model", "")), model)
        data = {"served": served, "expected": version, "deployment": deployment, "model": props.get("model")}
        if props.get("provisioningState") != "Succeeded":
            return Check("version", False, f"deployment {deployment!r} is {props.get('provisioningState')}, "
                                           "expected Succeeded", data)
        if served != version:
            return Check("version", False, f"deployment {deployment!r} serves version {served} of '{model}', "
                                           f"expected {version}", data)
        return Check("version", True, f"deployment {deployment!r} of {name!r} serves {props.get('model')}", data)

    def _sender(self, scoring_uri: str, key: str, deployment: str) -> Callable[[pd.DataFrame], list[Any]]:
        from shipway.verify import TRAFFIC_CLASS, TRAFFIC_HEADER, _predictions, _split

        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                   # straight to the new deployment, whatever its share of traffic
                   "azureml-model-deployment": deployment, TRAFFIC_HEADER: TRAFFIC_CLASS}

        def send(frame: pd.DataFrame) -> list[Any]:
            resp = self._http.post(scoring_uri, content=json.dumps(_split(frame)), headers=headers)
            resp.raise_for_status()
            return _predictions(resp.json())

        return send

    def verify(self, model: str, version: int, slo: SloSettings, *, features: Any = None,
               offline: Any = None) -> VerificationResult:
        from shipway.verify import run_checks

        try:
            name = self.endpoint_name(model)
            endpoint = self._endpoint(name)
            key = self._keys(name, endpoint)
        except (TargetError, KeyError) as exc:
            return VerificationResult(model, version, "", (Check("version", False, str(exc)),))
        scoring = str((endpoint.get("properties") or {}).get("scoringUri", ""))
        result = run_checks(self._version_check(model, name, version), self._sender(scoring, key, f"v{version}"),
                            model=model, version=version, url=scoring, features=features, offline=offline,
                            slo=slo, probe_seconds=self.context.probe_seconds)
        if not result.ok:
            return result
        return VerificationResult(model, version, scoring, (*result.checks, self.shift(model, version)))

    # ------------------------------------------------------------ traffic shift
    def _set_traffic(self, name: str, traffic: Mapping[str, int]) -> None:
        """Online Endpoints - Create Or Update with the new map, then wait for Succeeded."""
        endpoint = self._endpoint(name)
        body: dict[str, Any] = {k: endpoint[k] for k in ("location", "kind", "identity", "tags") if k in endpoint}
        props = dict(endpoint.get("properties") or {})
        for computed in ("provisioningState", "scoringUri", "swaggerUri"):
            props.pop(computed, None)
        body["properties"] = {**props, "traffic": dict(traffic)}
        self._arm("PUT", f"{self._workspace_path()}/onlineEndpoints/{name}", body=body)
        waited = 0.0
        while True:
            state = (self._endpoint(name).get("properties") or {}).get("provisioningState")
            if state == "Succeeded":
                return
            if state in ("Failed", "Canceled") or waited >= PROVISION_TIMEOUT_SECONDS:
                raise TargetError(f"traffic update of endpoint {name!r} ended {state} after {waited:.0f} s")
            sleep(POLL_SECONDS)
            waited += POLL_SECONDS

    def _firing(self, model: str) -> list[Alarm]:
        return [a for a in self.alarms(model) if a.state == "ALARM"]

    def shift(self, model: str, version: int) -> Check:
        """Move traffic to ``v<version>`` in ``azure.trafficSteps``, rolling back on a firing alert."""
        name, new = self.endpoint_name(model), f"v{version}"
        try:
            traffic = {k: int(v) for k, v in ((self._endpoint(name).get("properties") or {}).get("traffic")
                                              or {}).items()}
            old = sorted((pct, dep) for dep, pct in traffic.items() if dep != new and pct > 0)
            if not old:
                if traffic.get(new, 0) != 100:
                    self._set_traffic(name, {**{d: 0 for d in traffic}, new: 100})
                return Check("traffic", True, f"{new} receives 100% of traffic", {"steps": [100]})
            previous = old[-1][1]
            steps = list(self.config.azure.traffic_steps)
            if version in self.known_good(model):
                steps = [100]  # verified here before (a rollback): no reason to keep users on the bad one
            bake = float(self.config.azure.bake_minutes) * 60.0
            done: list[int] = []
            for pct in steps:
                self._set_traffic(name, {**{d: 0 for d in traffic}, previous: 100 - pct, new: pct})
                done.append(pct)
                watched = 0.0
                while True:
                    firing = self._firing(model)
                    if firing:
                        self._set_traffic(name, {**{d: 0 for d in traffic}, previous: 100})
                        names = ", ".join(f"{a.name} ({a.signal})" for a in firing)
                        return Check("traffic", False, f"alert firing at {pct}% on {new}: {names}; all traffic "
                                                       f"returned to {previous}",
                                     {"steps": done, "previous": previous, "alarms": [a.name for a in firing]})
                    if pct == 100 or watched >= bake:
                        break
                    wait = min(ALARM_POLL_SECONDS, bake - watched)
                    sleep(wait)
                    watched += wait
        except TargetError as exc:
            return Check("traffic", False, f"traffic shift to {new} failed: {exc}")
        return Check("traffic", True, f"{' -> '.join(f'{p}%' for p in steps)} on {new}, each step held "
                                      f"{self.config.azure.bake_minutes} min with no alert firing; "
                                      f"{previous} now at 0%", {"steps": steps, "previous": previous})

    # ---------------------------------------------------------------- rollback
    def known_good(self, model: str) -> list[int]:
        return known_good_from_audit(self.context.audit, self.outputs.environment, model)

    def alarms(self, model: str) -> list[Alarm]:
        """The stack's guardrail alerts for ``model`` and whether Azure Monitor has them fired."""
        names = [str(n) for n in self.outputs.target.get("alertNames") or [] if f"-{model}-" in f"{n}-"]
        if not names:
            return []
        found = self._arm("GET", f"/subscriptions/{self.subscription}/providers/Microsoft.AlertsManagement/alerts",
                          api_version=ALERTS_API_VERSION,
                          params={"targetResourceGroup": self.resource_group, "monitorCondition": "Fired"})
        fired = {str(((a.get("properties") or {}).get("essentials") or {}).get("alertRule", "")).rsplit("/", 1)[-1]
                 for a in found.get("value", [])}
        # Rule names carry the logical name (autonamed resources add a suffix).
        return [Alarm(n, alarm_signal(n), "ALARM" if any(f.startswith(n) for f in fired) else "OK") for n in names]

    def rollback_decision(self, model: str) -> RollbackDecision:
        return decide_from_alarms(model, self.config, self.known_good(model), lambda: self.alarms(model),
                                  unreadable="cannot read Azure Monitor alerts: ", store="Azure Monitor")
