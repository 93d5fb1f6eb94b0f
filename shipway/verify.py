"""Deployment verification: after `pulumi up`, prove the endpoint serves what the stack pins.

Three checks, in order (later ones are skipped when the endpoint cannot even say its
version, so a dead endpoint fails in milliseconds, not after a probe):

1. ``version``: ``GET /version`` reports the pinned version;
2. ``smoke``: predictions for golden rows from the endpoint equal the offline predictions of
   the same registry version (within ``tolerance`` for numbers), so the right artifact is
   loaded and its preprocessing is intact;
3. ``slo``: a probe of :func:`probe_requests` one-row requests (sized by
   statistics from the env's ``max_error_rate``; capped at ``probe_seconds``; two at a time on
   loopback) stays within the env's ``max_error_rate`` and ``latency_p99_ms``.

This module is the ``local`` target adapter's probe (``shipway.targets.local``). Its HTTP traffic
only ever goes to a loopback address: these checks run from the operator's machine against the
local platform, and must not be pointed at anything else by a stray output. The smoke and SLO
checks themselves (:func:`run_checks`) are shared with every other target, which sends the same
rows through its platform's invoke API instead (SageMaker ``InvokeEndpoint`` on AWS).

Endpoint contract assumed (kept in :class:`EndpointContract` so it is changed in one place):
``GET /version`` -> ``{"model_name": name, "model_version": N}`` (shipway.serving; also
accepted: ``version`` or ``{"models": {name: {"version": N}}}``); ``POST /invocations`` with MLflow's
``{"dataframe_split": {"columns": [...], "data": [...]}}`` -> ``{"predictions": [...]}`` or a
bare list; the API key is sent as ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import pandas as pd

from shipway.targets.base import Check as Check
from shipway.targets.base import VerificationResult as VerificationResult
from shipway_core.config import SloSettings

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class VerificationError(ValueError):
    """Verification was asked to do something it must not (e.g. probe a non-loopback host)."""


# Mirrors shipway.serving.app.TRAFFIC_HEADER / TRAFFIC_CLASSES (the serving app's contract).
TRAFFIC_HEADER = "X-Shipway-Traffic"
TRAFFIC_CLASS = "verification"


@dataclass(frozen=True)
class EndpointContract:
    """Paths and auth scheme of the serving app."""

    version_path: str = "/version"
    predict_path: str = "/invocations"
    health_path: str = "/health"
    timeout_s: float = 5.0

    def headers(self, api_key: str | None) -> dict[str, str]:
        # The traffic-class header (honoured with the API key) keeps verification requests out
        # of drift windows, the request log and the SLO series, so no alert fires because the
        # platform tested itself.
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return {**auth, TRAFFIC_HEADER: TRAFFIC_CLASS}


def require_loopback(url: str) -> None:
    """Refuse to send verification traffic anywhere but this machine."""
    host = urlparse(url).hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise VerificationError(
            f"endpoint url: {url!r} is not valid; verification only probes "
            f"loopback hosts ({', '.join(sorted(LOOPBACK_HOSTS))})"
        )


def served_version(payload: Any, model: str) -> int | None:
    """The version a ``/version`` payload reports for ``model`` (several shapes accepted)."""
    if not isinstance(payload, Mapping):
        return None
    name = payload.get("model_name", payload.get("model"))
    if isinstance(name, str) and name != model:
        return None  # the endpoint serves some other model: no version of ours
    models = payload.get("models")
    if isinstance(models, Mapping) and isinstance(models.get(model), Mapping):
        payload = models[model]
    for key in ("version", "model_version", "modelVersion"):
        value = payload.get(key)
        if isinstance(value, int | str) and not isinstance(value, bool) and str(value).isdigit():
            return int(value)
    return None


def _split(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "dataframe_split": {
            "columns": [str(c) for c in frame.columns],
            "data": frame.astype(object).where(frame.notna(), None).values.tolist(),
        }
    }


def _predictions(payload: Any) -> list[Any]:
    if isinstance(payload, Mapping):
        payload = payload.get("predictions", payload.get("outputs"))
    if not isinstance(payload, list):
        raise ValueError("response has no 'predictions' list")
    return payload


def _same(a: Any, b: Any, tolerance: float) -> bool:
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)
    return math.isclose(fa, fb, rel_tol=tolerance, abs_tol=tolerance)


def p99(latencies_ms: Sequence[float]) -> float:
    """Nearest-rank 99th percentile (no interpolation: a bound must be an observed value)."""
    if not latencies_ms:
        return 0.0
    ordered = sorted(latencies_ms)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class Verifier:
    """Runs the checks against one endpoint through an injectable ``httpx.Client``."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        contract: EndpointContract | None = None,
        client: httpx.Client | None = None,
    ):
        require_loopback(url)
        self.url = url.rstrip("/")
        self.contract = contract or EndpointContract()
        self.client = client or httpx.Client(timeout=self.contract.timeout_s)
        self.headers = self.contract.headers(api_key)

    def _post(self, frame: pd.DataFrame) -> list[Any]:
        resp = self.client.post(
            self.url + self.contract.predict_path, json=_split(frame), headers=self.headers
        )
        resp.raise_for_status()
        return _predictions(resp.json())

    def check_version(self, model: str, expected: int) -> Check:
        try:
            resp = self.client.get(self.url + self.contract.version_path, headers=self.headers)
            resp.raise_for_status()
            got = served_version(resp.json(), model)
        except (httpx.HTTPError, ValueError) as exc:
            return Check("version", False, f"GET {self.contract.version_path} failed: {exc}")
        if got != expected:
            return Check(
                "version",
                False,
                f"endpoint serves version {got} of '{model}', expected {expected}",
                {"served": got, "expected": expected},
            )
        return Check(
            "version",
            True,
            f"endpoint serves version {expected} of '{model}'",
            {"served": got, "expected": expected},
        )

    def check_smoke(
        self, features: pd.DataFrame, offline: Sequence[Any], version: int, tolerance: float
    ) -> Check:
        return smoke_check(self._post, features, offline, version, tolerance)

    def check_slo(
        self, features: pd.DataFrame, slo: SloSettings, probe_seconds: float, max_requests: int, workers: int = 1
    ) -> Check:
        return slo_check(self._post, features, slo, probe_seconds, max_requests, workers)


