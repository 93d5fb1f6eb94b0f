"""The AWS dashboard charts what the stack's alarms decide on, from the data SageMaker really has.

A SageMaker container has no ``/metrics`` to scrape, so the dashboard's panels query Managed
Grafana's CloudWatch data source. Everything here is read from the recorded resources of a prod-like
platform (``build_platform`` under recording mocks): the panels' metrics are compared with the
MetricAlarms the same stack creates, never with strings spelled in the test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from shipway_core.config import StackConfig
from shipway_core.observability import drift as drift_decision
from tests.support.aws_calls import Call
from tests.support.recording import Recording, resolve
from tests.unit.aws.support import REGION, statements_by_sid
from tests.unit.aws.test_aws_platform import build, prod_config
from tests.unit.aws.test_deploy_role_calls import allowed

Signature = tuple[str, str, tuple[tuple[str, str], ...], str, int]


@pytest.fixture(scope="module")
def stack() -> tuple[StackConfig, Recording]:
    cfg = prod_config()
    return cfg, build(cfg)


def _outputs(rec: Recording) -> dict[str, Any]:
    return resolve(rec.result.target)


def _dashboard(rec: Recording) -> dict[str, Any]:
    return json.loads(_outputs(rec)["dashboardJson"])


def _signature(namespace: str, metric: str, dimensions: Mapping[str, str] | None, statistic: str,
               period: int | str) -> Signature:
    return namespace, metric, tuple(sorted((dimensions or {}).items())), statistic, int(period)


def _alarm_queries(alarm: Mapping[str, Any]) -> tuple[dict[str, Signature], list[str]]:
    """An alarm's metrics by query id (a single-metric alarm's under ""), and its math expressions."""
    metrics: dict[str, Signature] = {}
    expressions = []
    if "metricName" in alarm:
        statistic = alarm.get("extendedStatistic") or alarm["statistic"]
        metrics[""] = _signature(alarm["namespace"], alarm["metricName"], alarm.get("dimensions"), statistic,
                                 alarm["period"])
    for query in alarm.get("metricQueries", []):
        if "metric" in query:
            m = query["metric"]
            metrics[query["id"]] = _signature(m["namespace"], m["metricName"], m.get("dimensions"), m["stat"],
                                              m["period"])
        else:
            expressions.append(query["expression"])
    return metrics, expressions


def _alarms_of(rec: Recording, endpoint: str) -> dict[str, dict[str, Any]]:
    """Every MetricAlarm the stack creates on this endpoint's metrics (rollback and SLO alarms)."""
    return {a.inputs["name"]: a.inputs for a in rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
            if a.inputs["name"].startswith(f"{endpoint}-")}


def _panels_of(dashboard: Mapping[str, Any], model: str) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["title"].startswith(f"{model}: ")]


def _target_signature(target: Mapping[str, Any]) -> Signature:
    return _signature(target["namespace"], target["metricName"], target["dimensions"], target["statistic"],
                      target["period"])


def test_every_panel_queries_exactly_what_an_alarm_of_its_endpoint_reads(stack):
    cfg, rec = stack
    dashboard = _dashboard(rec)
    endpoints = _outputs(rec)["endpointNames"]
    assert sorted(endpoints) == sorted(cfg.models) == ["churn", "fraud"]
    charted = 0
    for model, endpoint in endpoints.items():
        alarms = {name: _alarm_queries(a) for name, a in _alarms_of(rec, endpoint).items()}
        alarm_metrics = {sig for metrics, _ in alarms.values() for sig in metrics.values()}
        panels = _panels_of(dashboard, model)
        assert panels, model
        for panel in panels:
            targets = panel["targets"]
            by_id = {t["id"]: t for t in targets}
            for target in targets:
                if "expression" in target:
                    # metric math: an alarm computes the same expression over the same metrics
                    assert any(
                        target["expression"] in expressions
                        and all(i in by_id and _target_signature(by_id[i]) == sig for i, sig in metrics.items())
                        for metrics, expressions in alarms.values()
                    ), (panel["title"], target["expression"])
                else:
                    assert target["matchExact"] is True, panel["title"]
                    assert _target_signature(target) in alarm_metrics, (panel["title"], _target_signature(target))
                    charted += 1
    assert charted == 2 * 8  # per model: invocations, 5xx and invocations, p99, 3 drift effects, samples


