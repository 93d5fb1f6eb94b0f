"""The local target's adapter: the serving processes on 127.0.0.1, the stack's MLflow server.

Verification is :mod:`shipway.verify`'s loopback probe (the only place loopback is allowed);
alarms are the firing alerts the stack's Alertmanager holds for the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
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
from shipway_core.outputs import EndpointOutputs, PlatformOutputs

if TYPE_CHECKING:
    from shipway.registry import Registry


def local_api_key(endpoint: EndpointOutputs) -> str | None:
    """The local target keeps an endpoint's API key in a 0600 file named by ``apiKeyRef``."""
    ref = endpoint.api_key_ref
    return Path(ref).read_text().strip() if ref and ref.startswith("/") and Path(ref).is_file() else None


def registry_uri(outputs: PlatformOutputs, config: StackConfig, context: AdapterContext) -> str:
    """Explicit ``--tracking-uri`` > the stack's configured registry > the stack's ``registryUri`` output."""
    return context.tracking_uri or config.registry_uri or outputs.registry_uri


class MlflowRegistryAdapter:
    """What every adapter whose registry is an MLflow server (``registry_uri``) shares: the registry
    client, the pre-flight, known-good versions from the audit trail, and the rollback decision from
    ``self.alarms`` (which raises TargetError when the alarms cannot be read)."""

    outputs: PlatformOutputs
    config: StackConfig
    context: AdapterContext
    _registry: Registry | None = None

    def alarms(self, model: str) -> list[Alarm]:
        raise NotImplementedError

    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self.context.registry_factory(registry_uri(self.outputs, self.config, self.context))
        return self._registry

    def preflight(self, pins: Mapping[str, int]) -> None:
        registry = self.registry()
        for name, version in sorted(pins.items()):
            registry.require_ready(name, version)

    def known_good(self, model: str) -> list[int]:
        return known_good_from_audit(self.context.audit, self.outputs.environment, model)

    def rollback_decision(self, model: str) -> RollbackDecision:
        return decide_from_alarms(model, self.config, self.known_good(model), lambda: self.alarms(model))


class LocalAdapter(MlflowRegistryAdapter):
    """The ``local`` target (processes on this machine)."""

    cloud = "local"

    def __init__(self, outputs: PlatformOutputs, config: StackConfig, context: AdapterContext):
        self.outputs, self.config, self.context = outputs, config, context
        self._registry: Registry | None = None

    def _endpoint(self, model: str) -> EndpointOutputs:
        endpoint = self.outputs.endpoints.get(model)
        if endpoint is None:
            raise TargetError(f"stack '{self.outputs.environment}' has no endpoint output for '{model}'")
        return endpoint

    def status(self) -> dict[str, EndpointState]:
        from shipway.verify import probe_status

        out: dict[str, EndpointState] = {}
        for model in sorted(set(self.config.models) | set(self.outputs.endpoints)):
            endpoint = self.outputs.endpoints.get(model)
            if endpoint is None:
                out[model] = EndpointState(model, "", None, "down", "", {}, "no endpoint output")
                continue
            probed = probe_status(endpoint.status, model, local_api_key(endpoint))
            health = str(probed["health"])
            state = "up" if health == "up" else ("down" if health == "down" else "unknown")
            out[model] = EndpointState(model, endpoint.status, probed["serving_version"], state, endpoint.url,
                                       {"serving": 100.0} if state == "up" else {}, probed.get("detail") or
                                       ("" if state == "up" else health))
        return out

    def prepare(self, model: str, version: int) -> PrepareResult:
        # The serving process loads the version straight from the stack's own registry.
        return PrepareResult(model, version, "none", f"registry {self.registry().tracking_uri}", "")

    def endpoint(self, model: str) -> EndpointOutputs:
        """The model's endpoint outputs (url, apiKeyRef); TargetError when the stack has none."""
        return self._endpoint(model)

    def verify(self, model: str, version: int, slo: SloSettings, *, features: Any = None,
               offline: Any = None, max_probe_requests: int | None = None) -> VerificationResult:
        """``max_probe_requests`` makes the SLO probe a smoke probe (a rollback's, whose full probe
        follows in the background: shipway.verify.follow_up); by default it is sized by statistics."""
        from shipway.verify import verify_deployment

        try:
            endpoint = self._endpoint(model)
        except TargetError as exc:
            return VerificationResult(model, version, "", (Check("version", False, str(exc)),))
        verifier = self.context.verifier or verify_deployment
        limit: dict[str, Any] = {} if max_probe_requests is None else {"max_probe_requests": max_probe_requests}
        result: VerificationResult = verifier(model=model, version=version, url=endpoint.url,
                                              api_key=local_api_key(endpoint), features=features, offline=offline,
                                              slo=slo, probe_seconds=self.context.probe_seconds, **limit)
        return result

    def alarms(self, model: str) -> list[Alarm]:
        """Alerts the stack's Alertmanager holds for ``model`` (firing ones are in ALARM)."""
        url = self.outputs.observability.alerts_url
        if not url:
            return []
        try:
            resp = httpx.get(url.rstrip("/") + "/api/v2/alerts", params={"filter": f'model="{model}"'}, timeout=3.0)
            resp.raise_for_status()
            alerts = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TargetError(f"cannot read alerts from {url}: {exc}") from exc
        out = []
        for alert in alerts if isinstance(alerts, list) else []:
            name = str((alert.get("labels") or {}).get("alertname", "?"))
            active = (alert.get("status") or {}).get("state") == "active"
            out.append(Alarm(name, alarm_signal(name), "ALARM" if active else "OK"))
        return out

