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
    burn_threshold,
    generate_rules,
    recorded_names,
    render_yaml,
)

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


def test_groups_and_recording_rules(doc) -> None:
    assert [g["name"] for g in doc["groups"]] == [
        "shipway-prod-recording",
        "shipway-prod-slo-alerts",
        "shipway-prod-ml-alerts",
    ]
    assert recorded_names(doc) == [
        f"model:shipway_request_errors:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    ] + [
        "model:shipway_request_duration_seconds:p50_rate5m",
        "model:shipway_request_duration_seconds:p99_rate5m",
    ]
    ratio_1h = doc["groups"][0]["rules"][2]["expr"]
    assert 'status_class="5xx"' in ratio_1h and "[1h]" in ratio_1h
    assert 'model=~"churn|iris"' in ratio_1h and 'job="shipway-endpoints"' in ratio_1h
    assert 'route=~"/invocations"' in ratio_1h


@pytest.mark.parametrize(
    ("availability", "fast", "medium", "slow"),
    [
        (0.995, "0.072", "0.03", "0.005"),
        (0.999, "0.0144", "0.006", "0.001"),
        (0.9999, "0.00144", "0.0006", "0.0001"),
    ],
)
def test_burn_rate_thresholds_follow_the_slo_target(availability, fast, medium, slow) -> None:
    doc = generate_rules(SloSettings(availability=availability), ["iris"], "prod")
    assert _alert(doc, "ShipwayErrorBudgetFastBurn")["expr"] == (
        f"model:shipway_request_errors:ratio_rate1h > {fast}\nand\nmodel:shipway_request_errors:ratio_rate5m > {fast}"
    )
    assert _alert(doc, "ShipwayErrorBudgetMediumBurn")["expr"] == (
        f"model:shipway_request_errors:ratio_rate6h > {medium}\nand\n"
        f"model:shipway_request_errors:ratio_rate30m > {medium}"
    )
    assert _alert(doc, "ShipwayErrorBudgetSlowBurn")["expr"] == (
        f"model:shipway_request_errors:ratio_rate3d > {slow}\nand\nmodel:shipway_request_errors:ratio_rate6h > {slow}"
    )


def test_loose_slo_caps_the_burn_threshold_at_total_failure() -> None:
    assert burn_threshold(14.4, 0.9) == (">=", 1.0)
    assert burn_threshold(6.0, 0.9) == (">", pytest.approx(0.6))
    doc = generate_rules(SloSettings(availability=0.9), ["iris"], "dev")
    assert "ratio_rate1h >= 1\n" in _alert(doc, "ShipwayErrorBudgetFastBurn")["expr"]


def test_severities_and_routing_labels(doc) -> None:
    severity = {a["alert"]: a["labels"]["severity"] for a in _alerts(doc)}
    assert severity == {
        "ShipwayErrorBudgetFastBurn": "page",
        "ShipwayErrorBudgetMediumBurn": "page",
        "ShipwayErrorBudgetSlowBurn": "ticket",
        "ShipwayLatencyP99High": "page",
        "ShipwayPredictionErrorsHigh": "ticket",
        "ShipwayEndpointDown": "page",
        "ShipwayFeatureDrift": "ticket",
        "ShipwayModelQualityLow": "ticket",
        "ShipwayModelStale": "ticket",
    }
    for alert in _alerts(doc):
        assert alert["labels"]["environment"] == "prod"
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
        assert alert["annotations"]["runbook_url"] == f"docs/runbooks/{alert['alert']}.md"


def test_slo_values_flow_into_latency_drift_errors_and_freshness() -> None:
    slo = SloSettings(latency_p99_ms=120, drift_psi=0.25, max_error_rate=0.02, freshness_hours=72)
    doc = generate_rules(slo, ["iris"], "prod")
    assert _alert(doc, "ShipwayLatencyP99High")["expr"] == "model:shipway_request_duration_seconds:p99_rate5m > 0.12"
    drift = _alert(doc, "ShipwayFeatureDrift")
    assert drift["expr"] == (
        "max by (model, version, feature) "
        '(shipway_feature_psi{job="shipway-endpoints",model=~"iris"}) > 0.25\n'
        "and on (model, version)\n"
        'max by (model, version) (shipway_drift_samples{job="shipway-endpoints",model=~"iris"}) >= 500'
    )
    assert drift["for"] == "1m"
    assert _alert(doc, "ShipwayPredictionErrorsHigh")["expr"].endswith("\n> 0.02")
    assert _alert(doc, "ShipwayModelStale")["expr"] == (
        '(time() - max by (model, version) (shipway_model_trained_timestamp_seconds{model=~"iris"})) / 3600\n> 72'
    )


def test_for_durations_are_configurable_and_validated() -> None:
    options = RuleOptions(timings=replace(AlertTimings(), drift="15s", fast_burn="0s"))
    doc = generate_rules(SloSettings(), ["iris"], "local", options)
    assert _alert(doc, "ShipwayFeatureDrift")["for"] == "15s"
    assert _alert(doc, "ShipwayErrorBudgetFastBurn")["for"] == "0s"
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
    assert "shipway model rollback" in (ROOT / "docs/runbooks/ShipwayErrorBudgetFastBurn.md").read_text()
    assert (ROOT / "docs" / "runbooks" / "post-incident-review.md").is_file()


def test_alerts_read_only_known_metrics_and_recorded_rules(doc) -> None:
    known = SERVING_METRICS | EXTRA_METRICS | set(recorded_names(doc))
    for group in doc["groups"]:
        for rule in group["rules"]:
            unknown = {base_metric(n) for n in metric_names(rule["expr"])} - known
            assert not unknown, f"{rule.get('alert') or rule.get('record')} reads unknown metrics {unknown}"


def test_rendered_yaml_roundtrips(doc) -> None:
    assert YAML(typ="safe").load(render_yaml(doc)) == doc