def test_every_metric_a_rollback_alarm_reads_has_a_panel(stack):
    """The other direction: nothing that can roll a deployment back is missing from the dashboard."""
    _, rec = stack
    dashboard = _dashboard(rec)
    outputs = _outputs(rec)
    for model, endpoint in outputs["endpointNames"].items():
        alarms = _alarms_of(rec, endpoint)
        rollback = outputs["rollbackAlarms"][model]
        assert len(rollback) == 5
        charted = {_target_signature(t) for p in _panels_of(dashboard, model) for t in p["targets"]
                   if "metricName" in t}
        for name in rollback:
            metrics, _ = _alarm_queries(alarms[name])
            assert set(metrics.values()) <= charted, name


def _threshold(panel: Mapping[str, Any]) -> float:
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"] == {"mode": "line"}, panel["title"]
    steps = defaults["thresholds"]["steps"]
    assert steps[0]["value"] is None and len(steps) == 2, panel["title"]
    return float(steps[1]["value"])


def _panel_reading(dashboard: Mapping[str, Any], model: str, metric: str | None = None,
                   expression: str | None = None) -> dict[str, Any]:
    found = [p for p in _panels_of(dashboard, model)
             if any((metric is not None and t.get("metricName") == metric and not t["hide"])
                    or (expression is not None and t.get("expression") == expression) for t in p["targets"])]
    assert len(found) == 1, (model, metric, expression, [p["title"] for p in found])
    return found[0]


def _rollback_alarm(rec: Recording, name: str) -> dict[str, Any]:
    return next(a.inputs for a in rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.inputs["name"] == name)


def _drift_thresholds_drawn(cfg: StackConfig, rec: Recording) -> dict[str, dict[str, float]]:
    """Per model and statistic, the threshold line of the panel that charts the drift alarm's effect metric,
    checked equal to that alarm's threshold."""
    dashboard = _dashboard(rec)
    drawn: dict[str, dict[str, float]] = {}
    for model, endpoint in _outputs(rec)["endpointNames"].items():
        for statistic in drift_decision.STATISTICS:
            alarm = _rollback_alarm(rec, f"{endpoint}-drift-{statistic.replace('_', '-')}")
            metrics, _ = _alarm_queries(alarm)
            effect = metrics["effect"][1]
            panel = _panel_reading(dashboard, model, metric=effect)
            assert _threshold(panel) == pytest.approx(alarm["threshold"]), panel["title"]
            drawn.setdefault(model, {})[statistic] = _threshold(panel)
    return drawn


def test_drift_panels_draw_the_stacks_thresholds_and_follow_the_config():
    base = prod_config()  # slo.driftWasserstein 0.15, driftNullRate 0.05, driftJensenShannon the default
    changed = replace(base, slo=replace(base.slo, drift_wasserstein=0.4, drift_jensen_shannon=0.3))
    before = _drift_thresholds_drawn(base, build(base))
    after = _drift_thresholds_drawn(changed, build(changed))
    for model in ("churn", "fraud"):
        assert before[model] == pytest.approx(drift_decision.effect_thresholds(base.slo))
        assert after[model] == pytest.approx(drift_decision.effect_thresholds(changed.slo))
        assert (before[model]["wasserstein"], after[model]["wasserstein"]) == pytest.approx((0.15, 0.4))
        assert after[model]["jensen_shannon"] == pytest.approx(0.3)
        assert after[model]["null_rate"] == before[model]["null_rate"]


def test_serving_panels_draw_the_alarm_thresholds_in_the_units_sagemaker_reports(stack):
    cfg, rec = stack
    dashboard = _dashboard(rec)
    for model, endpoint in _outputs(rec)["endpointNames"].items():
        latency_alarm = _rollback_alarm(rec, f"{endpoint}-p99-latency")
        latency = _panel_reading(dashboard, model, metric=latency_alarm["metricName"])
        # ModelLatency is in microseconds: the panel says so and draws slo.latencyP99Ms (180 ms) there
        assert latency_alarm["unit"] == "Microseconds"
        assert latency["fieldConfig"]["defaults"]["unit"] == "µs"
        assert _threshold(latency) == pytest.approx(latency_alarm["threshold"]) == pytest.approx(180_000)
        error_alarm = _rollback_alarm(rec, f"{endpoint}-error-rate")
        _, expressions = _alarm_queries(error_alarm)
        errors = _panel_reading(dashboard, model, expression=expressions[0])
        assert errors["fieldConfig"]["defaults"]["unit"] == "percentunit"
        assert _threshold(errors) == pytest.approx(error_alarm["threshold"]) == pytest.approx(cfg.slo.max_error_rate)
        shown = [t for t in errors["targets"] if not t["hide"]]
        assert [t.get("expression") for t in shown] == expressions  # the ratio, not the raw counts