# The smoke and SLO checks are the same on every target; only how a frame reaches the endpoint
# differs (HTTP on loopback here, SageMaker InvokeEndpoint in shipway.targets.aws). ``send``
# returns the predictions or raises (any exception counts as a failed request).
Send = Callable[[pd.DataFrame], list[Any]]


def smoke_check(send: Send, features: pd.DataFrame, offline: Sequence[Any], version: int,
                tolerance: float) -> Check:
    """Endpoint predictions for golden rows equal the offline predictions of the same version."""
    try:
        online = send(features)
    except Exception as exc:
        return Check("smoke", False, f"smoke predictions failed: {exc}")
    if len(online) != len(offline):
        return Check(
            "smoke", False, f"endpoint returned {len(online)} predictions for {len(offline)} rows"
        )
    bad = [i for i, (a, b) in enumerate(zip(online, offline, strict=True)) if not _same(a, b, tolerance)]
    data = {"rows": len(offline), "mismatches": len(bad), "tolerance": tolerance}
    if bad:
        i = bad[0]
        return Check(
            "smoke",
            False,
            f"{len(bad)} of {len(offline)} smoke predictions differ from offline "
            f"predictions of version {version} (first: row {i}, endpoint "
            f"{online[i]!r} vs offline {offline[i]!r})",
            data,
        )
    return Check(
        "smoke",
        True,
        f"{len(offline)} smoke predictions match offline predictions of version {version}",
        data,
    )


