"""Non-functional tests of a candidate model version: load, resilience, security.

A data scientist runs them on the paved path (``shipway test load|resilience|security MODEL
--version N``) against the candidate served as a real serving process on this machine
(:class:`CandidateServer`), or against an environment's endpoint. Each returns a
:class:`Result` whose ``passed`` is judged against the environment's SLOs; the CLI stores it as
gate evidence on the version (registry tag ``shipway.nft.<kind>``), and
``gates.requireNonFunctional`` in a stack file makes passing evidence a promotion gate
(:func:`missing_evidence`).

* **load**: an open-loop paced load at a target rate (requests are scheduled at ``i / rps``
  whether or not earlier ones returned, so a slow server shows up as latency, not as a lower
  offered rate); p50/p95/p99 latency and errors by status against the SLO.
* **resilience**: malformed and oversized inputs must get 4xx (never a 5xx or a dropped
  connection) and leave the server healthy; the serving process is killed and restarted under
  load, counting the requests lost and the time to recover; a dependency down (trace collector
  unreachable, registry unreachable on reload) must not fail a single request.
* **security**: no key, a wrong key and another environment's key are refused with 401 on every
  authenticated route, the right key works, headers leak no server software, and an https
  endpoint presents a certificate that verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from shipway_core.config import NONFUNCTIONAL_KINDS, SloSettings

TAG_PREFIX = "shipway.nft."
REQUEST_TIMEOUT = 5.0


class NonFunctionalError(RuntimeError):
    """The test could not run (candidate did not start, bad payload); the message says why."""


@dataclass(frozen=True)
class Target:
    """Where the candidate answers and the keys to try."""

    base_url: str
    api_key: str | None
    other_env_key: str | None = None

    @property
    def invocations(self) -> str:
        return self.base_url.rstrip("/") + "/invocations"

    def auth(self, key: str | None = None) -> dict[str, str]:
        chosen = self.api_key if key is None else key
        return {"Authorization": f"Bearer {chosen}"} if chosen else {}


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Result:
    """One test's outcome: the checks, the figures and whether it passed."""

    kind: str
    model: str
    version: int
    target: str
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "version": self.version, "target": self.target,
                "passed": self.passed, "at": self.at, "figures": self.figures,
                "checks": [asdict(c) for c in self.checks]}

    def evidence_tag(self) -> dict[str, str]:
        """The registry tag the CLI stores: the whole result as compact JSON."""
        return {TAG_PREFIX + self.kind: json.dumps(self.as_dict(), separators=(",", ":"), default=str)}


def missing_evidence(tags: Mapping[str, str], required: tuple[str, ...]) -> list[str]:
    """For the promotion gate: why each required non-functional test is not satisfied (empty = ok)."""
    problems = []
    for kind in required:
        raw = tags.get(TAG_PREFIX + kind)
        if raw is None:
            problems.append(f"{kind}: no evidence; run `shipway test {kind} MODEL --version N`")
            continue
        try:
            passed = bool(json.loads(raw).get("passed"))
        except (ValueError, AttributeError):
            passed = False
        if not passed:
            problems.append(f"{kind}: the last run failed (tag {TAG_PREFIX + kind})")
    return problems


# ---------------------------------------------------------------------- load


@dataclass(frozen=True)
class Sample:
    """One request: when it was sent (seconds from the start), its status (0 = no response)."""

    sent: float
    status: int
    ms: float
    error: str = ""


async def _paced(url: str, headers: Mapping[str, str], body: bytes, rps: float, seconds: float,
                 concurrency: int) -> tuple[list[Sample], float]:
    """Open-loop load: request ``i`` is due at ``i / rps``; returns the samples and the wall time."""
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {**headers, "content-type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT) as client:
        gate = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, t0 + i / rps - loop.time()))
            async with gate:
                start = time.perf_counter()
                sent = loop.time() - t0
                try:
                    response = await client.post(url, content=body, headers=headers)
                    samples.append(Sample(sent, response.status_code, (time.perf_counter() - start) * 1000))
                except httpx.HTTPError as exc:
                    samples.append(Sample(sent, 0, (time.perf_counter() - start) * 1000, type(exc).__name__))

        await asyncio.gather(*(one(i) for i in range(max(1, int(rps * seconds)))))
        return samples, loop.time() - t0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every reported figure is a measured request)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


