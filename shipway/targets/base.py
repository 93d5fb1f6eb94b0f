"""The target-adapter protocol: one code path per platform for status, registry, verify, rollback.

``shipway env status``, ``shipway model promote/rollback`` and the GitOps workflows reach a
deployed environment only through a :class:`TargetAdapter` chosen by :func:`adapter_for` from
the stack's :class:`~shipway_core.outputs.PlatformOutputs` (its ``cloud``). An adapter never
runs ``pulumi up``: the engine step stays in :mod:`shipway.promotion` (injectable there), so
the same adapter serves a CLI on a laptop, a CI runner and a test against moto.

The results are small frozen dataclasses with ``as_dict()``: they are printed as JSON by the
CLI and stored in the audit trail, so their keys are part of the contract (docs/promotion.md,
"Target adapters").
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shipway_core.config import SloSettings, StackConfig
from shipway_core.outputs import PlatformOutputs

if TYPE_CHECKING:  # the registry imports MLflow lazily; adapters hand one out
    from shipway.audit import AuditLog
    from shipway.registry import Registry


class TargetError(RuntimeError):
    """A target operation could not be carried out; the message says what to fix."""


# ---------------------------------------------------------------------- results


@dataclass(frozen=True)
class EndpointState:
    """One model's endpoint as its platform reports it (``env status``)."""

    model: str
    name: str
    """The platform's name for the endpoint (SageMaker endpoint, Azure online endpoint, URL on local)."""
    served_version: int | None
    """The registry version the live endpoint serves (None: unknown or not ours)."""
    state: str
    """``up``, ``down``, ``updating``, ``failed`` or ``unknown``."""
    url: str
    traffic: Mapping[str, float] = field(default_factory=dict)
    """Traffic split between deployments/variants in percent (one entry at 100 when not shifting)."""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "traffic": dict(self.traffic)}


@dataclass(frozen=True)
class Check:
    """One verification check: its verdict, the sentence, the numbers."""

    name: str
    ok: bool
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VerificationResult:
    """All checks of one deployment verification; ``reason`` is the first failing check's message."""

    model: str
    version: int
    url: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def reason(self) -> str:
        return next((c.message for c in self.checks if not c.ok), "")

    def _slo(self, key: str) -> Any:
        slo = next((c for c in self.checks if c.name == "slo"), None)
        return None if slo is None else slo.data.get(key)

    @property
    def requests(self) -> int | None:
        """Probe requests sent (None when the probe did not run)."""
        return self._slo("requests")

    @property
    def error_rate(self) -> float | None:
        return self._slo("error_rate")

    @property
    def p99_ms(self) -> float | None:
        return self._slo("p99_ms")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "model": self.model,
            "version": self.version,
            "url": self.url,
            "reason": self.reason,
            "probe": {"requests": self.requests, "error_rate": self.error_rate, "p99_ms": self.p99_ms},
            "checks": {c.name: {"ok": c.ok, "message": c.message, **c.data} for c in self.checks},
        }


@dataclass(frozen=True)
class Alarm:
    """One guardrail alarm (error rate, p99 latency, drift) and its state."""

    name: str
    signal: str
    """``error_rate``, ``latency_p99``, ``drift`` or ``other``."""
    state: str
    """``ALARM``, ``OK`` or ``INSUFFICIENT_DATA`` (CloudWatch's words; other targets map to them)."""


@dataclass(frozen=True)
class RollbackDecision:
    """Whether the model should be rolled back now, decided from the target's alarms."""

    model: str
    rollback: bool
    reason: str
    alarms: tuple[Alarm, ...] = ()
    to_version: int | None = None
    """The last known-good version a rollback would pin (None: none is known)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PrepareResult:
    """The audited step that makes a version deployable in an environment (e.g. an artifact copy)."""

    model: str
    version: int
    action: str
    """``copied``, ``uploaded``, ``present`` (already there) or ``none`` (the target needs nothing)."""
    source: str = ""
    target: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def alarm_signal(name: str) -> str:
    """Which guardrail an alarm name watches (the names components/ give them)."""
    lowered = name.lower()
    for signal, words in (("error_rate", ("error", "5xx", "4xx")), ("latency_p99", ("latency", "p99")),
                          ("drift", ("drift", "psi"))):
        if any(w in lowered for w in words):
            return signal
    return "other"


def decide(model: str, alarms: Sequence[Alarm], to_version: int | None) -> RollbackDecision:
    """Roll back when any guardrail alarm is in ALARM; the same rule on every target."""
    firing = [a for a in alarms if a.state == "ALARM"]
    if not alarms:
        return RollbackDecision(model, False, "no guardrail alarms are defined for this endpoint", (), to_version)
    if firing:
        names = ", ".join(f"{a.name} ({a.signal})" for a in firing)
        where = f"version {to_version}" if to_version is not None else "no known-good version (pass --to N)"
        return RollbackDecision(model, True, f"alarm firing: {names}; roll back to {where}", tuple(alarms),
                                to_version)
    return RollbackDecision(model, False, f"{len(alarms)} guardrail alarms, none firing", tuple(alarms), to_version)


# --------------------------------------------------------------------- protocol


@dataclass
class AdapterContext:
    """What every adapter may need besides the stack's outputs; built by shipway.promotion.Services."""

    root: Path
    registry_factory: Callable[[str], Registry]
    tracking_uri: str | None = None
    """An explicit ``--tracking-uri``, which wins over the stack's registry."""
    audit: AuditLog | None = None
    probe_seconds: float = 10.0
    outputs_of: Callable[[str], PlatformOutputs | None] = lambda _env: None
    """Another environment's outputs (the source of an artifact copy), None when not deployed."""
    verifier: Callable[..., VerificationResult] | None = None
    """The local probe (tests inject one talking to an in-process endpoint)."""
    aws_session: Any = None
    """A ``boto3.Session`` for an assumed role; None uses the default credential chain."""
    aws_endpoint_url: str | None = None
    """An AWS API endpoint override (moto on 127.0.0.1 in tests); None for the real AWS."""


@runtime_checkable
class TargetAdapter(Protocol):
    """One deployed environment on one platform. Every method reports, none runs ``pulumi up``."""

    cloud: str
    outputs: PlatformOutputs
    config: StackConfig

    def status(self) -> dict[str, EndpointState]:
        """Every pinned model's endpoint state, read from the platform (never raises for a dead one)."""
        ...

    def registry(self) -> Registry:
        """The MLflow-API registry client this environment's pins refer to."""
        ...

    def preflight(self, pins: Mapping[str, int]) -> None:
        """Raise a clear error unless every pinned version exists and is READY (before every ``up``)."""
        ...

    def prepare(self, model: str, version: int) -> PrepareResult:
        """Make ``version`` deployable here (AWS: copy its package into the env's bucket)."""
        ...

    def verify(self, model: str, version: int, slo: SloSettings, *, features: Any = None,
               offline: Any = None) -> VerificationResult:
        """Version, smoke and SLO probe through the platform's invoke API."""
        ...

    def known_good(self, model: str) -> list[int]:
        """Versions that passed verification in this environment, newest first."""
        ...

    def rollback_decision(self, model: str) -> RollbackDecision:
        """Roll back now? Decided from the guardrail alarms (error rate, p99, drift)."""
        ...


def decide_from_alarms(model: str, config: StackConfig, known_good: Sequence[int],
                       read_alarms: Callable[[], Sequence[Alarm]], *, unreadable: str = "", store: str = "",
                       errors: tuple[type[BaseException], ...] = (TargetError,)) -> RollbackDecision:
    """Every target's ``rollback_decision``: the newest known-good version other than the pinned one
    is the target; alarms that cannot be read (``errors``, reported as ``unreadable`` + the error) or
    that are missing from ``store`` never roll back; otherwise :func:`decide`."""
    current = config.models[model].version if model in config.models else None
    good = [v for v in known_good if v != current]
    target = good[0] if good else None
    try:
        alarms = list(read_alarms())
    except errors as exc:
        return RollbackDecision(model, False, f"{unreadable}{exc}", (), target)
    missing = [a.name for a in alarms if a.state == "MISSING"]
    if missing:
        return RollbackDecision(model, False, f"rollback alarms missing in {store or 'the alarm store'}: "
                                f"{', '.join(missing)} (redeploy the stack)", tuple(alarms), target)
    return decide(model, alarms, target)


def known_good_from_audit(audit: AuditLog | None, env: str, model: str) -> list[int]:
    """Known-good versions are the audit trail's ``verify ok`` records, on every target."""
    return audit.known_good_versions(env, model) if audit is not None else []


def _plugged(module: str, cls: str, outputs: PlatformOutputs, config: StackConfig,
             context: AdapterContext) -> TargetAdapter:
    """Adapters written beside this one (shipway/targets/<cloud>.py), imported by name."""
    try:
        found = importlib.import_module(f"shipway.targets.{module}")
    except ModuleNotFoundError as exc:
        raise TargetError(f"cloud: {outputs.cloud!r} has no target adapter in this version of Shipway "
                          f"(shipway/targets/{module}.py); upgrade Shipway") from exc
    adapter: TargetAdapter = getattr(found, cls)(outputs, config, context)
    return adapter


def adapter_for(outputs: PlatformOutputs, config: StackConfig, context: AdapterContext) -> TargetAdapter:
    """The adapter for the stack's target (its ``cloud`` output)."""
    if outputs.cloud == "local":
        from shipway.targets.local import LocalAdapter

        return LocalAdapter(outputs, config, context)
    if outputs.cloud == "aws":
        from shipway.targets.aws import AwsAdapter

        return AwsAdapter(outputs, config, context)
    if outputs.cloud == "azure":
        return _plugged("azure", "AzureAdapter", outputs, config, context)
    if outputs.cloud == "kubernetes":
        return _plugged("kubernetes", "KubernetesAdapter", outputs, config, context)
    raise TargetError(f"cloud: {outputs.cloud!r} is not valid; expected local, aws, azure or kubernetes")
