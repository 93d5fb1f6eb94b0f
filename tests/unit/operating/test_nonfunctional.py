"""Non-functional tests against the real serving app under uvicorn on a free port (in a thread,
to stay fast): paced load vs the SLO, malformed inputs, access validation; the evidence gate; the
CLI against an environment endpoint. Killing and restarting the serving *process* is in
tests/integration/test_operating.py (it starts real processes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipway import nonfunctional as nft
from shipway.cli import app
from shipway.promotion import Services
from shipway_core.config import SloSettings
from tests.unit.operating.observability_stub import observability_stub
from tests.unit.operating.support import IRIS_COLUMNS, live_server
from tests.unit.operating.test_incident import FakeEngine

BODY = json.dumps({"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[5.1, 3.5, 1.4, 0.2]]}}).encode()


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory, iris: tuple[Any, Any, Any]) -> Iterator[nft.Target]:
    x, _, est = iris
    with live_server(tmp_path_factory.mktemp("live"), est, x) as live:
        yield nft.Target(live.base_url, live.key)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (nft.percentile(values, 50), nft.percentile(values, 99), nft.percentile(values, 100)) == (50, 99, 100)
    assert nft.percentile([7.0], 99) == 7.0 and nft.percentile([], 50) is None


def test_load_sends_every_scheduled_request_and_judges_it_against_the_slo(candidate: nft.Target) -> None:
    result = nft.load_test(candidate, BODY, SloSettings(), model="iris", version=3, rps=40, seconds=2)
    f = result.figures
    assert (f["requests"], f["ok"], f["errors"], f["error_rate"]) == (80, 80, {}, 0.0)
    assert f["p50_ms"] <= f["p95_ms"] <= f["p99_ms"]
    checks = {c.name: c for c in result.checks}
    assert set(checks) == {"latency_p99", "error_rate", "offered_rate"}
    assert checks["error_rate"].passed
    # Latency and the offered rate depend on this shared machine: their verdicts follow the figures.
    assert checks["latency_p99"].passed == (f["p99_ms"] <= SloSettings().latency_p99_ms)
    assert checks["offered_rate"].passed == (f["achieved_rps"] >= 36)


def test_requests_are_paced_never_sent_before_they_are_due(candidate: nft.Target) -> None:
    samples, _ = asyncio.run(nft._paced(candidate.invocations, candidate.auth(), BODY, rps=50, seconds=1,
                                        concurrency=4))
    sent = sorted(s.sent for s in samples)
    assert len(sent) == 50
    assert all(t >= i / 50 - 0.002 for i, t in enumerate(sent))  # open loop: the schedule, not a burst


def test_load_fails_against_an_slo_it_cannot_meet(candidate: nft.Target) -> None:
    slo = SloSettings(latency_p99_ms=0.001)
    result = nft.load_test(candidate, BODY, slo, model="iris", version=3, rps=20, seconds=1)
    assert not result.passed
    [latency] = [c for c in result.checks if c.name == "latency_p99"]
    assert not latency.passed and latency.detail.endswith("ms (SLO 0.001 ms)")


def test_security_refuses_every_wrong_key_on_every_authenticated_route(candidate: nft.Target) -> None:
    target = nft.Target(candidate.base_url, candidate.api_key, other_env_key="prod-key-" + "9" * 20)
    result = nft.security_test(target, BODY, model="iris", version=3)
    names = [c.name for c in result.checks]
    assert {"no_key:/invocations", "wrong_key:/drift/reset", "other_env_key:/invocations", "right_key",
            "no_server_banner", "wrong_method"} <= set(names)
    assert result.passed, [c for c in result.checks if not c.passed]
    assert result.figures["tls"].startswith("not configured")


def test_security_fails_on_an_endpoint_without_a_key(tmp_path: Path, iris: tuple[Any, Any, Any]) -> None:
    x, _, est = iris
    with live_server(tmp_path, est, x, auth=False) as live:
        result = nft.security_test(nft.Target(live.base_url, "some-key"), BODY, model="iris", version=3)
    failed = {c.name: c.detail for c in result.checks if not c.passed}
    assert failed["no_key:/invocations"] == "HTTP 200 (expected 401)"
    assert not result.passed


def test_malformed_and_oversized_inputs_get_4xx_and_leave_the_server_healthy(candidate: nft.Target) -> None:
    checks = {c.name: c for c in nft.check_malformed(candidate, BODY, max_rows=10_000,
                                                     max_body_bytes=32 * 1024 * 1024)}
    assert set(checks) == {f"malformed:{case}" for case in (
        "not_json", "empty_object", "unknown_key", "oversized_body", "missing_column", "wrong_type",
        "too_many_rows")} | {"healthy_after_malformed"}
    assert all(c.passed for c in checks.values()), [c for c in checks.values() if not c.passed]
    assert checks["malformed:oversized_body"].detail == "HTTP 413 (expected 4xx)"


def test_a_server_answering_500_to_bad_input_fails_resilience() -> None:
    # A plain HTTP server that does not implement POST (501 to every request): the checks must catch it.
    with observability_stub() as (base, _):
        checks = nft.check_malformed(nft.Target(base, None), BODY, max_rows=3, max_body_bytes=64)
    assert not any(c.passed for c in checks)


def test_evidence_tag_and_the_promotion_gate() -> None:
    result = nft.Result("load", "iris", 3, "http://127.0.0.1:1", checks=[nft.Check("latency_p99", True, "ok")])
    tags = result.evidence_tag()
    assert list(tags) == ["shipway.nft.load"] and json.loads(tags["shipway.nft.load"])["passed"] is True
    failed = nft.Result("security", "iris", 3, "x", checks=[nft.Check("no_key", False, "HTTP 200")]).evidence_tag()
    assert nft.missing_evidence({**tags, **failed}, ("load",)) == []
    assert nft.missing_evidence({**tags, **failed}, ("load", "security", "resilience")) == [
        "security: the last run failed (tag shipway.nft.security)",
        "resilience: no evidence; run `shipway test resilience MODEL --version N`"]


def test_cli_security_against_an_environment_endpoint(candidate: nft.Target, tmp_path: Path) -> None:
    payload = tmp_path / "request.json"
    payload.write_bytes(BODY)
    key_file = tmp_path / "key"
    key_file.write_text(str(candidate.api_key))
    base = candidate.base_url
    engine = FakeEngine(tmp_path, {
        "cloud": "local", "environment": "local", "trackingUri": "sqlite:///unused", "registryUri": "sqlite:///unused",
        "endpoints": {"iris": {"url": f"{base}/invocations", "version": 3, "status": base,
                               "apiKeyRef": str(key_file)}}})
    runner = CliRunner()
    args = ["test", "security", "iris", "--version", "3", "--endpoint", "--payload", str(payload), "--no-store",
            "-o", "json"]
    result = runner.invoke(app, args, obj=Services(engine=engine))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["kind"] == "security" and doc["stored"] is False
    wrong = runner.invoke(app, [*args[:3], "--version", "2", *args[5:]], obj=Services(engine=engine))
    assert wrong.exit_code == 2 and "'local' serves version 3 of 'iris', not 2" in wrong.output
    bad = runner.invoke(app, ["test", "load", "iris", "--version", "0", "--payload", str(payload)],
                        obj=Services(engine=engine))
    assert bad.exit_code == 2 and "0 is not a registry version" in bad.output
