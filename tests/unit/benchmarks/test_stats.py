"""The harness's arithmetic: medians, ratios, goal verdicts, percentiles, Markdown tables."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.stats import Goal, fmt, fmt_ratio, median, percentile, ratio, table, verdict


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0, 1.0, 2.0], 2.0),
        ([4.0, 1.0, 3.0, 2.0], 2.5),
        ([None, 5.0, float("nan"), 7.0], 6.0),
        ([], None),
        ([None, float("inf")], None),
    ],
)
def test_median_ignores_missing_and_non_finite(values, expected):
    assert median(values) == expected


@pytest.mark.parametrize(
    ("ours", "reference", "expected"),
    [(500.0, 100.0, 5.0), (25.0, 100.0, 0.25), (None, 100.0, None), (5.0, None, None), (5.0, 0.0, None)],
)
def test_ratio_is_ours_over_reference_and_none_when_undefined(ours, reference, expected):
    assert ratio(ours, reference) == expected


@pytest.mark.parametrize(
    ("goal", "measured", "expected"),
    [
        (Goal("rps", 5.0, at_least=True), 5.0, True),
        (Goal("rps", 5.0, at_least=True), 4.99, False),
        (Goal("p99", 0.25, at_least=False), 0.25, True),
        (Goal("p99", 0.25, at_least=False), 0.26, False),
        (Goal("failed", 0.0, at_least=False, unit="requests"), 0.0, True),
        (Goal("failed", 0.0, at_least=False, unit="requests"), 1.0, False),
        (Goal("rps", 5.0, at_least=True), None, None),
        (Goal("rps", 5.0, at_least=True), float("nan"), None),
    ],
)
def test_goal_met_respects_direction_and_never_counts_missing_as_met(goal, measured, expected):
    assert goal.met(measured) is expected


def test_goal_describe_and_verdict_cells():
    assert Goal("rps", 5.0, at_least=True).describe() == "≥ 5×"
    assert Goal("cold", 2.5, at_least=False, unit="s").describe() == "≤ 2.5 s"
    assert [verdict(v) for v in (True, False, None)] == ["met", "**not met**", "not measured"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "-"), (True, "yes"), (3, "3"), (1234.5, "1234"), (0.0, "0"), (0.24678, "0.247"), (float("nan"), "-"),
     ("text", "text")],
)
def test_fmt_cells(value, expected):
    assert fmt(value) == expected


def test_fmt_ratio():
    assert fmt_ratio(5.391) == "5.39×"
    assert fmt_ratio(None) == "-"


def test_table_renders_github_markdown_and_escapes_pipes():
    assert table(["a", "b"], [(1, "x|y"), (None, 2.5)]) == "| a | b |\n|---|---|\n| 1 | x\\|y |\n| - | 2.5 |"


def test_table_rejects_a_row_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"^row \[1\] has 1 cells; the table has 2 columns$"):
        table(["a", "b"], [(1,)])


def test_percentile_nearest_rank():
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile(samples, 0) == 1.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match=r"^q: 101 is not valid; use a percentile between 0 and 100$"):
        percentile(samples, 101)


@given(st.lists(st.floats(min_value=-1e9, max_value=1e9), min_size=1, max_size=50))
def test_median_lies_between_min_and_max(values):
    m = median(values)
    assert m is not None and min(values) <= m <= max(values)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50), st.floats(min_value=0, max_value=100))
def test_percentile_is_one_of_the_samples_and_monotonic(values, q):
    p = percentile(values, q)
    assert p in values
    assert percentile(values, 100) == max(values)
    assert not math.isnan(p)
