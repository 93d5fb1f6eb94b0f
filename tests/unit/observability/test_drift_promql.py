"""The drift dashboards' PromQL, evaluated by the real ``promtool`` on series the serving app exports.

Dashboards draw what the drift alert decides on (effect size against the stack's threshold, with
the live-sample guard), not PSI: a chart that shows a different measure from the one that pages
sends the on-call engineer the wrong way.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipway_core.config import SloSettings
from shipway_core.observability import drift
from shipway_core.observability.dashboards import DRIFT_PANEL, endpoint_dashboard, platform_dashboard

pytestmark = pytest.mark.integration

SLO = SloSettings()  # thresholds: wasserstein 0.1, jensen_shannon 0.06, null_rate 0.03
JOB = 'job="shipway-endpoints"'


def _effect(model: str, feature: str, statistic: str, value: float) -> dict[str, str]:
    labels = f'{JOB},model="{model}",version="1",feature="{feature}",statistic="{statistic}"'
    return {"series": f"shipway_feature_drift_effect{{{labels}}}", "values": f"{value}x5"}


def _series(name: str, model: str, value: float, **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{{JOB},model="{model}",version="1"{extra}}}', "values": f"{value}x5"}


SERIES = [
    # iris: enough samples; "age" drifted by distance, "plan" by null rate, "zip" under every threshold
    _series("shipway_drift_samples", "iris", 800),
    _effect("iris", "age", "wasserstein", 0.25),
    _effect("iris", "age", "null_rate", 0.0),
    _effect("iris", "plan", "jensen_shannon", 0.02),
    _effect("iris", "plan", "null_rate", 0.05),
    _effect("iris", "zip", "wasserstein", 0.09),
    # PSI says zip drifted a lot: the dashboard must not count it (no alert decides on PSI)
    _series("shipway_feature_psi", "iris", 0.9, feature="zip"),
    # churn: a large effect but only 120 rows in the window: the alert's guard keeps it quiet
    _series("shipway_drift_samples", "churn", 120),
    _effect("churn", "tenure", "wasserstein", 0.8),
]


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run the project setup (Debian package 'prometheus')")
    return path


def _expect(tmp_path: Path, expr: str, samples: list[dict[str, Any]]) -> None:
    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": SERIES,
        "promql_expr_test": [{"expr": expr, "eval_time": "3m", "exp_samples": samples}],
    }]}
    (tmp_path / "t.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = subprocess.run([_promtool(), "test", "rules", "t.yml"], cwd=tmp_path, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_drifted_features_counts_what_the_alert_would_fire_on(tmp_path: Path) -> None:
    _expect(tmp_path, drift.drifted_features_promql(SLO), [{"labels": "{}", "value": 2}])


def test_drifted_features_follows_the_stack_thresholds(tmp_path: Path) -> None:
    loose = SloSettings(drift_wasserstein=0.3, drift_null_rate=0.1)
    _expect(tmp_path, drift.drifted_features_promql(loose), [{"labels": "{}", "value": 0}])


def test_effect_ratio_puts_every_statistic_on_one_scale_with_the_alert_at_1(tmp_path: Path) -> None:
    _expect(tmp_path, drift.effect_ratio_promql(SLO, '{model="iris"}', by="feature"), [
        {"labels": '{feature="age",statistic="wasserstein"}', "value": 2.5},
        {"labels": '{feature="age",statistic="null_rate"}', "value": 0},
        {"labels": '{feature="plan",statistic="jensen_shannon"}', "value": 0.02 / 0.06},
        {"labels": '{feature="plan",statistic="null_rate"}', "value": 0.05 / 0.03},
        {"labels": '{feature="zip",statistic="wasserstein"}', "value": 0.09 / 0.1},
    ])


def test_the_dashboards_draw_effect_sizes_and_never_psi() -> None:
    endpoint = endpoint_dashboard("iris", "prod", SLO)
    panel = next(p for p in endpoint["panels"] if p["title"] == DRIFT_PANEL)
    assert panel["targets"][0]["expr"] == drift.effect_ratio_promql(
        SLO, '{job="shipway-endpoints",model="iris",version=~"$version"}', by="feature")
    assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"][-1] == {"color": "red", "value": 1.0}
    overview = platform_dashboard("prod", SLO)
    drifted = next(p for p in overview["panels"] if p["title"] == "Drifted features")
    assert drifted["targets"][0]["expr"] == drift.drifted_features_promql(SLO)
    exprs = [t["expr"] for d in (endpoint, overview) for p in d["panels"] for t in p.get("targets", [])]
    assert exprs and not [e for e in exprs if "shipway_feature_psi" in e]