def slo_check(send: Send, features: pd.DataFrame, slo: SloSettings, probe_seconds: float,
              max_requests: int, workers: int = 1) -> Check:
    """One-row requests within the env's error rate and p99 objectives.

    ``workers`` > 1 sends from that many threads at once (the local probe uses 2: the client's own
    work overlaps the server's on a second core). Each latency then includes any wait behind the
    other worker's request, so the p99 judged is, if anything, worse than a lone client's.
    """
    latencies: list[float] = []
    failures: list[int] = []
    deadline = time.monotonic() + probe_seconds
    rows = [features.iloc[[i]] for i in range(len(features))]
    numbers = itertools.count()  # next() is atomic: each request number goes to one worker

    def work() -> None:
        while time.monotonic() < deadline:
            n = next(numbers)
            if n >= max_requests:
                return
            start = time.perf_counter()
            try:
                send(rows[n % len(rows)])
            except Exception:
                failures.append(n)
            latencies.append((time.perf_counter() - start) * 1000.0)

    if workers <= 1:
        work()
    else:
        threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    errors = len(failures)
    total = len(latencies)
    rate = errors / total if total else 1.0
    tail = p99(latencies)
    data = {
        "requests": total,
        "errors": errors,
        "error_rate": rate,
        "p99_ms": tail,
        "max_error_rate": slo.max_error_rate,
        "latency_p99_ms": slo.latency_p99_ms,
    }
    problems = []
    if rate > slo.max_error_rate:
        problems.append(f"error rate {rate:.4f} > allowed {slo.max_error_rate:.4f} ({errors} of {total})")
    if tail > slo.latency_p99_ms:
        problems.append(f"p99 latency {tail:.1f} ms > allowed {slo.latency_p99_ms:.1f} ms")
    if problems:
        return Check("slo", False, "probe: " + "; ".join(problems), data)
    return Check(
        "slo",
        True,
        f"probe: {total} requests, error rate {rate:.4f} <= {slo.max_error_rate:.4f}, "
        f"p99 {tail:.1f} ms <= {slo.latency_p99_ms:.1f} ms",
        data,
    )


def probe_requests(slo: SloSettings, confidence: float = 0.95) -> int:
    """How many probe requests judge the env's error-rate and p99 objectives, by statistics.

    Error rate: with zero failures in n requests, the true rate is below ``max_error_rate`` with
    ``confidence`` once (1 - max_error_rate)^n <= 1 - confidence ("rule of three": n ~ 3/rate,
    299 for 1 %). p99: the empirical p99 of n samples rests on n/100 tail observations; at least
    three of them (n >= 300) keep one slow outlier from deciding alone. The larger n wins; more
    requests only cost time during an incident (rollback) or a release (promote).
    """
    rate = min(max(slo.max_error_rate, 1e-4), 0.5)
    for_errors = math.ceil(math.log(1 - confidence) / math.log(1 - rate))
    return max(for_errors, 300)


def verify_deployment(
    *,
    model: str,
    version: int,
    url: str,
    api_key: str | None,
    features: pd.DataFrame | None,
    offline: Sequence[Any] | np.ndarray | None,
    slo: SloSettings,
    probe_seconds: float = 10.0,
    max_probe_requests: int | None = None,
    tolerance: float = 1e-6,
    client: httpx.Client | None = None,
    contract: EndpointContract | None = None,
    probe_workers: int = 2,
) -> VerificationResult:
    """Run version, smoke and SLO checks; ``features``/``offline`` are golden rows and their
    offline predictions. No rows: smoke and probe are skipped and say so. Rows without offline
    predictions (a rollback to a version already verified here): the probe runs, the offline
    comparison is skipped and says why. The probe sends :func:`probe_requests` requests unless
    ``max_probe_requests`` says otherwise, and stops at ``probe_seconds`` whatever happens."""
    verifier = Verifier(url, api_key, contract=contract, client=client)
    return run_checks(verifier.check_version(model, version), verifier._post, model=model, version=version, url=url,
                      features=features, offline=offline, slo=slo, probe_seconds=probe_seconds,
                      max_probe_requests=max_probe_requests, tolerance=tolerance, probe_workers=probe_workers)


def run_checks(version_check: Check, send: Send, *, model: str, version: int, url: str,
               features: pd.DataFrame | None, offline: Sequence[Any] | np.ndarray | None, slo: SloSettings,
               probe_seconds: float, max_probe_requests: int | None = None,
               tolerance: float = 1e-6, probe_workers: int = 1) -> VerificationResult:
    """The verification every target runs once it knows what version the endpoint serves:
    smoke and SLO probe through ``send`` (skipped, and saying why, as :func:`verify_deployment` describes)."""
    checks = [version_check]
    if not version_check.ok:
        checks.append(Check("smoke", False, "skipped: endpoint did not report its version"))
        checks.append(Check("slo", False, "skipped: endpoint did not report its version"))
    elif features is None or len(features) == 0:
        checks.append(Check("smoke", True, "skipped: no golden dataset for this version"))
        checks.append(Check("slo", True, "skipped: no golden rows to probe with"))
    else:
        if offline is None:
            checks.append(Check("smoke", True, f"skipped: version {version} was verified here before (known-good); "
                                               "the probe checks it serves within the SLO"))
        else:
            checks.append(smoke_check(send, features, list(np.asarray(offline).tolist()), version, tolerance))
        requests = max_probe_requests if max_probe_requests is not None else probe_requests(slo)
        checks.append(slo_check(send, features, slo, probe_seconds, requests, probe_workers))
    return VerificationResult(model=model, version=version, url=url, checks=tuple(checks))


