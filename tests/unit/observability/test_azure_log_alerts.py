"""Azure log search alerts (stacks without managed Prometheus) from the one SLO definition: the same
windows, thresholds, severities and low-traffic guard as the PromQL alerts, and the same verdict on
every shared traffic scenario, run by an evaluator of the generated KQL."""

from __future__ import annotations

import re

import pytest

from shipway_core.config import SloSettings
from shipway_core.observability.azure import (
    LOG_ALERT_MAX_WINDOW,
    burn_log_alerts,
    burn_query,
    evaluate,
    run_query,
    traffic_rows,
)
from shipway_core.observability.rules import generate_rules
from shipway_core.observability.slo import slos
from tests.unit.observability.scenarios import LOW_TRAFFIC, SCENARIOS, Scenario

SLO = SloSettings()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: f"{s.slo}: {s.name}")
def test_scenario_fires_exactly_the_expected_log_alerts(scenario: Scenario) -> None:
    # The traffic log holds scoring requests; the scenario's 4xx and other-route 5xx go in as rows
    # the query must not count.
    fired = evaluate(SLO, scenario.slo, scenario.per_minute(), scenario.eval_minute,
                     client_errors_per_min=scenario.client_errors_per_min,
                     noise_paths=tuple(f"/{r.strip('/')}" for r in scenario.noise_routes))
    assert fired == set(scenario.expected)


@pytest.mark.parametrize("slo", ["availability", "latency"])
def test_the_low_traffic_guard_is_what_keeps_a_handful_of_requests_quiet(slo: str) -> None:
    """Without the guard (minRequests 0) the same three requests page and ticket."""
    assert evaluate(SLO, slo, list(LOW_TRAFFIC_MINUTES), 120) == set()
    assert evaluate(SloSettings(min_requests=0), slo, list(LOW_TRAFFIC_MINUTES), 120) == {"page", "ticket"}


LOW_TRAFFIC_MINUTES = tuple((r, b) for m, r, b in LOW_TRAFFIC for _ in range(m))


def _prom_tiers(expr: str) -> list[tuple[str, str, float]]:
    return [(w, op, float(t)) for w, op, t in re.findall(r"ratio_rate(\w+) (>=?) ([0-9.e-]+)", expr)]


def _kql_tiers(query: str) -> list[tuple[str, str, float]]:
    return [(w, op, float(t)) for w, op, t in re.findall(r"coalesce\(ratio_(\w+), 0\.0\) (>=?) ([0-9.e-]+)", query)]


@pytest.mark.parametrize("settings", [SLO, SloSettings(availability=0.95, latency_objective=0.9, latency_p99_ms=100,
                                                       min_requests=20)])
def test_log_alerts_and_prometheus_alert_on_the_same_windows_thresholds_and_guard(settings: SloSettings) -> None:
    doc = generate_rules(settings, ["iris"], "prod")
    prom = {
        (r["labels"]["slo"], r["labels"]["severity"]): r["expr"]
        for g in doc["groups"] for r in g["rules"] if "slo" in r.get("labels", {})
    }
    alerts = burn_log_alerts(settings, "iris", "iris-prod")
    assert {(a.slo, a.severity) for a in alerts} == set(prom) and len(alerts) == 4
    for a in alerts:
        expected = [(LOG_ALERT_MAX_WINDOW if w == "3d" else w, op, pytest.approx(t))
                    for w, op, t in _prom_tiers(prom[(a.slo, a.severity)])]
        assert _kql_tiers(a.query) == expected, a.name
        guards = re.findall(r"increase(\w+) >= (\d+)", prom[(a.slo, a.severity)])
        assert re.findall(r"requests_(\w+) >= (\d+)", a.query) == [
            (LOG_ALERT_MAX_WINDOW if w == "3d" else w, n) for w, n in guards]
        assert guards and {n for _, n in guards} == {str(settings.min_requests)}
    # 14.4 x 5% = 72%, 6 x 10% = 60%: loose objectives still compare below 1; at 1.0 both use >=
    loose = next(a for a in burn_log_alerts(SloSettings(availability=0.93), "m", "e")
                 if (a.slo, a.severity) == ("availability", "page"))
    assert "coalesce(ratio_1h, 0.0) >= 1 and" in loose.query


def test_the_3_day_tier_reads_the_2_day_maximum_of_a_log_alert() -> None:
    ticket = next(a for a in burn_log_alerts(SLO, "iris", "iris-prod") if (a.slo, a.severity) ==
                  ("availability", "ticket"))
    assert ticket.tiers == ((3.0, "1d", "2h"), (1.0, "2d", "6h"))
    assert ticket.lookback == "P2D" and "| where TimeGenerated > ago(2d)" in ticket.query
    page = next(a for a in burn_log_alerts(SLO, "iris", "iris-prod") if (a.slo, a.severity) ==
                ("availability", "page"))
    assert page.tiers == ((14.4, "1h", "5m"), (6.0, "6h", "30m")) and page.lookback == "PT6H"


def test_query_counts_only_the_scoring_route_of_its_endpoint() -> None:
    availability, latency = slos(SLO)
    query, _ = burn_query(availability, "page", "iris-prod")
    rows = traffic_rows(availability, [(100.0, 50.0)] * 60, "iris-prod")
    other = [{**r, "EndpointName": "wine-prod"} for r in rows]
    (result,) = run_query(query, rows + other, now=3600)
    assert (result["requests_1h"], result["bad_1h"], result["firing"]) == (6000, 3000, 1)
    (quiet,) = run_query(query, other, now=3600)
    assert (quiet["requests_1h"], quiet["ratio_1h"], quiet["firing"]) == (0, None, 0)
    slow_query, _ = burn_query(latency, "page", "iris-prod")
    assert "| extend bad = TotalDurationMs > 250" in slow_query


def test_evaluator_and_generator_reject_what_they_cannot_read() -> None:
    availability = slos(SLO)[0]
    with pytest.raises(ValueError, match="endpoint_name: \"it's\" is not valid"):
        burn_query(availability, "page", "it's")
    with pytest.raises(ValueError, match="severity: 'urgent' is not valid"):
        burn_query(availability, "urgent", "e")
    with pytest.raises(ValueError, match="the evaluator knows only AmlOnlineEndpointTrafficLog"):
        run_query("requests\n| where x > 1", [], now=0)
    with pytest.raises(ValueError, match="stage 'project' is not valid here"):
        run_query("AmlOnlineEndpointTrafficLog\n| project x", [], now=0)
    with pytest.raises(ValueError, match="reads 'Missing', which is no column here"):
        run_query("AmlOnlineEndpointTrafficLog\n| where Missing > 1", [{"TimeGenerated": 0}], now=0)
    with pytest.raises(ValueError, match="knows countif\\(\\) only"):
        run_query("AmlOnlineEndpointTrafficLog\n| summarize n = count()", [], now=0)