def test_no_panel_queries_prometheus(stack):
    _, rec = stack
    dashboard = _dashboard(rec)
    assert dashboard["templating"]["list"] == [
        {"name": "cloudwatch", "label": "CloudWatch", "type": "datasource", "query": "cloudwatch",
         "current": {}, "hide": 0, "refresh": 1}]
    targets = [t for p in dashboard["panels"] for t in p["targets"]]
    assert len(targets) == 2 * 9
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "cloudwatch", "uid": "${cloudwatch}"}, panel["title"]
    for target in targets:
        assert target["datasource"] == {"type": "cloudwatch", "uid": "${cloudwatch}"}
        assert "expr" not in target  # PromQL
        assert (target["queryMode"], target["metricQueryType"], target["region"]) == ("Metrics", 0, REGION)
        assert not target.get("metricName", "").startswith("shipway")
        assert "psi" not in json.dumps(target).lower()


def _grafana_calls(dashboard: Mapping[str, Any]) -> list[Call]:
    """What Grafana's CloudWatch data source asks AWS for with this dashboard: one GetMetricData per
    panel refresh (math and hidden inputs ride in the same request), ListMetrics when someone opens a
    panel's query editor (namespaces, metric names, dimension values), GetMetricStatistics for the
    single-metric reads Amazon Managed Grafana documents for the data source."""
    calls = []
    for panel in dashboard["panels"]:
        regions = {t["region"] for t in panel["targets"]}
        for region in sorted(regions):
            for action in ("GetMetricData", "ListMetrics", "GetMetricStatistics"):
                calls.append(Call(panel["title"], f"cloudwatch:{action}", "*", {"aws:RequestedRegion": region}))
    return calls


def test_the_grafana_role_may_make_every_call_the_dashboard_needs_and_no_other(stack):
    _, rec = stack
    dashboard = _dashboard(rec)
    role = next(r for r in rec.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.endswith("-grafana-role-policy"))
    statements = list(statements_by_sid(role).values())
    calls = _grafana_calls(dashboard)
    assert len(calls) == 2 * 7 * 3
    for call in calls:
        assert allowed(statements, call), f"{call.by} needs {call.action} in {call.context}"
    # the same reads in another region, and anything but reading metrics, are refused
    elsewhere = Call("x", "cloudwatch:GetMetricData", "*", {"aws:RequestedRegion": "us-east-1"})
    writes = [Call("x", f"cloudwatch:{a}", "*", {"aws:RequestedRegion": REGION})
              for a in ("PutMetricData", "DescribeAlarms", "DeleteAlarms")]
    logs = Call("x", "logs:StartQuery", "*", {"aws:RequestedRegion": REGION})
    assert not any(allowed(statements, c) for c in (elsewhere, *writes, logs))
    cloudwatch_granted = {a for s in statements for a in s["Action"] if a.startswith("cloudwatch:")}
    assert cloudwatch_granted == {c.action for c in calls}
    grafana = rec.one("aws:grafana/workspace:Workspace").inputs
    assert grafana["dataSources"] == ["CLOUDWATCH", "PROMETHEUS"]


def test_every_slo_alarm_watches_the_variant_the_endpoint_really_has(stack: tuple[StackConfig, Recording]) -> None:
    """SageMaker publishes per production variant: an SLO alarm on a variant name the endpoint
    configuration does not declare never receives a datapoint and so never pages."""
    _, rec = stack
    variants = {v["variantName"] for c in rec.of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")
                for v in c.inputs["productionVariants"]}
    assert variants
    watched = {
        (q["metric"].get("dimensions") or {}).get("VariantName")
        for a in rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        for q in a.inputs.get("metricQueries", []) if "metric" in q
    } | {(a.inputs.get("dimensions") or {}).get("VariantName")
         for a in rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if "metricName" in a.inputs}
    watched.discard(None)  # metrics without a variant (the app's drift metrics from its log line)
    slo_alarms = [a for a in rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
                  if "-availability-" in a.inputs["name"] or "-latency-" in a.inputs["name"]]
    assert slo_alarms  # the burn-rate window alarms are among those checked
    assert watched <= variants, f"alarms watch {sorted(watched - variants)}, endpoints declare {sorted(variants)}"
