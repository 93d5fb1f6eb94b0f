"""compute_drift: which features it flags, against raw data and against a stored profile."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shipway.drift.profile import build_profile
from shipway.drift.report import DriftThresholds, compute_drift


def _data(seed: int, shift: bool, n: int = 20_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "stable": rng.normal(0, 1, n),
            "shifted": rng.normal(1.0 if shift else 0.0, 1, n),
            "scaled": rng.normal(0, 3.0 if shift else 1.0, n),
            "colour": rng.choice(["red", "green", "blue"], n, p=[0.2, 0.3, 0.5] if shift else [0.5, 0.3, 0.2]),
            "size": rng.choice(["s", "m"], n, p=[0.5, 0.5]),
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _data(1, shift=False)


@pytest.fixture(scope="module")
def current() -> pd.DataFrame:
    return _data(2, shift=True)


def test_raw_reference_flags_exactly_the_drifted_features(reference, current) -> None:
    report = compute_drift(reference, current)
    assert sorted(report.drifted_features) == ["colour", "scaled", "shifted"]
    by_name = {f.name: f for f in report.features}
    assert by_name["shifted"].test == "ks" and by_name["colour"].test == "chi2"
    assert by_name["stable"].psi < 0.01 and by_name["shifted"].psi > 0.2
    assert set(by_name["shifted"].reasons) == {"effect", "psi", "test"}
    assert by_name["shifted"].effect_measure == "wasserstein"
    assert by_name["shifted"].effect == pytest.approx(1.0, abs=0.05)
    assert report.reference_rows == 20_000 and report.current_rows == 20_000


def test_profile_reference_agrees_with_raw_reference(reference, current) -> None:
    raw = compute_drift(reference, current)
    stored = compute_drift(build_profile(reference), current)
    assert stored.drifted_features == raw.drifted_features
    for a, b in zip(raw.features, stored.features, strict=True):
        assert a.psi == pytest.approx(b.psi, rel=1e-9)
        assert abs(a.statistic - b.statistic) < (0.015 if a.kind == "numeric" else 1e-6)
    assert {f.test for f in stored.features if f.kind == "numeric"} == {"ks-sketch"}


def test_no_drift_on_a_sample_of_the_same_distribution(reference) -> None:
    report = compute_drift(reference, _data(3, shift=False), thresholds=DriftThresholds(rule="psi"))
    assert report.drifted_features == []
    assert not report.drift_detected


def test_rules_choose_which_signals_must_agree() -> None:
    t_any, t_all = DriftThresholds(rule="any"), DriftThresholds(rule="all")
    assert t_any.decide(0.05, 0.001) == (True, ("test",))
    assert t_all.decide(0.05, 0.001) == (False, ("test",))
    assert DriftThresholds(rule="psi").decide(0.3, 0.5) == (True, ("psi",))
    assert DriftThresholds(rule="test").decide(0.3, 0.5) == (False, ("psi",))
    with pytest.raises(ValueError, match="rule: 'some' is not valid; allowed: effect, any, all, psi, test"):
        DriftThresholds(rule="some")
    with pytest.raises(ValueError, match="p_value: 1.5 is not valid"):
        DriftThresholds(p_value=1.5)


def test_missing_and_all_null_features_are_reported(reference) -> None:
    current = _data(4, shift=False).drop(columns=["size"]).assign(stable=np.nan)
    report = compute_drift(build_profile(reference), current)
    assert report.missing_features == ("size",)
    stable = next(f for f in report.features if f.name == "stable")
    assert stable.drifted and stable.reasons == ("no-values",) and stable.current_null_rate == 1.0


def test_unseen_category_counts_as_drift(reference) -> None:
    current = reference.assign(colour="purple")
    report = compute_drift(reference, current, features=["colour"])
    colour = report.features[0]
    assert colour.drifted and colour.psi > 5
    assert "purple" in colour.bins


def test_report_dict_is_json_serialisable(reference, current) -> None:
    doc = compute_drift(reference, current).to_dict()
    parsed = json.loads(json.dumps(doc))
    assert parsed["drift_detected"] is True
    assert parsed["thresholds"] == {
        "psi": 0.2,
        "p_value": 0.01,
        "rule": "effect",
        "wasserstein": 0.1,
        "jensen_shannon": 0.06,
        "null_rate": 0.03,
        "small_sample": 1000,
    }
    assert {f["name"] for f in parsed["features"]} == {"stable", "shifted", "scaled", "colour", "size"}


def test_batch_psi_equals_the_serving_apps_online_psi_including_nulls(reference) -> None:
    """The alert (online gauge) and the confirming report (batch) must tell the same story."""
    from shipway.serving.drift import DriftMonitor, parse_profile

    current = _data(6, shift=True, n=4000)
    current.loc[:999, "stable"] = np.nan
    profile = build_profile(reference)
    monitor = DriftMonitor(parse_profile(profile), {"stable", "shifted"}, window=10**9)
    monitor.observe({k: current[k].tolist() for k in ("stable", "shifted")}, len(current))
    online = monitor.compute()
    batch = {f.name: f for f in compute_drift(profile, current, features=["stable", "shifted"]).features}
    assert batch["stable"].current_null_rate == 0.25
    for name in ("stable", "shifted"):
        assert batch[name].psi == pytest.approx(online[name], rel=1e-9)
    assert batch["stable"].drifted  # a quarter of the rows went null: a pipeline break shows as drift


def test_threaded_and_sequential_runs_give_identical_reports(reference, current) -> None:
    one = compute_drift(reference, current, workers=1).to_dict()
    many = compute_drift(reference, current, workers=4).to_dict()
    one.pop("generated_at"), many.pop("generated_at")
    assert one == many


def test_report_json_is_strict_when_a_test_cannot_run() -> None:
    profile = build_profile(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    del profile["features"]["x"]["quantiles"]  # an older profile without the KS sketch
    report = compute_drift(profile, pd.DataFrame({"x": [1.0, 2.5]}))
    feature = report.to_dict()["features"][0]
    assert feature["test"] == "none" and feature["statistic"] is None and feature["p_value"] == 1.0
    json.dumps(report.to_dict(), allow_nan=False)