def probe_status(
    url: str,
    model: str,
    api_key: str | None = None,
    *,
    client: httpx.Client | None = None,
    contract: EndpointContract | None = None,
) -> dict[str, Any]:
    """Serving version and health for `env status`; an unreachable endpoint is 'down', not an error."""
    contract = contract or EndpointContract()
    try:
        require_loopback(url)
    except VerificationError:
        return {"health": "unknown", "serving_version": None, "detail": "not a loopback endpoint"}
    http = client or httpx.Client(timeout=2.0)
    headers = contract.headers(api_key)
    try:
        health = http.get(url.rstrip("/") + contract.health_path, headers=headers)
        version = http.get(url.rstrip("/") + contract.version_path, headers=headers)
    except httpx.HTTPError as exc:
        return {"health": "down", "serving_version": None, "detail": type(exc).__name__}
    served = None
    if version.status_code == 200:
        try:
            served = served_version(version.json(), model)
        except ValueError:
            served = None
    return {
        "health": "up" if health.status_code == 200 else f"unhealthy ({health.status_code})",
        "serving_version": served,
        "detail": "",
    }


# ------------------------------------------------------------- background follow-up

# A rollback's verification before it returns: the version check plus this many requests with
# the known-good rows (a dead, erroring or wrong endpoint fails it). It cannot judge the SLOs:
# zero errors in 10 requests bounds the error rate only below ~26 % (95 %), and a p99 needs
# >= 300 samples. The full probe (:func:`probe_requests`) follows in a detached process
# (:func:`follow_up`), whose verify record in the audit trail is the SLO verdict.
ROLLBACK_SMOKE_REQUESTS = 10


def follow_up(spec_path: Path) -> dict[str, Any]:
    """The full verification of a rolled-back version, after the command returned.

    ``spec_path`` is the JSON the rollback wrote (endpoint url and key file, SLOs, known-good
    rows, audit trail, the ``pending`` record it follows). Runs version + the statistically
    sized SLO probe and appends one ``verify`` record: ``ok`` or ``failed``, or ``superseded``
    when the stack file no longer pins this version (a later promotion or rollback moved it, so
    this version's verdict no longer describes the env and must not count as a failure).
    """
    from shipway.audit import AuditLog
    from shipway.stackfile import read_pins

    spec = json.loads(Path(spec_path).read_text())
    model, version = str(spec["model"]), int(spec["version"])
    key_file = spec.get("api_key_file")
    api_key = Path(key_file).read_text().strip() if key_file and Path(key_file).is_file() else None
    result = verify_deployment(model=model, version=version, url=spec["url"], api_key=api_key,
                               features=pd.read_csv(spec["rows"]), offline=None, slo=SloSettings(**spec["slo"]),
                               probe_seconds=float(spec["probe_seconds"]))
    outcome = "ok" if result.ok else "failed"
    if not result.ok and read_pins(Path(spec["stack_file"])).get(model) != version:
        outcome = "superseded"
    details = {"follows": spec["follows"], "background": True}
    record = AuditLog(Path(spec["audit_path"])).append(
        actor=spec["actor"], action="verify", env=spec["env"], model=model, to_version=version, outcome=outcome,
        reason=spec["reason"], commit=spec.get("commit"), verification=result.as_dict(), details=details)
    return {"seq": record["seq"], "outcome": outcome, "reason": result.reason}


if __name__ == "__main__":  # python -m shipway.verify SPEC.json: what a rollback starts in the background
    import sys

    print(json.dumps(follow_up(Path(sys.argv[1]))), flush=True)
