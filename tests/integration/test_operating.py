"""Operating ML on a real `local` stack: promotions (one rolled back), the delivery report they
produce, an incident snapshot from the real Prometheus, Alertmanager, Jaeger and log files, the
non-functional tests of a candidate served from the real registry (evidence stored on the
version), and the /explain latency figures.

Figures are printed (run with -s to see them), never asserted as timings.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from shipway import audit as audit_mod
from shipway import nonfunctional as nft
from shipway.cli import app
from shipway.example import train_and_register
from shipway.promotion import Promoter, PromoteRequest, PromotionError, Services
from tests.integration.conftest import Project, make_project
from tests.integration.test_delivery_metrics import eventually
from tests.integration.test_promotion_live import MODEL, ProjectEngine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    project = make_project(tmp_path_factory.mktemp("operating"), stack="local")
    project.write_config(local={**project.config["local"], "alertSinkPort": project.ports["tracking"] + 11})
    store, artifacts = project.tracking_store
    versions = {v: train_and_register(store, variant=v, artifact_root=artifacts).version
                for v in ("baseline", "forest", "slow")}
    project.pin(MODEL, versions["baseline"])
    project.pulumi("up", "--yes")
    from shipway.commands.platform import record_first_deploys
    from shipway_core.config import load_stack_file

    record_first_deploys(load_stack_file(project.stack_file), project.outputs(), project.dir,
                         audit_path=project.dir / ".shipway" / "audit" / "audit.jsonl")
    try:
        yield project, versions
    finally:
        project.pulumi("destroy", "--yes", check=False)


def cli(services: Services, *args: str) -> Any:
    result = CliRunner().invoke(app, list(args), obj=services)
    assert result.exit_code == 0, result.output
    return result


def test_operating_session(stack: tuple[Project, dict[str, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    project, v = stack
    audit_path = project.dir / ".shipway" / "audit" / "audit.jsonl"
    services = Services(engine=ProjectEngine(project), audit_path=audit_path, actor="ci@shipway.invalid",
                        tracking_uri=project.tracking_uri, probe_seconds=2.0)
    promoter = Promoter(services)

    # The stack's Prometheus scrapes the delivery exporter; nothing promoted yet, no figures.
    prometheus, key = project.outputs()["observability"]["metricsUrl"], f"{MODEL}/local"
    eventually(prometheus, {"up": {"None/None": 1.0}, "shipway_delivery_deployments": {}})

    # 1. Two promotions: v2 verified, a slow v3 fails verification and is rolled back.
    out = promoter.promote(PromoteRequest(MODEL, "local", version=v["forest"], apply=True, allow_dirty=True))
    assert out.status == "verified", out
    with pytest.raises(PromotionError):
        promoter.promote(PromoteRequest(MODEL, "local", version=v["slow"], apply=True, allow_dirty=True))

    # 2. The delivery report those promotions make.
    report = cli(services, "report", "delivery", "--audit-log", str(audit_path), "--tracking-uri",
                 project.tracking_uri, "-o", "json")
    [row] = json.loads(report.stdout)["rows"]
    assert (row["model"], row["env"], row["deployments"], row["versions"]) == (
        MODEL, "local", 2, [v["forest"], v["slow"]])
    assert (row["change_failures"], row["change_failure_rate"], row["unrestored_failures"]) == (1, 0.5, 0)
    assert row["time_to_restore_minutes_median"] is not None and row["lead_time_basis"] == "registry"
    print("\n" + cli(services, "report", "delivery", "--audit-log", str(audit_path), "--tracking-uri",
                     project.tracking_uri).stdout)
    print(cli(services, "report", "delivery", "--audit-log", str(audit_path), "-o", "prometheus").stdout)
    # ... and the stack's Prometheus sees the same figures on its next scrapes.
    eventually(prometheus, {"shipway_delivery_deployments": {key: 2.0},
                            "shipway_delivery_change_failure_ratio": {key: 0.5},
                            "shipway_delivery_unrestored_failures": {key: 0.0}})

    # 3. An incident: snapshot the real sources, close it into the audit trail.
    cli(services, "incident", "open", "local", "--model", MODEL, "--title", "slow version drill")
    snap = json.loads(cli(services, "incident", "snapshot", "local", "-o", "json").stdout)
    dest = Path(snap["snapshot"])
    print("incident snapshot:\n" + "\n".join(str(p.relative_to(dest.parent.parent)) for p in sorted(dest.rglob("*"))))
    print("not collected:", snap["errors"])
    assert {"pins.json", "audit.json", "slo.json", "logs"} <= set(snap["collected"])
    pins = json.loads((dest / "pins.json").read_text())[MODEL]
    assert pins["pinned"] == pins["deployed"] == pins["serving"]["model_version"] == v["forest"]
    audit_actions = [r["action"] for r in json.loads((dest / "audit.json").read_text())]
    assert audit_actions.count("rollback") == 1
    assert (dest / "logs" / f"{MODEL}-serving.log").stat().st_size > 0
    closed = json.loads(cli(services, "incident", "close", "local", "--summary", "drill over", "-o", "json").stdout)
    record = audit_mod.AuditLog(audit_path).records()[-1]
    assert record["seq"] == closed["audit_seq"] and record["action"] == "incident"
    assert audit_mod.AuditLog(audit_path).verify(anchors=[]).ok

    # 4. Non-functional tests of the forest version, served as a candidate from the real registry.
    results = {}
    for kind, extra in (("load", ["--rps", "30", "--seconds", "5"]), ("security", []),
                        ("resilience", ["--seconds", "6"])):
        res = CliRunner().invoke(app, ["test", kind, MODEL, "--version", str(v["forest"]), "--env", "local",
                                       "--tracking-uri", project.tracking_uri, *extra, "-o", "json"], obj=services)
        assert res.exit_code in (0, 1), res.output  # 1 = ran and failed a check; printed below
        results[kind] = json.loads(res.stdout)
        print(f"shipway test {kind}: passed={results[kind]['passed']} figures={results[kind]['figures']}")
    assert results["security"]["passed"], results["security"]["checks"]
    assert results["load"]["figures"]["requests"] == 150
    assert results["resilience"]["figures"]["requests_lost"] > 0
    assert results["resilience"]["figures"]["recovery_seconds"] is not None
    from shipway.registry import Registry

    tags = Registry(project.tracking_uri).version(MODEL, v["forest"]).tags
    for kind, doc in results.items():
        assert json.loads(tags[f"shipway.nft.{kind}"])["checks"] == doc["checks"]


def _timed(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.post(url, content=body, headers=headers)
        out.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text
    return out


def test_explain_latency_and_zero_cost_when_off(stack: tuple[Project, dict[str, int]]) -> None:
    project, v = stack
    pin = {"model_name": MODEL, "model_version": v["forest"], "tracking_uri": project.tracking_uri}
    from shipway.example import load_data

    _, x_golden, _, _ = load_data(7)
    body = json.dumps({"dataframe_split": {"columns": list(x_golden.columns),
                                           "data": x_golden.head(1).to_numpy().tolist()}}).encode()

    def command(explain: bool):  # noqa: ANN202 - a CandidateServer command builder
        def build(pin_file: Path, port: int, key: Path, otlp: str) -> list[str]:
            return [sys.executable, "-m", "shipway.serving", "--pin-file", str(pin_file), "--port", str(port),
                    "--api-key-file", str(key), "--no-access-log", *(["--explain"] if explain else [])]
        return build

    figures: dict[str, float] = {}
    for explain in (False, True):
        with nft.serve_candidate(pin, command=command(explain)) as server:
            target = server.target
            headers = {**target.auth(), "content-type": "application/json"}
            with httpx.Client(timeout=10) as client:
                _timed(client, target.invocations, body, headers, 50)  # warm up
                inv = _timed(client, target.invocations, body, headers, 400)
                figures[f"invocations_p50_ms_explain_{'on' if explain else 'off'}"] = statistics.median(inv)
                if explain:
                    exp = _timed(client, target.base_url + "/explain", body, headers, 100)
                    figures["explain_p50_ms"] = statistics.median(exp)
                    figures["explain_p99_ms"] = sorted(exp)[98]
                    doc = client.post(target.base_url + "/explain", content=body, headers=headers).json()
                    row = doc["rows"][0]
                    assert sum(row["attributions"].values()) == pytest.approx(row["output"] - row["base_value"])
                else:
                    assert client.post(target.base_url + "/explain", content=body, headers=headers).status_code == 404
    print(f"\n/explain figures: {json.dumps(figures, indent=1)}")