def summarise(samples: list[Sample], wall: float) -> dict[str, Any]:
    ok = [s.ms for s in samples if s.status == 200]
    errors = Counter(str(s.status) if s.status else s.error for s in samples if s.status != 200)
    return {"requests": len(samples), "ok": len(ok), "errors": dict(errors),
            "error_rate": round(1 - len(ok) / len(samples), 5) if samples else None,
            "achieved_rps": round(len(samples) / wall, 1) if wall > 0 else None,
            "p50_ms": _r(percentile(ok, 50)), "p95_ms": _r(percentile(ok, 95)), "p99_ms": _r(percentile(ok, 99))}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def load_test(target: Target, body: bytes, slo: SloSettings, *, model: str, version: int, rps: float,
              seconds: float, concurrency: int = 16) -> Result:
    """Paced load at ``rps`` for ``seconds``; passes when p99, error rate and the rate meet the SLO."""
    if rps <= 0 or seconds <= 0:
        raise NonFunctionalError(f"--rps {rps} and --seconds {seconds} must be positive")
    samples, wall = asyncio.run(_paced(target.invocations, target.auth(), body, rps, seconds, concurrency))
    figures = {"target_rps": rps, "seconds": seconds, "concurrency": concurrency, **summarise(samples, wall)}
    result = Result("load", model, version, target.base_url, figures=figures)
    p99, rate, achieved = figures["p99_ms"], figures["error_rate"], figures["achieved_rps"] or 0.0
    result.checks += [
        Check("latency_p99", p99 is not None and p99 <= slo.latency_p99_ms,
              f"p99 {p99} ms (SLO {slo.latency_p99_ms} ms)"),
        Check("error_rate", rate is not None and rate <= slo.max_error_rate,
              f"error rate {rate} (SLO {slo.max_error_rate}); errors {figures['errors']}"),
        # The generator must actually offer the rate, or a "pass" would be about less traffic.
        Check("offered_rate", achieved >= 0.9 * rps, f"achieved {achieved} rps of {rps} requested"),
    ]
    return result


# ---------------------------------------------------------------------- resilience


def malformed_payloads(body: bytes, max_rows: int, max_body_bytes: int) -> dict[str, bytes]:
    """Inputs a caller gets wrong, each of which must be refused with a 4xx."""
    doc = json.loads(body)
    split = doc.get("dataframe_split")
    cases: dict[str, bytes] = {
        "not_json": b"{not json",
        "empty_object": b"{}",
        "unknown_key": json.dumps({"rows": [[1, 2]]}).encode(),
        "oversized_body": b'{"inputs": "' + b"x" * max_body_bytes + b'"}',
    }
    if isinstance(split, dict) and split.get("columns") and split.get("data"):
        row = split["data"][0]
        cases["missing_column"] = json.dumps({"dataframe_split": {"columns": split["columns"][1:],
                                                                  "data": [row[1:]]}}).encode()
        cases["wrong_type"] = json.dumps({"dataframe_split": {"columns": split["columns"],
                                                              "data": [["text"] * len(row)]}}).encode()
        cases["too_many_rows"] = json.dumps({"dataframe_split": {"columns": split["columns"],
                                                                 "data": [row] * (max_rows + 1)}}).encode()
    return cases


def check_malformed(target: Target, body: bytes, max_rows: int, max_body_bytes: int) -> list[Check]:
    checks = []
    with httpx.Client(timeout=REQUEST_TIMEOUT * 2) as client:
        for name, payload in malformed_payloads(body, max_rows, max_body_bytes).items():
            try:
                status = client.post(target.invocations, content=payload, headers={
                    **target.auth(), "content-type": "application/json"}).status_code
            except httpx.HTTPError as exc:
                checks.append(Check(f"malformed:{name}", False, f"connection failed: {type(exc).__name__}"))
                continue
            checks.append(Check(f"malformed:{name}", 400 <= status < 500, f"HTTP {status} (expected 4xx)"))
        healthy = client.post(target.invocations, content=body, headers={
            **target.auth(), "content-type": "application/json"}).status_code
    checks.append(Check("healthy_after_malformed", healthy == 200, f"a valid request then got HTTP {healthy}"))
    return checks


