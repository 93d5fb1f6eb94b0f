"""Generated rules checked and unit-tested by the real `promtool` (Debian package `prometheus`).

Each alert gets a synthetic failing series (the alert must fire with exactly these labels and
rendered annotations) and a healthy one (it must not fire).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shipway_core.config import SloSettings
from shipway_core.observability.rules import RuleOptions, generate_rules, render_yaml
from tests.unit.observability.scenarios import recording_first

pytestmark = pytest.mark.integration

ENV = "test"
JOB = 'job="shipway-endpoints"'
SLO = SloSettings()  # 99.5% availability, 99% under 250ms, drift 0.1 sd / 0.06 JS / 3 null points, 24h freshness
EFFECT = f'shipway_feature_drift_effect{{{JOB},model="iris",version="1",'
IRIS1 = {"model": "iris", "version": "1"}
REQ = f'shipway_requests_total{{{JOB},model="iris",version="1",route="/invocations"'


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run the project setup (it installs the Debian package "
            "'prometheus', which provides /usr/bin/promtool), or `apt-get install -y prometheus`"
        )
    return path


def _rules() -> dict[str, Any]:
    return generate_rules(SLO, ["iris"], ENV, RuleOptions())


def _rule(name: str) -> dict[str, Any]:
    return next(r for g in _rules()["groups"] for r in g["rules"] if r.get("alert") == name)


def _render(template: str, labels: dict[str, str], value: float) -> str:
    """Render the two template forms the generator uses: $labels.x and $value | printf."""
    out = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    return re.sub(r'\{\{ \$value \| printf "([^"]+)" \}\}', lambda m: m.group(1) % value, out)


def _expected(name: str, series_labels: dict[str, str], value: float) -> dict[str, Any]:
    rule = _rule(name)
    labels = {**series_labels, **rule["labels"]}
    return {
        "exp_labels": labels,
        "exp_annotations": {k: _render(v, labels, value) for k, v in rule["annotations"].items()},
    }


def _group(
    series: list[tuple[str, str]], checks: list[tuple[str, str, list[dict[str, Any]]]], interval: str = "1m"
) -> dict[str, Any]:
    return {
        "interval": interval,
        "input_series": [{"series": s, "values": v} for s, v in series],
        "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": e} for t, a, e in checks],
    }


def _burn_series(errors_per_min: str) -> list[tuple[str, str]]:
    return [
        (f'{REQ},status_class="2xx"}}', "0+90x300"),
        (f'{REQ},status_class="5xx"}}', errors_per_min),
    ]


def _latency_series(slow_per_min: str) -> list[tuple[str, str]]:
    inv = f'{JOB},model="iris",version="1",route="/invocations"'
    return [
        (f"shipway_request_duration_seconds_count{{{inv}}}", "0+100x300"),
        (f'shipway_request_duration_seconds_bucket{{{inv},le="0.25"}}', slow_per_min),
        (f'shipway_request_duration_seconds_bucket{{{inv},le="+Inf"}}', "0+100x300"),
    ]


def _burn_case(name: str, series: list[tuple[str, str]], slo: str) -> list[dict[str, Any]]:
    """10% bad for an hour from a cold start: every window sees 0.1, so page and ticket both fire
    (the value rendered is the long window's ratio); the same traffic with no bad events fires nothing."""
    labels = {"model": "iris"}
    both = [
        _expected_rule(name, severity, labels, 0.1) for severity in ("page", "ticket")
    ]
    for rule in _rules_named(name):
        assert rule["labels"]["slo"] == slo
    return [_group(series, [("60m", name, both)])]


def _rules_named(name: str) -> list[dict[str, Any]]:
    return [r for g in _rules()["groups"] for r in g["rules"] if r.get("alert") == name]


def _expected_rule(name: str, severity: str, series_labels: dict[str, str], value: float) -> dict[str, Any]:
    rule = next(r for r in _rules_named(name) if r["labels"]["severity"] == severity)
    labels = {**series_labels, **rule["labels"]}
    return {
        "exp_labels": labels,
        "exp_annotations": {k: _render(v, labels, value) for k, v in rule["annotations"].items()},
    }


CASES: dict[str, Any] = {
    "ShipwayAvailabilityBudgetBurn": lambda: (
        _burn_case("ShipwayAvailabilityBudgetBurn", _burn_series("0+10x300"), "availability")
        + [_group(_burn_series("0+0x300"), [("60m", "ShipwayAvailabilityBudgetBurn", [])])]
    ),
    "ShipwayLatencyBudgetBurn": lambda: (
        _burn_case("ShipwayLatencyBudgetBurn", _latency_series("0+90x300"), "latency")
        + [_group(_latency_series("0+100x300"), [("60m", "ShipwayLatencyBudgetBurn", [])])]
    ),
    "ShipwayEndpointDown": lambda: [
        _group(
            [(f'up{{{JOB},instance="127.0.0.1:8100"}}', "0x10")],
            [
                (
                    "5m",
                    "ShipwayEndpointDown",
                    [
                        _expected(
                            "ShipwayEndpointDown",
                            {"job": "shipway-endpoints", "instance": "127.0.0.1:8100"},
                            0,
                        )
                    ],
                )
            ],
        ),
        _group([(f'up{{{JOB},instance="127.0.0.1:8100"}}', "1x10")], [("5m", "ShipwayEndpointDown", [])]),
    ],
    "ShipwayFeatureDrift": lambda: [
        # effect sizes over their thresholds (0.1 sd, 0.06 JS, 3 null points) fire, one alert per
        # feature and statistic; those under them do not, whatever PSI says
        _group(
            [
                (f'{EFFECT}feature="age",statistic="wasserstein"}}', "0.25x10"),
                (f'{EFFECT}feature="age",statistic="null_rate"}}', "0x10"),
                (f'{EFFECT}feature="plan",statistic="jensen_shannon"}}', "0.12x10"),
                (f'{EFFECT}feature="plan",statistic="null_rate"}}', "0.05x10"),
                (f'{EFFECT}feature="income",statistic="wasserstein"}}', "0.04x10"),
                (f'{EFFECT}feature="region",statistic="jensen_shannon"}}', "0.02x10"),
                (f'shipway_feature_psi{{{JOB},model="iris",version="1",feature="income"}}', "0.35x10"),
                (f'shipway_drift_samples{{{JOB},model="iris",version="1"}}', "1000x10"),
            ],
            [
                (
                    "3m",
                    "ShipwayFeatureDrift",
                    [
                        _expected("ShipwayFeatureDrift", {**IRIS1, "feature": f, "statistic": s}, v)
                        for f, s, v in (("age", "wasserstein", 0.25), ("plan", "jensen_shannon", 0.12),
                                        ("plan", "null_rate", 0.05))
                    ],
                )
            ],
        ),
        # over the threshold, but on too few samples to trust
        _group(
            [
                (f'{EFFECT}feature="age",statistic="wasserstein"}}', "0.25x10"),
                (f'shipway_drift_samples{{{JOB},model="iris",version="1"}}', "100x10"),
            ],
            [("3m", "ShipwayFeatureDrift", [])],
        ),
    ],
    "ShipwayModelQualityLow": lambda: [
        _group(
            [
                ('shipway_model_quality{model="iris",version="1",metric="accuracy"}', "0.6x30"),
                ('shipway_model_quality_samples{model="iris",version="1"}', "500x30"),
            ],
            [
                (
                    "20m",
                    "ShipwayModelQualityLow",
                    [
                        _expected(
                            "ShipwayModelQualityLow",
                            {"model": "iris", "version": "1", "metric": "accuracy"},
                            0.6,
                        )
                    ],
                )
            ],
        ),
        _group(
            [
                ('shipway_model_quality{model="iris",version="1",metric="accuracy"}', "0.95x30"),
                ('shipway_model_quality_samples{model="iris",version="1"}', "500x30"),
            ],
            [("20m", "ShipwayModelQualityLow", [])],
        ),
    ],
    # a day of samples every 10m (evaluated every 10m too, see EVAL_INTERVAL) keeps promtool fast
    "ShipwayModelStale": lambda: [
        _group(
            [(f'shipway_model_trained_timestamp_seconds{{{JOB},model="iris",version="1"}}', "0x160")],
            [
                (
                    "25h",
                    "ShipwayModelStale",
                    [_expected("ShipwayModelStale", {"model": "iris", "version": "1"}, 25.0)],
                )
            ],
            interval="10m",
        ),
        _group(
            [(f'shipway_model_trained_timestamp_seconds{{{JOB},model="iris",version="1"}}', "3600x160")],
            [("25h", "ShipwayModelStale", [])],
            interval="10m",
        ),
    ],
}


EVAL_INTERVAL = {"ShipwayModelStale": "10m"}


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "shipway-rules.yml"
    path.write_text(render_yaml(_rules()))
    return path


def test_promtool_check_rules_accepts_the_generated_file(rule_file: Path) -> None:
    proc = subprocess.run([_promtool(), "check", "rules", str(rule_file)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in _rules()['groups'])} rules found" in proc.stdout


def test_every_alert_has_a_promtool_case() -> None:
    from shipway_core.observability.rules import alert_names

    assert sorted(CASES) == sorted(alert_names(_rules()))


@pytest.mark.parametrize("alert", sorted(CASES))
def test_promtool_unit_tests_fire_on_failure_and_stay_quiet_when_healthy(alert: str, rule_file: Path) -> None:
    tests = {
        "rule_files": [rule_file.name],
        "group_eval_order": recording_first(_rules()),
        "evaluation_interval": EVAL_INTERVAL.get(alert, "1m"),
        "tests": CASES[alert](),
    }
    test_file = rule_file.parent / f"{alert}.test.yml"
    test_file.write_text(render_yaml(tests))
    proc = subprocess.run(
        [_promtool(), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        check=False,
        cwd=rule_file.parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr
