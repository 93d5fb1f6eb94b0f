"""The Kubernetes target's adapter: Deployments read and models invoked through the API server.

The adapter talks only to the cluster's API server, with the credentials of a kubeconfig:
``$KUBECONFIG`` (or ``~/.kube/config``) and the context the stack file names in
``kubernetes:context`` (the same one the Pulumi provider uses), else the kubeconfig's current
context. It never assumes it can reach a pod or a Service address directly:

* **status** and the **version check** read the model's Deployment (``serve-<model>``): the
  version its pod template serves (``SHIPWAY_MODEL_VERSION``) and whether the rollout finished
  (every replica updated, ready and available for the current generation);
* **verification traffic** (smoke + SLO probe) goes through the API server's Service proxy,
  ``/api/v1/namespaces/<ns>/services/serve-<model>:http/proxy/invocations``, with the endpoint's
  API key read from its Secret — what an operator with the deploy identity can do from CI;
* **rollback decisions** come from the alerts of the environment's Alertmanager, reached through
  the same proxy (Service ``alertmanager-operated``, port ``web``, in ``kubernetes.monitoringNamespace``:
  what the Prometheus Operator creates).

Tested end to end against the real control plane of tests/support/kubecluster.py: ``env status``,
``model promote --apply`` and ``model rollback`` through the CLI, with the verification traffic
going through the real API server's Service proxy to the serving pods, which
tests/support/podruntime.py runs as local processes behind the API server's egress
(tests/integration/test_kubernetes_promotion.py); the request shapes also against a stand-in
API server (tests/unit/test_kubernetes_adapter.py).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import requests
import yaml

from shipway.targets.base import (
    AdapterContext,
    Alarm,
    Check,
    EndpointState,
    PrepareResult,
    TargetError,
    VerificationResult,
    alarm_signal,
)
from shipway.targets.local import MlflowRegistryAdapter
from shipway_core.config import SloSettings, StackConfig
from shipway_core.outputs import PlatformOutputs

if TYPE_CHECKING:
    from shipway.registry import Registry

VERSION_ENV = "SHIPWAY_MODEL_VERSION"
ALERTMANAGER_SERVICE = "alertmanager-operated:web"  # the Prometheus Operator's Alertmanager Service
API_KEY_DATA_KEY = "value"  # every Shipway Secret holds one value under this key (components/kubernetes/podspec.py)


class KubeApi:
    """The few API-server calls the adapter makes, authenticated from one kubeconfig context."""

    def __init__(self, kubeconfig: Path, context: str | None = None, timeout: float = 15.0):
        try:
            doc = yaml.safe_load(kubeconfig.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise TargetError(f"kubeconfig {kubeconfig} cannot be read ({exc}); set KUBECONFIG") from exc
        name = context or doc.get("current-context")
        contexts = {c["name"]: c["context"] for c in doc.get("contexts") or []}
        if name not in contexts:
            raise TargetError(f"kubernetes:context: {name!r} is not a context of {kubeconfig} "
                              f"(it has: {', '.join(sorted(contexts)) or 'none'}); fix the stack's "
                              "kubernetes:context or KUBECONFIG")
        ctx = contexts[name]
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user: dict[str, Any] = next((u["user"] for u in doc.get("users") or [] if u["name"] == ctx.get("user")), {})
        self.server = str(cluster["server"]).rstrip("/")
        self.timeout = timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="shipway-kube-")
        self.verify: str | bool = self._file(cluster, "certificate-authority", kubeconfig) or True
        cert, key = self._file(user, "client-certificate", kubeconfig), self._file(user, "client-key", kubeconfig)
        self.cert = (cert, key) if cert and key else None
        self.headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}

    def _file(self, section: Mapping[str, Any], key: str, kubeconfig: Path) -> str | None:
        """A kubeconfig path field (relative to the kubeconfig) or its inline ``-data`` twin."""
        if section.get(key):
            path = Path(section[key])
            return str(path if path.is_absolute() else kubeconfig.parent / path)
        if section.get(f"{key}-data"):
            out = Path(self._tmp.name) / key
            out.write_bytes(base64.b64decode(section[f"{key}-data"]))
            out.chmod(0o600)
            return str(out)
        return None

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        try:
            return requests.request(method, self.server + path, json=body, timeout=self.timeout,
                                    cert=self.cert, verify=self.verify, headers=self.headers)
        except requests.RequestException as exc:
            raise TargetError(f"Kubernetes API server {self.server} unreachable: {exc}") from exc

    def get(self, path: str) -> dict[str, Any] | None:
        resp = self.call("GET", path)
        if resp.status_code == 404:
            return None
        if not resp.ok:
            raise TargetError(f"GET {path} on {self.server}: {resp.status_code} {resp.text[:300]}")
        data: dict[str, Any] = resp.json()
        return data


def rollout(deployment: Mapping[str, Any]) -> tuple[str, str]:
    """(state, detail) of a Deployment: ``up`` once the current generation is fully rolled out."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    generation = int((deployment.get("metadata") or {}).get("generation", 0))
    counts = {k: int(status.get(k) or 0) for k in ("updatedReplicas", "readyReplicas", "availableReplicas")}
    detail = (f"{counts['updatedReplicas']}/{want} updated, {counts['readyReplicas']} ready, "
              f"{counts['availableReplicas']} available")
    if int(status.get("observedGeneration") or 0) < generation or counts["updatedReplicas"] < want:
        return "updating", detail
    if counts["availableReplicas"] == 0:
        return "down", detail
    if counts["readyReplicas"] < want or status.get("unavailableReplicas"):
        return "updating", detail
    return "up", detail


def template_version(deployment: Mapping[str, Any]) -> int | None:
    """The registry version the Deployment's pod template serves."""
    for container in ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers", []):
        for env in container.get("env") or []:
            if env.get("name") == VERSION_ENV and str(env.get("value", "")).isdigit():
                return int(env["value"])
    return None


class KubernetesAdapter(MlflowRegistryAdapter):
    """The ``kubernetes`` target: one namespace, one Deployment + Service per pinned model."""

    cloud = "kubernetes"

    def __init__(self, outputs: PlatformOutputs, config: StackConfig, context: AdapterContext,
                 api: KubeApi | None = None):
        self.outputs, self.config, self.context = outputs, config, context
        namespace = outputs.target.get("namespace")
        if not isinstance(namespace, str) or not namespace:
            raise TargetError(f"target.namespace: {namespace!r} is not valid; redeploy stack "
                              f"'{outputs.environment}' (the Kubernetes target exports its namespace)")
        self.namespace = namespace
        self._api = api
        self._registry: Registry | None = None

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(kubeconfig_path(), stack_context(self.context.root, self.config.stack))
        return self._api

    def deployment_name(self, model: str) -> str:
        endpoint = self.outputs.endpoints.get(model)
        if endpoint is None:
            raise TargetError(f"stack '{self.outputs.environment}' has no endpoint output for '{model}'")
        return endpoint.status.split("/", 1)[1]  # kubernetes:<namespace>/<deployment>

    def _deployment(self, model: str) -> tuple[str, dict[str, Any] | None]:
        name = self.deployment_name(model)
        return name, self.api.get(f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}")

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, EndpointState]:
        out: dict[str, EndpointState] = {}
        for model in sorted(set(self.config.models) | set(self.outputs.endpoints)):
            url = self.outputs.endpoints[model].url if model in self.outputs.endpoints else ""
            try:
                name, dep = self._deployment(model)
            except TargetError as exc:
                out[model] = EndpointState(model, "", None, "unknown", url, {}, str(exc))
                continue
            if dep is None:
                out[model] = EndpointState(model, name, None, "down", url, {},
                                           f"Deployment {self.namespace}/{name} not found")
                continue
            state, detail = rollout(dep)
            out[model] = EndpointState(model, f"{self.namespace}/{name}", template_version(dep), state, url,
                                       {"serving": 100.0} if state == "up" else {}, detail)
        return out

    # ---------------------------------------------------------------- registry
    def prepare(self, model: str, version: int) -> PrepareResult:
        # Pods load the version from the stack's registry (shipway:registryUri): nothing to copy.
        return PrepareResult(model, version, "none", f"registry {self.registry().tracking_uri}", "")

    # ------------------------------------------------------------------ verify
    def _version_check(self, model: str, expected: int) -> Check:
        try:
            name, dep = self._deployment(model)
        except TargetError as exc:
            return Check("version", False, str(exc))
        if dep is None:
            return Check("version", False, f"Deployment {self.namespace}/{model} not found; run `pulumi up`")
        state, detail = rollout(dep)
        served = template_version(dep)
        data = {"served": served, "expected": expected, "rollout": detail, "state": state}
        where = f"Deployment {self.namespace}/{name}"
        if served != expected:
            return Check("version", False, f"{where} serves version {served} of '{model}', expected {expected}", data)
        if state != "up":
            return Check("version", False, f"{where} has not finished rolling out version {expected} ({detail})",
                         data)
        return Check("version", True, f"{where} rolled out version {expected} of '{model}' ({detail})", data)

    def api_key(self, model: str) -> str | None:
        """The endpoint's API key, from the Secret named by its ``apiKeyRef`` output."""
        ref = self.outputs.endpoints[model].api_key_ref if model in self.outputs.endpoints else None
        if not ref:
            return None
        secret = self.api.get(f"/api/v1/namespaces/{self.namespace}/secrets/{ref}")
        data = (secret or {}).get("data") or {}
        return base64.b64decode(data[API_KEY_DATA_KEY]).decode() if API_KEY_DATA_KEY in data else None

    def invocations_path(self, model: str) -> str:
        return (f"/api/v1/namespaces/{self.namespace}/services/"
                f"{self.deployment_name(model)}:http/proxy/invocations")

    def _send(self, model: str) -> Any:
        from shipway.verify import TRAFFIC_CLASS, _predictions, _split

        key, path = self.api_key(model), self.invocations_path(model)

        def send(frame: pd.DataFrame) -> list[Any]:
            headers = {**self.api.headers, "Content-Type": "application/json", "X-Shipway-Traffic": TRAFFIC_CLASS}
            if key:
                # The API server consumes `Authorization`; the app also accepts the key in X-Api-Key.
                headers["X-Api-Key"] = key
            resp = requests.post(self.api.server + path, data=json.dumps(_split(frame)), headers=headers,
                                 cert=self.api.cert, verify=self.api.verify, timeout=self.api.timeout)
            resp.raise_for_status()
            return _predictions(resp.json())

        return send

    def verify(self, model: str, version: int, slo: SloSettings, *, features: Any = None,
               offline: Any = None) -> VerificationResult:
        from shipway.verify import run_checks

        check = self._version_check(model, version)
        send = self._send(model) if check.ok and features is not None and len(features) else None
        return run_checks(check, send or (lambda _frame: []), model=model, version=version,
                          url=f"kubernetes:{self.namespace}/{model}", features=features, offline=offline,
                          slo=slo, probe_seconds=self.context.probe_seconds)

    # ---------------------------------------------------------------- rollback
    def alarms(self, model: str) -> list[Alarm]:
        """Firing alerts for ``model`` in the environment's Alertmanager, through the API server proxy."""
        ns = self.config.kubernetes.monitoring_namespace
        path = (f"/api/v1/namespaces/{ns}/services/{ALERTMANAGER_SERVICE}/proxy/api/v2/alerts"
                f"?filter=model%3D%22{model}%22")
        resp = self.api.call("GET", path)
        if not resp.ok:
            raise TargetError(f"Alertmanager via {path}: {resp.status_code} {resp.text[:200]}")
        out = []
        for alert in resp.json():
            name = str((alert.get("labels") or {}).get("alertname", "?"))
            active = (alert.get("status") or {}).get("state") == "active"
            out.append(Alarm(name, alarm_signal(name), "ALARM" if active else "OK"))
        return out



def kubeconfig_path() -> Path:
    """``$KUBECONFIG`` (its first entry) or ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG", "")
    return Path(env.split(os.pathsep)[0]) if env else Path.home() / ".kube" / "config"


def stack_context(root: Path, stack: str) -> str | None:
    """The ``kubernetes:context`` the stack file names (what the Pulumi provider deploys to)."""
    path = root / "stacks" / f"Pulumi.{stack}.yaml"
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    value = (doc.get("config") or {}).get("kubernetes:context")
    return str(value) if value else None