def kill_under_load(target: Target, body: bytes, server: CandidateServer, *, rps: float, seconds: float,
                    max_recovery_seconds: float) -> tuple[Check, dict[str, Any]]:
    """SIGKILL the serving process a third of the way in, restart it, count what was lost."""
    kill_at = seconds / 3

    async def scenario() -> tuple[list[Sample], float, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def chaos() -> float:
            await asyncio.sleep(kill_at)
            killed = loop.time() - t0
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start, False)
            return killed

        (samples, wall), killed = await asyncio.gather(
            _paced(target.invocations, target.auth(), body, rps, seconds, 8), chaos())
        return samples, wall, killed

    started = time.monotonic()
    samples, wall, killed = asyncio.run(scenario())
    after = [s for s in samples if s.sent >= killed]
    recovered = next((s.sent for s in after if s.status == 200), None)
    if recovered is None:  # a restart slower than the load window: keep probing up to the limit
        recovered = _probe_until_ok(target, body, started + killed + max_recovery_seconds)
        recovered = None if recovered is None else recovered - started
    lost = sum(1 for s in samples if s.status != 200)
    recovery = None if recovered is None else round(recovered - killed, 3)
    figures = {"requests": len(samples), "requests_lost": lost, "recovery_seconds": recovery,
               "killed_at_seconds": round(killed, 3), **{k: v for k, v in summarise(samples, wall).items()
                                                         if k in ("errors", "p99_ms")}}
    ok = recovery is not None and recovery <= max_recovery_seconds
    return Check("kill_and_restart", ok, f"{lost} of {len(samples)} requests lost; recovered after "
                 f"{recovery} s (limit {max_recovery_seconds} s)"), figures


def _probe_until_ok(target: Target, body: bytes, deadline: float) -> float | None:
    """``time.monotonic()`` of the first successful request before ``deadline``, else None."""
    headers = {**target.auth(), "content-type": "application/json"}
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.post(target.invocations, content=body, headers=headers).status_code == 200:
                    return time.monotonic()
            time.sleep(0.1)
    return None


def dependency_down(target: Target, body: bytes, server: CandidateServer, seconds: float = 2.0) -> Check:
    """Point the pin at an unreachable registry and reload: the loaded version keeps answering."""
    server.break_registry()
    samples, wall = asyncio.run(_paced(target.invocations, target.auth(), body, 20, seconds, 4))
    bad = sum(1 for s in samples if s.status != 200)
    return Check("dependency_down", bad == 0 and bool(samples),
                 f"registry unreachable on reload and trace collector down: {bad} of {len(samples)} failed")


def resilience_test(target: Target, body: bytes, *, model: str, version: int, server: CandidateServer | None,
                    max_rows: int = 10_000, max_body_bytes: int = 32 * 1024 * 1024, rps: float = 20,
                    seconds: float = 9, max_recovery_seconds: float = 30) -> Result:
    result = Result("resilience", model, version, target.base_url)
    result.checks += check_malformed(target, body, max_rows, max_body_bytes)
    if server is None:
        result.checks.append(Check("kill_and_restart", True, "skipped: the endpoint is not a process this run "
                                   "owns (run against the local candidate to include it)"))
        return result
    check, figures = kill_under_load(target, body, server, rps=rps, seconds=seconds,
                                     max_recovery_seconds=max_recovery_seconds)
    result.checks.append(check)
    result.figures.update(figures)
    result.checks.append(dependency_down(target, body, server))
    return result


# ---------------------------------------------------------------------- security

AUTHENTICATED_ROUTES = (("POST", "/invocations"), ("POST", "/drift/reset"))


