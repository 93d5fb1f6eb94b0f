"""Baseline profile format: the contract the serving app consumes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shipway.drift.profile import (
    bin_indices,
    build_profile,
    load_profile,
    save_profile,
    sorted_quantiles,
    validate_profile,
)


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.normal(10, 2, 1000)
    x[:100] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "n": np.arange(1000, dtype="int64"),
            "city": ["a"] * 500 + ["b"] * 300 + [None] * 200,
            "flag": [True, False] * 500,
        }
    )


def test_profile_has_the_exact_documented_shape() -> None:
    profile = build_profile(_frame(), bins=10)
    assert set(profile) == {"format", "n_rows", "features"}
    assert profile["format"] == 1 and profile["n_rows"] == 1000
    x = profile["features"]["x"]
    assert set(x) == {"kind", "edges", "fractions", "null_rate", "min", "max", "quantiles", "std"}
    assert x["kind"] == "numeric"
    assert len(x["edges"]) == 11 and len(x["fractions"]) == 10
    assert x["edges"][0] is None and x["edges"][-1] is None
    assert x["null_rate"] == pytest.approx(0.1)
    assert sum(x["fractions"]) == pytest.approx(1.0)
    assert x["fractions"] == pytest.approx([0.1] * 10, abs=0.002)
    assert len(x["quantiles"]) == 101
    assert x["min"] == x["quantiles"][0] and x["max"] == x["quantiles"][-1]
    city = profile["features"]["city"]
    assert city == {"kind": "categorical", "fractions": {"a": 0.625, "b": 0.375}, "null_rate": 0.2}
    assert profile["features"]["flag"]["kind"] == "categorical"
    assert profile["features"]["flag"]["fractions"] == {"False": 0.5, "True": 0.5}
    json.dumps(profile, allow_nan=False)  # no NaN/Infinity tokens anywhere


def test_edges_are_reference_quantiles_matching_numpy() -> None:
    values = np.random.default_rng(2).exponential(3.0, 5000)
    edges = build_profile(pd.DataFrame({"v": values}))["features"]["v"]["edges"]
    assert edges[1:-1] == pytest.approx(list(np.quantile(values, np.linspace(0, 1, 11)[1:-1])), rel=1e-12)
    probs = np.linspace(0, 1, 37)
    assert sorted_quantiles(np.sort(values), probs) == pytest.approx(np.quantile(values, probs), rel=1e-12)


def test_discrete_columns_collapse_duplicate_edges() -> None:
    profile = build_profile(pd.DataFrame({"d": [0] * 70 + [1] * 30}))
    d = profile["features"]["d"]
    # deciles 0.1..0.6 are all 0, 0.7 interpolates to 0.3, 0.8 and 0.9 are 1 -> three inner edges
    assert d["edges"] == pytest.approx([None, 0.0, 0.3, 1.0, None])
    # left-closed bins: (-inf, 0), [0, 0.3), [0.3, 1), [1, +inf)
    assert d["fractions"] == [0.0, 0.7, 0.0, 0.3]
    assert list(bin_indices(d["edges"], np.array([-0.5, 0.0, 0.29, 0.99, 1.0, 7.0]))) == [0, 1, 1, 2, 3, 3]


def test_all_null_and_empty_columns_stay_valid() -> None:
    profile = build_profile(pd.DataFrame({"z": [np.nan, np.nan]}))
    assert profile["features"]["z"] == {
        "kind": "numeric",
        "edges": [None, None],
        "fractions": [0.0],
        "null_rate": 1.0,
        "min": None,
        "max": None,
    }
    validate_profile(profile)


def test_bins_below_two_are_rejected() -> None:
    with pytest.raises(ValueError, match="bins: 1 is not valid; use at least 2 bins"):
        build_profile(_frame(), bins=1)


def test_save_load_roundtrip(tmp_path) -> None:
    profile = build_profile(_frame())
    path = save_profile(profile, tmp_path / "baseline_profile.json")
    assert load_profile(path) == profile


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(format=2), "format: 2 is not valid; allowed: 1"),
        (lambda p: p["features"]["x"].update(kind="text"), "features.x.kind: 'text' is not valid"),
        (lambda p: p["features"]["x"]["edges"].pop(), "features.x.edges: need len\\(fractions\\)\\+1 edges"),
        (lambda p: p["features"]["x"]["edges"].__setitem__(1, 1e9), "features.x.edges: inner edges must be"),
    ],
)
def test_validate_profile_names_the_bad_field(mutate, message) -> None:
    profile = build_profile(_frame())
    mutate(profile)
    with pytest.raises(ValueError, match=message):
        validate_profile(profile)


def test_the_serving_app_accepts_the_profile() -> None:
    """Contract test with the consumer: shipway.serving parses what build_profile writes."""
    from shipway.serving.drift import CategoricalFeature, NumericFeature, parse_profile

    parsed = parse_profile(json.loads(json.dumps(build_profile(_frame()))))
    assert isinstance(parsed.features["x"], NumericFeature) and parsed.features["x"].n_bins == 10
    assert isinstance(parsed.features["city"], CategoricalFeature)
    assert parsed.n_rows == 1000
