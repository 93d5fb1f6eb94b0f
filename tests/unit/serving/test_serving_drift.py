"""PSI math, baseline profile parsing and the online drift window."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipway.serving.drift import (
    PSI_EPSILON,
    CategoricalFeature,
    DriftMonitor,
    NumericFeature,
    ProfileError,
    parse_profile,
    psi,
)

PROFILE = {
    "format": 1, "n_rows": 4,
    "features": {
        "x": {"kind": "numeric", "edges": [None, 1.0, 2.0, None], "fractions": [0.25, 0.5, 0.25], "null_rate": 0.0},
        "colour": {"kind": "categorical", "fractions": {"red": 0.5, "blue": 0.5}, "null_rate": 0.0},
    },
}


def test_psi_matches_the_formula_with_epsilon_floor() -> None:
    counts = np.array([1.0, 3.0, 0.0])
    expected = np.array([0.5, 0.5, 0.0])
    a = np.array([0.25, 0.75, PSI_EPSILON])
    e = np.array([0.5, 0.5, PSI_EPSILON])
    assert psi(counts, expected) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert psi(np.zeros(3), expected) == 0.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=2, max_size=12))
def test_psi_is_zero_for_identical_and_positive_for_different_distributions(weights: list[float]) -> None:
    expected = np.array(weights) / sum(weights)
    assert psi(expected * 1000, expected) == pytest.approx(0.0, abs=1e-12)
    shifted = np.roll(expected, 1)
    assert psi(shifted * 1000, expected) >= 0.0


def test_profile_parsing_turns_null_edges_into_infinities_and_adds_null_slots() -> None:
    profile = parse_profile(PROFILE)
    x = profile.features["x"]
    assert isinstance(x, NumericFeature)
    assert x.edges.tolist() == [-math.inf, 1.0, 2.0, math.inf]
    assert x.expected.tolist() == [0.25, 0.5, 0.25, 0.0]
    colour = profile.features["colour"]
    assert isinstance(colour, CategoricalFeature)
    assert dict(colour.index) == {"red": 0, "blue": 1}
    assert colour.expected.tolist() == [0.5, 0.5, 0.0, 0.0]


@pytest.mark.parametrize(("change", "message"), [
    ({"format": 2}, "baseline profile format 2 is not supported; allowed: [1]"),
    ({"features": []}, "baseline profile 'features' must be an object of feature name -> spec"),
    ({"features": {"x": {"kind": "text"}}}, "features.x.kind 'text' is not supported; allowed: "
                                            "['categorical', 'numeric']"),
    ({"features": {"x": {"kind": "numeric", "edges": [1], "fractions": []}}},
     "features.x.edges must be a list of at least 2 bin edges"),
    ({"features": {"x": {"kind": "numeric", "edges": [1, 2, 3], "fractions": [1]}}},
     "features.x.fractions must be a list of 2 fractions (one per bin)"),
    ({"features": {"x": {"kind": "numeric", "edges": [1, None, 3], "fractions": [0.5, 0.5]}}},
     "features.x.edges[1] None must be a number (null only as the first or last edge)"),
    ({"features": {"x": {"kind": "numeric", "edges": [3, 1], "fractions": [1]}}},
     "features.x.edges must be sorted ascending"),
    ({"features": {"x": {"kind": "numeric", "edges": [1, 2], "fractions": [1], "null_rate": 2}}},
     "features.x.null_rate 2 must be a number in [0, 1]"),
    ({"features": {"c": {"kind": "categorical", "fractions": {}}}},
     "features.c.fractions must be an object of category -> fraction"),
])
def test_bad_profiles_are_rejected_naming_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profile({**PROFILE, **change})
    assert str(err.value) == message


def monitor(**kwargs: object) -> DriftMonitor:
    return DriftMonitor(parse_profile(PROFILE), {"x", "colour"}, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("n_rows", [1, 20])
def test_bins_are_left_closed_like_numpy_histogram_for_small_and_large_batches(n_rows: int) -> None:
    # 1.0 and 2.0 sit on edges: left-closed bins put them in the bin they start.
    values = [0.5, 1.0, 1.5, 2.0, 9.0, None]
    m = monitor()
    for i in range(0, len(values), 1 if n_rows == 1 else len(values)):
        chunk = values[i:i + 1] if n_rows == 1 else values * 4
        m.observe({"x": chunk, "colour": ["red"] * len(chunk)}, len(chunk))
    scale = 1 if n_rows == 1 else 4
    assert m.counts["x"].tolist() == [1 * scale, 2 * scale, 2 * scale, 1 * scale]
    finite = np.array([v for v in values if v is not None])
    hist, _ = np.histogram(finite, bins=[-np.inf, 1.0, 2.0, np.inf])
    assert m.counts["x"][:3].tolist() == (hist * scale).tolist()


def test_categories_count_unseen_values_as_other_and_nulls_separately() -> None:
    m = monitor()
    m.observe({"x": [1.0] * 4, "colour": ["red", "green", None, "blue"]}, 4)
    assert m.counts["colour"].tolist() == [1, 1, 1, 1]


def test_psi_is_zero_for_baseline_like_inputs_and_grows_when_shifted() -> None:
    m = monitor()
    m.observe({"x": [0.5, 1.5, 1.6, 2.5], "colour": ["red", "blue"] * 2}, 4)
    assert m.compute() == {"x": pytest.approx(0.0), "colour": pytest.approx(0.0)}
    m.reset()
    m.observe({"x": [5.0] * 4, "colour": ["red"] * 4}, 4)
    result = m.compute()
    assert result["x"] > 2.0
    assert result["colour"] > 2.0


def test_refresh_is_due_after_n_requests_or_t_seconds_not_per_request() -> None:
    now = [0.0]
    m = monitor(refresh_every=3, refresh_seconds=10.0, clock=lambda: now[0])
    assert not m.refresh_due()
    for _ in range(2):
        m.observe({"x": [1.0], "colour": ["red"]}, 1)
        assert not m.refresh_due()
    m.observe({"x": [1.0], "colour": ["red"]}, 1)
    assert m.refresh_due()
    m.compute()
    assert not m.refresh_due()
    m.observe({"x": [1.0], "colour": ["red"]}, 1)
    now[0] = 10.0
    assert m.refresh_due()


def test_window_halves_counts_so_recent_traffic_dominates() -> None:
    m = monitor(window=8)
    m.observe({"x": [0.5] * 6, "colour": ["red"] * 6}, 6)
    m.observe({"x": [5.0] * 2, "colour": ["red"] * 2}, 2)
    assert m.samples == 4.0
    assert m.counts["x"].tolist() == [3.0, 0.0, 1.0, 0.0]


def test_only_requested_features_are_monitored() -> None:
    m = DriftMonitor(parse_profile(PROFILE), {"x"})
    assert set(m.features) == {"x"}


# ------------------------------------------------ live and batch agree (issue 21)


@pytest.mark.parametrize(("shift", "move"), [(0.0, 0.0), (0.04, 0.02), (0.25, 0.10), (1.0, 0.3)])
def test_live_effect_sizes_agree_with_the_batch_report_on_the_same_rows(shift: float, move: float) -> None:
    """The serving gauge and ``shipway monitor drift`` measure the same thing: the live
    normalised Wasserstein distance is within 0.01 sd of the batch one (quantiles recovered from
    counts between percentile points) or 5% of it for large shifts (a window far beyond the
    reference's 99th percentile is interpolated across the sparse tail), Jensen-Shannon is equal
    (same counts), and both sides reach the same verdict at the default thresholds."""
    import pandas as pd

    from shipway.drift.profile import build_profile
    from shipway.drift.report import DriftThresholds, compute_drift

    rng = np.random.default_rng(7)
    cats = np.array(["a", "b", "c"])
    reference = pd.DataFrame(
        {"x": rng.normal(5.0, 2.0, 100_000), "colour": rng.choice(cats, 100_000, p=[0.5, 0.3, 0.2])}
    )
    current = pd.DataFrame(
        {
            "x": rng.normal(5.0 + 2.0 * shift, 2.0, 20_000),
            "colour": rng.choice(cats, 20_000, p=[0.5 - move, 0.3 + move, 0.2]),
        }
    )
    doc = build_profile(reference)
    live = DriftMonitor(parse_profile(doc), {"x", "colour"}, window=10**9)
    for start in range(0, len(current), 250):  # requests of 250 rows, as the app sees them
        batch = current.iloc[start : start + 250]
        live.observe({"x": batch["x"].tolist(), "colour": batch["colour"].tolist()}, len(batch))
    for start in range(0, 5):  # and single-row requests take the small-batch path
        live.observe({"x": [float(current["x"].iloc[start])], "colour": [current["colour"].iloc[start]]}, 1)
    batch_report = {f.name: f for f in compute_drift(doc, pd.concat([current, current.iloc[:5]])).features}
    live_effect = live.effect_sizes()
    batch_x = batch_report["x"].effect
    assert live_effect["x"] == pytest.approx(batch_x, abs=max(0.01, 0.05 * batch_x))
    assert live_effect["colour"] == pytest.approx(batch_report["colour"].effect, abs=1e-9)
    t = DriftThresholds()
    assert (live_effect["x"] > t.wasserstein) == (batch_report["x"].effect > t.wasserstein)
    assert (live_effect["colour"] > t.jensen_shannon) == (batch_report["colour"].effect > t.jensen_shannon)


def test_live_effect_is_nan_before_any_traffic_and_without_a_sketch() -> None:
    m = monitor()
    assert all(np.isnan(v) for v in m.effect_sizes().values())


def test_live_null_rate_change_equals_the_batch_reports_and_effects_group_by_statistic() -> None:
    """The gauge's ``statistic="null_rate"`` is the batch report's null-rate signal on the same rows."""
    import pandas as pd

    from shipway.drift.profile import build_profile
    from shipway.drift.report import compute_drift

    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(0.0, 1.0, 10_000), "colour": rng.choice(["a", "b"], 10_000)})
    reference.loc[:499, "x"] = np.nan  # 5 % nulls in training
    current = pd.DataFrame({"x": rng.normal(0.0, 1.0, 2_000), "colour": rng.choice(["a", "b"], 2_000)})
    current.loc[:199, "x"] = np.nan  # 10 %: a 5-point jump
    current.loc[:99, "colour"] = None  # 5 % from none
    doc = build_profile(reference)
    live = DriftMonitor(parse_profile(doc), {"x", "colour"}, window=10**9)
    live.observe({"x": [None if v != v else v for v in current["x"].tolist()],
                  "colour": current["colour"].tolist()}, len(current))
    batch = {f.name: f for f in compute_drift(doc, current).features}
    effects = live.effects()
    assert set(effects) == {"wasserstein", "jensen_shannon", "null_rate"}
    assert set(effects["wasserstein"]) == {"x"} and set(effects["jensen_shannon"]) == {"colour"}
    for name in ("x", "colour"):
        expected = abs(batch[name].current_null_rate - batch[name].reference_null_rate)
        assert effects["null_rate"][name] == pytest.approx(expected, abs=1e-9)
    assert effects["null_rate"]["x"] == pytest.approx(0.05, abs=1e-9)
    assert effects["null_rate"]["colour"] == pytest.approx(0.05, abs=1e-9)
    assert np.isnan(DriftMonitor(parse_profile(doc), {"x"}).null_rate_changes()["x"])
