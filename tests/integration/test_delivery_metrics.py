"""Delivery figures as Prometheus sees them: the local stack's exporter (`python -m
shipway.delivery`) and Debian's Prometheus scraping it with the config the local target
generates; a promotion and then a failed one that is rolled back move the scraped series, and
every delivery panel of the generated platform dashboard returns data.

Real processes on 127.0.0.1; the audit records are written with the real AuditLog, the way
`shipway model promote` / `rollback` write them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from components.local.components import prometheus_config
from shipway.audit import AuditLog
from shipway_core.config import SloSettings
from shipway_core.observability.dashboards import platform_dashboard
from tests.integration.conftest import free_port_block

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
MODEL, ENV = "iris-classifier", "local"


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not healthy within {seconds:.0f}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[AuditLog, str, str]]:
    """The exporter and Prometheus, as the local target wires them; yields (trail, prometheus, exporter)."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed; run `make setup` (Debian package prometheus)")
    base = free_port_block(2)
    exporter_port, prom_port = base, base + 1
    trail = AuditLog(tmp_path / "audit" / "audit.jsonl", key=b"k" * 40)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ex_log = tmp_path / "exporter.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "shipway.delivery", "--port", str(exporter_port), "--audit-log", str(trail.path)],
            stdout=ex_log.open("wb"), stderr=subprocess.STDOUT))
        _wait_http(f"http://127.0.0.1:{exporter_port}/health", procs[0], ex_log)
        config = prometheus_config({}, delivery=f"127.0.0.1:{exporter_port}").replace(
            "__SELF__", f"127.0.0.1:{prom_port}")
        (tmp_path / "prometheus.yml").write_text(config)
        (tmp_path / "rules.yml").write_text("groups: []\n")
        prom_log = tmp_path / "prometheus.log"
        procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=prom_log.open("wb"), stderr=subprocess.STDOUT))
        _wait_http(f"http://127.0.0.1:{prom_port}/-/ready", procs[1], prom_log)
        yield trail, f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{exporter_port}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def query(prometheus: str, expr: str) -> dict[str, float]:
    """Instant query -> {model/env label text: value}."""
    doc = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10.0).json()
    assert doc["status"] == "success", doc
    return {f'{r["metric"].get("model")}/{r["metric"].get("env")}': float(r["value"][1]) for r in doc["data"]["result"]}


def eventually(prometheus: str, expected: dict[str, dict[str, float]], seconds: float = 60.0) -> None:
    """Wait until every metric reads exactly the expected series (scrapes are 5 s apart)."""
    deadline = time.monotonic() + seconds
    seen: dict[str, dict[str, float]] = {}
    while time.monotonic() < deadline:
        seen = {name: query(prometheus, f'{name}{{job="shipway-delivery"}}') for name in expected}
        if seen == expected:
            return
        time.sleep(1.0)
    raise AssertionError(f"Prometheus shows {seen}, expected {expected}")


def test_a_promotion_then_a_rollback_move_the_delivery_metrics_prometheus_scrapes(stack) -> None:
    trail, prometheus, exporter = stack
    key = f"{MODEL}/{ENV}"

    # Nothing promoted yet: the exporter answers (empty), the target is up.
    eventually(prometheus, {"up": {"None/None": 1.0}, "shipway_delivery_deployments": {}})

    # 1. A promotion of v2 that deploys and verifies.
    trail.append(actor="ci@shipway.invalid", action="promote", env=ENV, model=MODEL, from_version=1, to_version=2,
                 outcome="pinned", reason="better accuracy")
    trail.append(actor="ci@shipway.invalid", action="apply", env=ENV, model=MODEL, to_version=2, outcome="succeeded")
    trail.append(actor="ci@shipway.invalid", action="verify", env=ENV, model=MODEL, to_version=2, outcome="ok")
    eventually(prometheus, {"shipway_delivery_deployments": {key: 1.0},
                            "shipway_delivery_change_failure_ratio": {key: 0.0},
                            "shipway_delivery_time_to_restore_minutes": {}})

    # 2. v3 fails verification and is rolled back to v2, which verifies again.
    trail.append(actor="ci@shipway.invalid", action="promote", env=ENV, model=MODEL, from_version=2, to_version=3,
                 outcome="pinned", reason="new features")
    trail.append(actor="ci@shipway.invalid", action="apply", env=ENV, model=MODEL, to_version=3, outcome="succeeded")
    trail.append(actor="ci@shipway.invalid", action="verify", env=ENV, model=MODEL, to_version=3, outcome="failed")
    trail.append(actor="ci@shipway.invalid", action="rollback", env=ENV, model=MODEL, from_version=3, to_version=2,
                 outcome="pinned", reason="verification failed")
    trail.append(actor="ci@shipway.invalid", action="verify", env=ENV, model=MODEL, to_version=2, outcome="ok")
    eventually(prometheus, {"shipway_delivery_deployments": {key: 2.0},
                            "shipway_delivery_change_failure_ratio": {key: 0.5},
                            "shipway_delivery_unrestored_failures": {key: 0.0}})
    [restore] = query(prometheus, 'shipway_delivery_time_to_restore_minutes{job="shipway-delivery"}').values()
    assert 0.0 <= restore < 5.0  # the records above are seconds apart
    [lead] = query(prometheus, 'shipway_delivery_lead_time_hours{job="shipway-delivery"}').values()
    assert lead >= 0.0

    # Every delivery panel of the generated platform dashboard reads these series.
    dash = platform_dashboard(ENV, SloSettings())
    start = next(i for i, p in enumerate(dash["panels"]) if p["title"] == "Delivery (from the audit trail)")
    panels = dash["panels"][start + 1:]
    assert [p["title"] for p in panels] == ["Deployments per day", "Lead time, registration to deploy (median)",
                                           "Change failure rate", "Time to restore (median)"]
    for panel in panels:
        first = panel["targets"][0]["expr"]
        assert key in query(prometheus, first), (panel["title"], first)

    # The exporter's own text matches what the CLI exports for the same trail.
    text = httpx.get(f"{exporter}/metrics", timeout=5.0).text
    assert f'shipway_delivery_change_failure_ratio{{model="{MODEL}",env="{ENV}"}} 0.5' in text
