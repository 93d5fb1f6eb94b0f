"""Rule generation: thresholds follow the SLO, every alert is routable and documented."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from shipway_core.config import SloSettings
from shipway_core.observability.promql import EXTRA_METRICS, SERVING_METRICS, base_metric, metric_names
from shipway_core.observability.rules import (
    ALERT_NAMES,
    AlertTimings,
    QualityObjective,
    RuleOptions,
    alert_names,
    generate_rules,
    recorded_names,
    render_yaml,
)
from shipway_core.observability.slo import burn_threshold

ROOT = Path(__file__).resolve().parents[3]


def _alerts(doc: dict) -> list[dict]:
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def _alert(doc: dict, name: str) -> dict:
    matches = [a for a in _alerts(doc) if a["alert"] == name]
    assert len(matches) == 1, name
    return matches[0]


@pytest.fixture
def doc() -> dict:
    return generate_rules(SloSettings(), ["iris", "churn"], "prod")


def _burns(doc: dict, name: str) -> dict[str, dict]:
    """The alert rules named ``name`` by severity; there must be exactly one per severity."""
    rules = [a for a in _alerts(doc) if a["alert"] == name]
    by_severity = {a["labels"]["severity"]: a for a in rules}
    assert len(by_severity) == len(rules) == 2, name
    return by_severity


def test_groups_and_recording_rules(doc) -> None:
    assert [g["name"] for g in doc["groups"]] == [
        "shipway-prod-recording",
        "shipway-prod-slo-alerts",
        "shipway-prod-ml-alerts",
    ]
    windows = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    assert recorded_names(doc) == [f"model:shipway_request_errors:ratio_rate{w}" for w in windows] + [
        f"model:shipway_request_slow:ratio_rate{w}" for w in windows
    ] + [
        f"model:shipway_{slo}_sli_requests:increase{w}" for slo in ("availability", "latency")
        for w in ("1h", "6h", "1d", "3d")
    ] + [
        "model:shipway_request_duration_seconds:p50_rate5m",
        "model:shipway_request_duration_seconds:p99_rate5m",
    ]
    ratio_1h = doc["groups"][0]["rules"][2]["expr"]
    assert 'route="/invocations",status_class="5xx"}[1h]' in ratio_1h
    assert 'model=~"churn|iris"' in ratio_1h and 'job="shipway-endpoints"' in ratio_1h
    requests_1h = doc["groups"][0]["rules"][14]["expr"]
    assert requests_1h == ("sum by (model) (increase(shipway_requests_total"
                           '{job="shipway-endpoints",model=~"churn|iris",route="/invocations"}[1h]))')
    assert doc["groups"][0]["rules"][18]["expr"].startswith(
        "sum by (model) (increase(shipway_request_duration_seconds_count{")
    slow_1h = doc["groups"][0]["rules"][9]["expr"]
    assert slow_1h == (
        "(sum by (model) (rate(shipway_request_duration_seconds_count"
        '{job="shipway-endpoints",model=~"churn|iris",route="/invocations"}[1h])) - '
        "sum by (model) (rate(shipway_request_duration_seconds_bucket"
        '{job="shipway-endpoints",model=~"churn|iris",route="/invocations",le="0.25"}[1h])))\n/\n'
        "sum by (model) (rate(shipway_request_duration_seconds_count"
        '{job="shipway-endpoints",model=~"churn|iris",route="/invocations"}[1h]))'
    )


@pytest.mark.parametrize(
    ("availability", "fast", "medium", "day", "slow"),
    [
        (0.995, "0.072", "0.03", "0.015", "0.005"),
        (0.999, "0.0144", "0.006", "0.003", "0.001"),
        (0.9999, "0.00144", "0.0006", "0.0003", "0.0001"),
    ],
)
def test_burn_rate_thresholds_follow_the_slo_target(availability, fast, medium, day, slow) -> None:
    doc = generate_rules(SloSettings(availability=availability), ["iris"], "prod")
    burns = _burns(doc, "ShipwayAvailabilityBudgetBurn")
    r = "model:shipway_request_errors:ratio_rate"
    n = "model:shipway_availability_sli_requests:increase"  # low-traffic guard on the long window
    assert burns["page"]["expr"] == (
        f"({r}1h > {fast}\nand\n{r}5m > {fast}\nand\n{n}1h >= 100)\nor\n"
        f"({r}6h > {medium}\nand\n{r}30m > {medium}\nand\n{n}6h >= 100)"
    )
    assert burns["ticket"]["expr"] == (
        f"({r}1d > {day}\nand\n{r}2h > {day}\nand\n{n}1d >= 100)\nor\n"
        f"({r}3d > {slow}\nand\n{r}6h > {slow}\nand\n{n}3d >= 100)"
    )


def test_low_traffic_guard_follows_the_config_and_turns_off_at_zero() -> None:
    guarded = _burns(generate_rules(SloSettings(min_requests=25), ["iris"], "prod"), "ShipwayLatencyBudgetBurn")
    assert "model:shipway_latency_sli_requests:increase1h >= 25)" in guarded["page"]["expr"]
    off = generate_rules(SloSettings(min_requests=0), ["iris"], "prod")
    assert "sli_requests" not in str(off)
    with pytest.raises(ValueError, match="slo.minRequests: -1 is not valid; use a whole number of requests"):
        generate_rules(SloSettings(min_requests=-1), ["iris"], "prod")


def test_latency_slo_has_its_own_objective_and_threshold_bucket() -> None:
    doc = generate_rules(SloSettings(latency_p99_ms=120, latency_objective=0.95), ["iris"], "prod")
    page = _burns(doc, "ShipwayLatencyBudgetBurn")["page"]["expr"]
    # budget 5%: 14.4x = 0.72, 6x = 0.3
    assert page.startswith("(model:shipway_request_slow:ratio_rate1h > 0.72\n")
    assert "ratio_rate30m > 0.3\nand\n" in page
    assert all('le="0.12"' in r["expr"] for r in doc["groups"][0]["rules"] if "request_slow" in r["record"])


def test_loose_slo_caps_the_burn_threshold_at_total_failure() -> None:
    assert burn_threshold(14.4, 0.1) == (">=", 1.0)
    assert burn_threshold(6.0, 0.1) == (">", pytest.approx(0.6))
    doc = generate_rules(SloSettings(latency_objective=0.9), ["iris"], "dev")
    assert "ratio_rate1h >= 1\n" in _burns(doc, "ShipwayLatencyBudgetBurn")["page"]["expr"]


def test_burn_rate_alerts_have_no_for_and_one_rule_per_slo_and_severity(doc) -> None:
    for name, slo in (("ShipwayAvailabilityBudgetBurn", "availability"), ("ShipwayLatencyBudgetBurn", "latency")):
        for severity, rule in _burns(doc, name).items():
            assert "for" not in rule, f"{name}/{severity} must not wait: the short window debounces"
            assert rule["labels"] == {"severity": severity, "environment": "prod", "slo": slo}


def test_severities_and_routing_labels(doc) -> None:
    severity = {a["alert"]: a["labels"]["severity"] for a in _alerts(doc) if "slo" not in a["labels"]}
    assert severity == {
        "ShipwayEndpointDown": "page",
        "ShipwayFeatureDrift": "ticket",
        "ShipwayModelQualityLow": "ticket",
        "ShipwayModelStale": "ticket",
    }
    for alert in _alerts(doc):
        assert alert["labels"]["environment"] == "prod"
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
        assert alert["annotations"]["runbook_url"] == f"docs/runbooks/{alert['alert']}.md"


def test_burn_alert_description_states_the_budget_spent(doc) -> None:
    page = _burns(doc, "ShipwayAvailabilityBudgetBurn")["page"]["annotations"]["description"]
    assert "14.4x over 1h and 5m (2% of the 30-day budget gone in 1h)" in page
    assert "6x over 6h and 30m (5% of the 30-day budget gone in 6h)" in page
    ticket = _burns(doc, "ShipwayLatencyBudgetBurn")["ticket"]["annotations"]["description"]
    assert "slower than 250 ms" in ticket and "3x over 1d and 2h (10% of the 30-day budget gone in 1d)" in ticket


def test_slo_values_flow_into_drift_and_freshness() -> None:
    slo = SloSettings(drift_wasserstein=0.2, drift_jensen_shannon=0.08, drift_null_rate=0.05, freshness_hours=72)
    doc = generate_rules(slo, ["iris"], "prod")
    drift = _alert(doc, "ShipwayFeatureDrift")
    sel = 'job="shipway-endpoints",model=~"iris"'
    by = "max by (model, version, feature, statistic) (shipway_feature_drift_effect"
    assert drift["expr"] == (
        "(\n"
        f'{by}{{{sel},statistic="wasserstein"}}) > 0.2\n'
        "or\n"
        f'{by}{{{sel},statistic="jensen_shannon"}}) > 0.08\n'
        "or\n"
        f'{by}{{{sel},statistic="null_rate"}}) > 0.05\n'
        ")\n"
        "and on (model, version)\n"
        f"max by (model, version) (shipway_drift_samples{{{sel}}}) >= 500"
    )
    assert "shipway_feature_psi" not in drift["expr"]  # a p-value or PSI is no signal at volume
    assert drift["for"] == "1m"
    assert _alert(doc, "ShipwayModelStale")["expr"] == (
        '(time() - max by (model, version) (shipway_model_trained_timestamp_seconds{model=~"iris"})) / 3600\n> 72'
    )


def test_for_durations_are_configurable_and_validated() -> None:
    options = RuleOptions(timings=replace(AlertTimings(), drift="15s", endpoint_down="0s"))
    doc = generate_rules(SloSettings(), ["iris"], "local", options)
    assert _alert(doc, "ShipwayFeatureDrift")["for"] == "15s"
    assert _alert(doc, "ShipwayEndpointDown")["for"] == "0s"
    with pytest.raises(ValueError, match="timings.drift: 'one minute' is not valid; use a Prometheus duration"):
        AlertTimings(drift="one minute")


def test_quality_objectives_for_accuracy_and_mae() -> None:
    options = RuleOptions(quality=(QualityObjective("accuracy", minimum=0.9), QualityObjective("mae", maximum=3.5)))
    doc = generate_rules(SloSettings(), ["iris"], "prod", options)
    quality = [a for a in _alerts(doc) if a["alert"] == "ShipwayModelQualityLow"]
    assert [q["expr"].splitlines()[0] for q in quality] == [
        'min by (model, version, metric) (shipway_model_quality{metric="accuracy",model=~"iris"}) < 0.9',
        'max by (model, version, metric) (shipway_model_quality{metric="mae",model=~"iris"}) > 3.5',
    ]
    with pytest.raises(ValueError, match="quality.mae: set exactly one of minimum or maximum"):
        QualityObjective("mae")


@pytest.mark.parametrize(
    ("models", "env", "message"),
    [
        (["Iris"], "prod", "models: 'Iris' is not valid"),
        (["iris"], "", "environment: '' is not valid"),
    ],
)
def test_bad_inputs_are_rejected(models, env, message) -> None:
    with pytest.raises(ValueError, match=message):
        generate_rules(SloSettings(), models, env)


def test_every_emittable_alert_has_a_runbook(doc) -> None:
    assert alert_names(doc) == list(ALERT_NAMES)
    for name in ALERT_NAMES:
        runbook = ROOT / "docs" / "runbooks" / f"{name}.md"
        assert runbook.is_file(), f"missing runbook {runbook}"
        text = runbook.read_text()
        for section in ("## What it means", "## Confirm", "## Mitigate", "## Escalate"):
            assert section in text, f"{runbook.name} lacks {section}"
    assert "shipway model rollback" in (ROOT / "docs/runbooks/ShipwayAvailabilityBudgetBurn.md").read_text()
    assert (ROOT / "docs" / "runbooks" / "post-incident-review.md").is_file()


def test_alerts_read_only_known_metrics_and_recorded_rules(doc) -> None:
    known = SERVING_METRICS | EXTRA_METRICS | set(recorded_names(doc))
    for group in doc["groups"]:
        for rule in group["rules"]:
            unknown = {base_metric(n) for n in metric_names(rule["expr"])} - known
            assert not unknown, f"{rule.get('alert') or rule.get('record')} reads unknown metrics {unknown}"


def test_rendered_yaml_roundtrips(doc) -> None:
    assert YAML(typ="safe").load(render_yaml(doc)) == doc