def security_test(target: Target, body: bytes, *, model: str, version: int) -> Result:
    result = Result("security", model, version, target.base_url)
    attempts: list[tuple[str, str | None]] = [("no_key", ""), ("wrong_key", "not-the-key-" + "0" * 20)]
    if target.other_env_key:
        attempts.append(("other_env_key", target.other_env_key))
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        for method, route in AUTHENTICATED_ROUTES:
            url = target.base_url.rstrip("/") + route
            for name, key in attempts:
                headers = {**(target.auth(key) if key else {}), "content-type": "application/json"}
                status = client.request(method, url, content=body, headers=headers).status_code
                result.checks.append(Check(f"{name}:{route}", status == 401, f"HTTP {status} (expected 401)"))
        good = client.post(target.invocations, content=body, headers={**target.auth(),
                                                                      "content-type": "application/json"})
        result.checks.append(Check("right_key", good.status_code == 200, f"HTTP {good.status_code} with the key"))
        leaked = [h for h in ("server", "x-powered-by") if h in good.headers]
        result.checks.append(Check("no_server_banner", not leaked, f"headers naming the software: {leaked or 'none'}"))
        wrong_method = client.get(target.base_url.rstrip("/") + "/invocations")
        result.checks.append(Check("wrong_method", wrong_method.status_code == 405,
                                   f"GET /invocations -> HTTP {wrong_method.status_code} (expected 405)"))
    if target.base_url.startswith("https://"):
        try:
            httpx.get(target.base_url.rstrip("/") + "/ping", timeout=REQUEST_TIMEOUT, verify=True)
            result.checks.append(Check("tls_certificate", True, "certificate verifies"))
        except httpx.ConnectError as exc:
            result.checks.append(Check("tls_certificate", False, f"TLS failed: {exc}"))
    else:
        result.figures["tls"] = "not configured (http endpoint on 127.0.0.1)"
    return result


# ---------------------------------------------------------------------- the candidate process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CandidateServer:
    """The candidate version served by the real serving process on a free 127.0.0.1 port.

    ``command`` builds the argv from (pin file, port, key file, otlp endpoint); the default runs
    ``python -m shipway.serving``. A closed port stands in for the trace collector, so the
    candidate also proves it serves while its collector is down.
    """

    def __init__(self, pin: Mapping[str, Any], *, environment: str = "candidate",
                 command: Callable[[Path, int, Path, str], list[str]] | None = None,
                 ready_seconds: float = 90.0):
        self.workdir = Path(tempfile.mkdtemp(prefix="shipway-nft-"))
        self.pin_file = self.workdir / "pin.json"
        self.pin_file.write_text(json.dumps(dict(pin)))
        self.key_file = self.workdir / "api-key"
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, os.urandom(24).hex().encode())
        os.close(fd)
        self.port = free_port()
        self.otlp = f"http://127.0.0.1:{free_port()}"
        self.environment = environment
        self.ready_seconds = ready_seconds
        self._command = command or self._serving_command
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "serving.log"

    def _serving_command(self, pin: Path, port: int, key: Path, otlp: str) -> list[str]:
        return [sys.executable, "-m", "shipway.serving", "--pin-file", str(pin), "--port", str(port),
                "--api-key-file", str(key), "--otlp-endpoint", otlp, "--environment", self.environment,
                "--no-access-log"]

    @property
    def target(self) -> Target:
        return Target(f"http://127.0.0.1:{self.port}", self.key_file.read_text().strip())

    def start(self, wait: bool = True) -> None:
        argv = self._command(self.pin_file, self.port, self.key_file, self.otlp)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_seconds
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise NonFunctionalError(f"the candidate exited with {self.process.returncode}; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.target.base_url + "/ready", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise NonFunctionalError(f"the candidate was not ready after {self.ready_seconds:.0f} s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL: the crash case (no drain, no flush)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def break_registry(self) -> None:
        """Re-pin to an unreachable registry and send SIGHUP: the reload fails, serving must not."""
        pin = json.loads(self.pin_file.read_text())
        pin["tracking_uri"] = f"http://127.0.0.1:{free_port()}"
        pin["model_version"] = int(pin["model_version"]) + 1
        self.pin_file.write_text(json.dumps(pin))
        if self.process is not None:
            self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@contextlib.contextmanager
def serve_candidate(pin: Mapping[str, Any], **kwargs: Any) -> Iterator[CandidateServer]:
    server = CandidateServer(pin, **kwargs)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def check_kind(kind: str) -> str:
    if kind not in NONFUNCTIONAL_KINDS:
        raise ValueError(f"kind: {kind!r} is not valid; allowed: {', '.join(NONFUNCTIONAL_KINDS)}")
    return kind
