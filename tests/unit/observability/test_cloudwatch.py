"""CloudWatch alarms from the one SLO definition: same windows, thresholds and severities as the
PromQL alerts, and the same verdict on every shared traffic scenario."""

from __future__ import annotations

import re

import pytest

from shipway_core.config import SloSettings
from shipway_core.observability.cloudwatch import alarms, composite_state, eval_expression, evaluate
from shipway_core.observability.rules import generate_rules
from tests.unit.observability.scenarios import LOW_TRAFFIC, SCENARIOS, Scenario

SLO = SloSettings()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: f"{s.slo}: {s.name}")
def test_scenario_sets_exactly_the_expected_composite_alarms(scenario: Scenario) -> None:
    # CloudWatch's SageMaker metrics only count /invocations, and 4xx are not in the 5xx numerator:
    # the traffic fed here is what those metrics would hold.
    assert evaluate(SLO, scenario.slo, scenario.per_minute(), scenario.eval_minute) == set(scenario.expected)


def _prom_tiers(expr: str) -> list[tuple[str, str, float]]:
    """(window, comparison, threshold) of each comparison in a generated PromQL burn alert."""
    return [(w, op, float(t)) for w, op, t in re.findall(r"ratio_rate(\w+) (>=?) ([0-9.e-]+)", expr)]


@pytest.mark.parametrize("settings", [SLO, SloSettings(availability=0.999, latency_objective=0.9, latency_p99_ms=100,
                                                       min_requests=30)])
def test_cloudwatch_and_prometheus_alert_on_the_same_windows_and_thresholds(settings: SloSettings) -> None:
    doc = generate_rules(settings, ["iris"], "prod")
    prom_exprs = {
        (r["labels"]["slo"], r["labels"]["severity"]): r["expr"]
        for g in doc["groups"] for r in g["rules"] if "slo" in r.get("labels", {})
    }
    prom = {key: _prom_tiers(expr) for key, expr in prom_exprs.items()}
    windows, composites = alarms(settings, "iris-prod")
    by_name = {w.name: w for w in windows}
    ops = {"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">="}
    for c in composites:
        refs = re.findall(r'ALARM\("([^"]+)"\)', c.rule)
        cw = [(by_name[n].window, ops[by_name[n].comparison], by_name[n].threshold) for n in refs]
        assert [(w, op, pytest.approx(t)) for w, op, t in cw] == prom[(c.slo, c.severity)], c.name
        # the low-traffic guard sits on the same (long) windows with the same minimum
        guards = re.findall(r"increase(\w+) >= (\d+)", prom_exprs[(c.slo, c.severity)])
        cw_guards = [(by_name[n].window, m.group(1)) for n in refs
                     if (m := re.match(r"IF\(total >= (\d+), ", by_name[n].expression))]
        assert cw_guards == guards and guards, c.name
    assert len(composites) == 4 and {(c.slo, c.severity) for c in composites} == set(prom)


def test_window_alarms_read_the_sagemaker_metrics_over_their_window() -> None:
    windows, composites = alarms(SLO, "iris-prod")
    fast = next(w for w in windows if w.name == "iris-prod-availability-14.4x-1h")
    # the long window carries the low-traffic guard, the short one is the plain ratio
    assert fast.expression == "IF(total >= 100, bad / total, 0)" and fast.threshold == pytest.approx(0.072)
    short = next(w for w in windows if w.name == "iris-prod-availability-14.4x-5m")
    assert short.expression == "bad / total"
    stats = [m["MetricStat"] for m in fast.metrics]
    assert [(s["Metric"]["MetricName"], s["Period"], s["Stat"]) for s in stats] == [
        ("Invocation5XXErrors", 3600, "Sum"), ("Invocations", 3600, "Sum")
    ]
    assert [m["Id"] for m in fast.metrics] == ["bad", "total"]
    slow = next(w for w in windows if w.name == "iris-prod-latency-1x-3d")
    assert slow.expression == "IF(total >= 100, 1 - fast / 100, 0)" and slow.period == 259200
    assert [(m["Id"], m["MetricStat"]["Stat"]) for m in slow.metrics] == [("fast", "PR(:250000)"), ("total", "Sum")]
    page = next(c for c in composites if c.name == "iris-prod-availability-page")
    assert page.rule == (
        '(ALARM("iris-prod-availability-14.4x-1h") AND ALARM("iris-prod-availability-14.4x-5m")) OR '
        '(ALARM("iris-prod-availability-6x-6h") AND ALARM("iris-prod-availability-6x-30m"))'
    )


def test_evaluator_drops_datapoints_like_cloudwatch_and_rejects_what_it_cannot_read() -> None:
    assert eval_expression("bad / total", {"bad": 1.0, "total": 4.0}) == 0.25
    assert eval_expression("bad / total", {"bad": 0.0, "total": 0.0}) is None
    assert eval_expression("1 - fast / 100", {"fast": None}) is None
    with pytest.raises(ValueError, match="reads 'errors', which no query defines"):
        eval_expression("errors / total", {"total": 1.0})
    assert eval_expression("IF(total >= 100, bad / total, 0)", {"bad": 2.0, "total": 3.0}) == 0
    assert eval_expression("IF(total >= 100, bad / total, 0)", {"bad": 20.0, "total": 100.0}) == 0.2
    assert eval_expression("IF(total >= 100, bad / total, 0)", {"bad": 0.0, "total": None}) is None
    with pytest.raises(ValueError, match="only \\+ - \\* /, comparisons and IF\\(\\) over ids and numbers"):
        eval_expression("MAX(bad)", {"bad": 1.0})
    _, composites = alarms(SLO, "e")
    page = composites[0]
    names = re.findall(r'ALARM\("([^"]+)"\)', page.rule)
    assert composite_state(page, dict.fromkeys(names, False) | {names[0]: True}) is False  # long without short
    assert composite_state(page, dict.fromkeys(names, False) | {names[2]: True, names[3]: True}) is True
    with pytest.raises(ValueError, match="endpoint_name: '' is not valid"):
        alarms(SLO, "")


@pytest.mark.parametrize("slo", ["availability", "latency"])
def test_the_low_traffic_guard_is_what_keeps_a_handful_of_requests_quiet(slo: str) -> None:
    """Without the guard (minRequests 0) the same three requests page and ticket."""
    minutes = [(r, b) for m, r, b in LOW_TRAFFIC for _ in range(m)]
    assert evaluate(SLO, slo, minutes, 120) == set()
    assert evaluate(SloSettings(min_requests=0), slo, minutes, 120) == {"page", "ticket"}
    unguarded, _ = alarms(SloSettings(min_requests=0), "e")
    assert {w.expression for w in unguarded} == {"bad / total", "1 - fast / 100"}
