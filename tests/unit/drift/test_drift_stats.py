"""Drift statistics against scipy and their defining properties (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sps

from shipway.drift.profile import quantile_edges
from shipway.drift.stats import (
    CategoricalHistogram,
    Histogram,
    categorical_psi,
    chi_square,
    ks_2samp,
    ks_against_sketch,
    ks_pvalue,
    psi,
)

# Few distinct values on purpose: ties are where KS implementations get it wrong.
_values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1.0, 2.5, -3.0]),
)
_samples = arrays(np.float64, st.integers(1, 60), elements=_values)


@settings(max_examples=200, deadline=None)
@given(_samples, _samples)
def test_ks_statistic_equals_scipy_exactly(x: np.ndarray, y: np.ndarray) -> None:
    ours = ks_2samp(x, y, method="asymp")
    ref = sps.ks_2samp(x, y, method="asymp")
    assert abs(ours.statistic - float(ref.statistic)) <= 1e-12
    _same_pvalue(ours.pvalue, float(ref.pvalue))


def _same_pvalue(ours: float, ref: float) -> None:
    # scipy returns NaN when both samples hold a single value (n_eff rounds to 0); so must we.
    assert (math.isnan(ours) and math.isnan(ref)) or math.isclose(ours, ref, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=100, deadline=None)
@given(_samples, _samples)
def test_ks_auto_matches_scipy_auto_for_small_samples(x: np.ndarray, y: np.ndarray) -> None:
    ours = ks_2samp(x, y)
    ref = sps.ks_2samp(x, y)
    assert abs(ours.statistic - float(ref.statistic)) <= 1e-12
    _same_pvalue(ours.pvalue, float(ref.pvalue))


def test_ks_large_samples_use_asymptotic_pvalue_like_scipy_auto() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(0, 1, 20_000), rng.normal(0.02, 1, 15_000).round(2)
    ours, ref = ks_2samp(x, y), sps.ks_2samp(x, y)
    assert abs(ours.statistic - float(ref.statistic)) <= 1e-12
    assert math.isclose(ours.pvalue, float(ref.pvalue), rel_tol=1e-9)


def test_ks_drops_non_finite_values_and_rejects_empty_samples() -> None:
    res = ks_2samp([1.0, 2.0, np.nan, np.inf], [1.0, 2.0])
    assert res.statistic == 0.0
    with pytest.raises(ValueError, match="both samples need at least one finite value"):
        ks_2samp([np.nan], [1.0])
    with pytest.raises(ValueError, match="method: 'exact' is not valid; allowed: asymp, auto"):
        ks_2samp([1.0], [1.0], method="exact")


def test_ks_against_sketch_is_close_to_the_exact_statistic() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(0, 1, 50_000), rng.normal(0.3, 1.2, 20_000)
    sketch = np.quantile(ref, np.linspace(0, 1, 101))
    approx = ks_against_sketch(sketch, ref.size, cur)
    exact = sps.ks_2samp(ref, cur)
    assert abs(approx.statistic - float(exact.statistic)) < 0.01
    # A sample from the reference itself stays near zero.
    assert ks_against_sketch(sketch, ref.size, rng.normal(0, 1, 20_000)).statistic < 0.02


def test_ks_against_sketch_handles_point_masses() -> None:
    # 101-point sketch of 70% zeros / 30% ones: F jumps to 0.70 at 0 and to 1 at 1; between them
    # it rises linearly by one sketch step (0.01), the sketch's resolution.
    sketch = [0.0] * 71 + [1.0] * 30
    same = ks_against_sketch(sketch, 1000, [0.0] * 70 + [1.0] * 30)
    flipped = ks_against_sketch(sketch, 1000, [0.0] * 30 + [1.0] * 70)
    assert same.statistic == pytest.approx(0.01, abs=1e-9)
    assert flipped.statistic == pytest.approx(0.41, abs=1e-9)


_fractions = (
    arrays(np.float64, 10, elements=st.floats(0, 1, allow_nan=False))
    .filter(lambda a: a.sum() > 0)
    .map(lambda a: a / a.sum())
)


@given(_fractions)
def test_psi_is_zero_for_identical_distributions(f: np.ndarray) -> None:
    assert psi(f, f) == 0.0


@given(_fractions, _fractions)
def test_psi_is_non_negative_symmetric_and_bounded(a: np.ndarray, b: np.ndarray) -> None:
    value = psi(a, b)
    assert value >= 0.0
    assert value == pytest.approx(psi(b, a), rel=1e-12, abs=1e-12)
    assert value <= 2 * math.log(1 / 1e-4) + 1e-9


@settings(max_examples=50, deadline=None)
@given(st.floats(0.05, 1.0), st.floats(0.05, 1.0))
def test_psi_grows_with_the_size_of_a_mean_shift(s1: float, s2: float) -> None:
    small, large = sorted((s1, s2))
    if large - small < 0.05:
        return
    rng = np.random.default_rng(11)
    ref = rng.normal(0, 1, 40_000)
    edges = quantile_edges(np.sort(ref), 10)
    base = Histogram.from_values(edges, ref).fractions
    noise = rng.normal(0, 1, 40_000)

    def shifted(s: float) -> float:
        return psi(base, Histogram.from_values(edges, noise + s).fractions)

    assert shifted(large) > shifted(small)


def test_psi_epsilon_floor_makes_empty_bins_finite() -> None:
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5 * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5))
    with pytest.raises(ValueError, match="bins must match"):
        psi([0.5, 0.5], [1.0])


def test_categorical_psi_counts_unseen_categories() -> None:
    assert categorical_psi({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    assert categorical_psi({"a": 1.0}, {"a": 0.5, "new": 0.5}) == pytest.approx(psi([1.0, 0.0], [0.5, 0.5]))


def test_chi_square_matches_scipy_contingency() -> None:
    ref, cur = {"a": 500, "b": 300, "c": 200}, {"a": 430, "b": 330, "c": 240, "d": 0}
    ours = chi_square(ref, cur)
    expected = sps.chi2_contingency(np.array([[500, 300, 200], [430, 330, 240]]), correction=False)
    assert ours.statistic == pytest.approx(expected.statistic)
    assert ours.pvalue == pytest.approx(expected.pvalue)
    single = chi_square({"a": 10}, {"a": 3})
    assert (single.statistic, single.pvalue) == (0.0, 1.0)


_hist_values = arrays(
    np.float64, st.integers(0, 80), elements=st.one_of(st.floats(-100, 100, allow_nan=False), st.just(np.nan))
)


@given(_hist_values, _hist_values)
def test_histogram_merge_equals_histogram_of_concatenation(a: np.ndarray, b: np.ndarray) -> None:
    edges = [None, -10.0, 0.0, 0.5, 42.0, None]
    merged = Histogram.from_values(edges, a).merge(Histogram.from_values(edges, b))
    assert merged == Histogram.from_values(edges, np.concatenate([a, b]))


def test_histogram_bins_are_left_closed_and_merge_requires_same_edges() -> None:
    h = Histogram.from_values([None, 0.0, 1.0, None], [-1.0, 0.0, 0.5, 1.0, 2.0, np.nan])
    assert h.counts == (1, 2, 2)
    assert h.nulls == 1
    assert h.null_rate == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="edges differ"):
        h.merge(Histogram.empty([None, 0.0, None]))


@given(
    st.lists(st.one_of(st.sampled_from(["a", "b", "c"]), st.none())),
    st.lists(st.one_of(st.sampled_from(["b", "d"]), st.none())),
)
def test_categorical_histogram_merge_equals_concatenation(a: list, b: list) -> None:
    merged = CategoricalHistogram.from_values(a).merge(CategoricalHistogram.from_values(b))
    whole = CategoricalHistogram.from_values(a + b)
    assert dict(merged.counts) == dict(whole.counts)
    assert merged.nulls == whole.nulls


def test_ks_pvalue_shortcut_never_changes_a_decision_and_stays_close() -> None:
    threshold = 0.01
    for en_pair in ((100_000, 100_000), (20_000, 12_000), (100_000, 5_300)):
        for d in np.linspace(0.0002, 0.05, 40):
            exact = ks_pvalue(d, *en_pair)
            fast = ks_pvalue(d, *en_pair, decision_threshold=threshold)
            assert (fast < threshold) == (exact < threshold)
            if threshold / 2 <= fast <= threshold * 2:
                assert fast == exact  # near the threshold: scipy's value, bit for bit
            elif exact >= 1e-6:
                assert fast == pytest.approx(exact, rel=0.035)
            else:  # deep in the tail only the order of magnitude matters (it is far past any threshold)
                assert fast == pytest.approx(exact, rel=0.25)
    assert ks_pvalue(0.01, 100_000, 100_000) == float(sps.kstwo.sf(0.01, 50_000))
    # small effective samples always use scipy's finite-n distribution
    assert ks_pvalue(0.05, 3000, 3000, decision_threshold=threshold) == ks_pvalue(0.05, 3000, 3000)
