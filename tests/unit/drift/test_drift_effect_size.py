"""Effect-size decisions (issue 21): the defaults flag shifts worth acting on and ignore shifts
nobody would act on, at every volume from 1k to 1M rows. p-value rules fail this at volume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipway.drift.profile import build_profile
from shipway.drift.report import DriftThresholds, compute_drift
from shipway.drift.stats import jensen_shannon, wasserstein_normed

SIZES = [1_000, 10_000, 100_000, 1_000_000]
SHARES = np.array([0.4, 0.3, 0.2, 0.1])
CATS = np.array(["a", "b", "c", "d"])


def _numeric(rng: np.random.Generator, n: int, mean: float = 0.0, sd: float = 1.0, nulls: float = 0.0) -> np.ndarray:
    values = rng.normal(10.0 + mean * 2.0, 2.0 * sd, n)  # reference sd is 2: effects are in sd units
    values[rng.random(n) < nulls] = np.nan
    return values


def _categorical(rng: np.random.Generator, n: int, move: float = 0.0) -> np.ndarray:
    p = SHARES + np.array([-move, move, 0.0, 0.0])  # `move` of a's share goes to b
    return rng.choice(CATS, n, p=p)


def _frame(seed: int, n: int, **changes: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "mean_shift": _numeric(rng, n, mean=changes.get("mean", 0.0)),
            "spread": _numeric(rng, n, sd=changes.get("sd", 1.0)),
            "nulls": _numeric(rng, n, nulls=changes.get("nulls", 0.0)),
            "share": _categorical(rng, n, move=changes.get("share", 0.0)),
        }
    )


def _flags(n: int, **changes: float) -> dict[str, bool]:
    reference = _frame(10 + n % 97, n)
    current = _frame(20 + n % 89, n, **changes)
    return {f.name: f.drifted for f in compute_drift(reference, current).features}


@pytest.mark.parametrize("n", SIZES)
def test_defaults_flag_real_shifts_at_every_volume(n: int) -> None:
    flags = _flags(n, mean=0.25, sd=1.5, nulls=0.05, share=0.10)
    assert flags == {"mean_shift": True, "spread": True, "nulls": True, "share": True}


@pytest.mark.parametrize("n", SIZES)
def test_defaults_ignore_negligible_shifts_at_every_volume(n: int) -> None:
    # Below 0.05 sd, a 2-point share move: at 100k+ rows KS and chi-square reject both.
    flags = _flags(n, mean=0.04, sd=1.03, share=0.02)
    assert flags == {"mean_shift": False, "spread": False, "nulls": False, "share": False}


def test_p_value_rule_flags_the_same_negligible_shifts_at_volume() -> None:
    """Why the default changed: the old rule alerts on noise at 1M rows."""
    reference, current = _frame(1, 1_000_000), _frame(2, 1_000_000, mean=0.04, share=0.02)
    report = compute_drift(reference, current, thresholds=DriftThresholds(rule="test"))
    assert {"mean_shift", "share"} <= set(report.drifted_features)


def test_small_samples_are_decided_by_the_test_alone() -> None:
    # 200 rows: a 0.15-sd distance from noise alone is common, the KS test does not confirm it.
    thresholds = DriftThresholds()
    assert thresholds.judge("numeric", psi_value=0.0, effect=0.15, p_value=0.3, null_delta=0.0, n=200) == (
        False,
        ("effect",),
    )
    assert thresholds.judge("numeric", psi_value=0.0, effect=0.05, p_value=0.001, n=200, null_delta=0.0)[0]
    # At volume the distance must be large and the test must confirm.
    assert not thresholds.judge("numeric", psi_value=0.0, effect=0.05, p_value=1e-9, n=50_000, null_delta=0.0)[0]
    assert thresholds.judge("categorical", psi_value=0.0, effect=0.07, p_value=1e-9, n=50_000, null_delta=0.0)[0]
    assert thresholds.judge("categorical", psi_value=0.0, effect=0.0, p_value=1.0, n=50_000, null_delta=0.04) == (
        True,
        ("nulls",),
    )


def test_effect_sizes_have_their_documented_scale() -> None:
    rng = np.random.default_rng(5)
    ref = np.sort(rng.normal(0, 1, 200_000))
    probs = np.linspace(0, 1, 101)
    sketch = np.quantile(ref, probs)
    assert wasserstein_normed(sketch, sketch + 0.25, 1.0) == pytest.approx(0.25)
    assert wasserstein_normed(sketch, sketch * 1.5, 1.0) == pytest.approx(0.39, abs=0.02)
    assert wasserstein_normed(sketch, sketch, 0.0) == 0.0
    assert wasserstein_normed([1.0, 1.0, 1.0], [1.0, 2.0, 2.0], 0.0) == float("inf")
    assert jensen_shannon({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    assert jensen_shannon({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert jensen_shannon({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 0.4, "b": 0.4, "c": 0.2}) > 0.06
    assert jensen_shannon({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 0.48, "b": 0.32, "c": 0.2}) < 0.03
    with pytest.raises(ValueError, match="same 3\\+"):
        wasserstein_normed([0.0, 1.0, 2.0], [0.0, 1.0], 1.0)


def test_profile_and_raw_reference_give_the_same_effect_sizes() -> None:
    reference, current = _frame(3, 50_000), _frame(4, 50_000, mean=0.25, share=0.1)
    raw = {f.name: f for f in compute_drift(reference, current).features}
    stored = {f.name: f for f in compute_drift(build_profile(reference), current).features}
    for name, feature in raw.items():
        assert stored[name].effect == pytest.approx(feature.effect, rel=1e-9)
        assert stored[name].drifted == feature.drifted


@pytest.mark.parametrize(
    ("field", "value"), [("wasserstein", 0), ("jensen_shannon", -0.1), ("null_rate", float("inf"))]
)
def test_bad_effect_thresholds_are_named(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{field}: {value!r} is not valid; use a positive distance threshold"):
        DriftThresholds(**{field: value})


def test_bad_small_sample_is_named() -> None:
    with pytest.raises(ValueError, match="small_sample: 0 is not valid"):
        DriftThresholds(small_sample=0)


def test_html_report_shows_effect_size_against_threshold_and_unclipped_labels() -> None:
    from shipway.drift.html import render_html

    report = compute_drift(_frame(5, 20_000), _frame(6, 20_000, mean=0.25, share=0.02))
    html = render_html(report)
    by_name = {f.name: f for f in report.features}
    assert f"wasserstein {by_name['mean_shift'].effect:.3g} &gt; 0.1" in html
    assert f"jensen-shannon {by_name['share'].effect:.3g} ≤ 0.06" in html
    assert "effect size vs threshold" in html
    # The distribution plots are wider than their plot area: room for the rotated bin labels.
    assert 'width="410" height="225" viewBox="0 0 410 225"' in html


def test_thresholds_come_from_the_stacks_slo_settings() -> None:
    from shipway.drift.report import thresholds_from_slo
    from shipway_core.config import SloSettings

    t = thresholds_from_slo(SloSettings(drift_wasserstein=0.3, drift_null_rate=0.1), rule="any")
    assert (t.wasserstein, t.jensen_shannon, t.null_rate, t.psi, t.rule) == (0.3, 0.06, 0.1, 0.2, "any")
    # A looser stack threshold changes the verdict on the same data.
    reference, current = _frame(7, 20_000), _frame(8, 20_000, mean=0.25)
    strict = {f.name: f.drifted for f in compute_drift(reference, current).features}
    looser = thresholds_from_slo(SloSettings(drift_wasserstein=0.3))
    loose = {f.name: f.drifted for f in compute_drift(reference, current, thresholds=looser).features}
    assert strict["mean_shift"] and not loose["mean_shift"]
