"""RESULTS.md from raw samples: which numbers feed each goal, and what the verdicts say."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.report import (
    GOALS,
    goal_measurements,
    goals_table,
    not_met,
    profiles_section,
    render,
    serving_cells,
    serving_ratios,
)


def load(rps: float, p99: float, errors: int = 0) -> dict[str, Any]:
    return {"rps": rps, "p99_ms": p99, "p50_ms": p99 / 4, "errors": errors}


def doc(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "generated_at": "2026-11-26T07:00:00+00:00", "quick": False, "repetitions": 3,
        "machine": {"cores": 2, "ram_gb": 23.5, "cpu": "AMD EPYC", "kernel": "6.1", "load_avg": [7.0, 7.0, 7.0]},
        "versions": {"mlflow": "3.17.2", "evidently": "0.7.23"},
        "serving": {
            "seconds": 10.0,
            "load": {
                "mlflow": {"1r-c8": [load(100, 100), load(120, 80), load(110, 90)],
                           "1r-c32": [load(100, 400)], "100r-c8": [load(50, 200)], "100r-c32": [load(60, 300)]},
                "shipway": {"1r-c8": [load(600, 20), load(550, 25), load(580, 22)],
                            "1r-c32": [load(700, 80)], "100r-c8": [load(250, 30)], "100r-c32": [load(180, 90)]},
            },
            "cold_start_s": {"shipway": [3.0, 2.0, 4.0]},
            "rss_mb": {"shipway": [300.0]},
            "profiles": {"requests": {"100": {"us_per_request": 400.0, "top": "ncalls tottime (profile text)"}},
                         "imports": "mlflow 1.6 s",
                         "startup": {"phases": [["import mlflow", 1.2], ["load_pinned_model", 0.4]],
                                     "top": "model.py:131(load_pinned_model)"}},
        },
        "drift": {
            "rows": 100000, "expected": ["cat_1", "num_03"], "evidently_version": "0.7.23",
            "samples": {
                "evidently": [{"seconds": 30.0, "flagged": ["cat_1", "num_03"], "rss_before_mb": 300.0,
                               "rss_peak_mb": 420.0, "maxrss_mb": 700.0}] * 3,
                "shipway": [{"seconds": 0.5, "flagged": ["cat_1", "num_03"], "rss_before_mb": 200.0,
                             "rss_peak_mb": 210.0, "maxrss_mb": 600.0}] * 3,
            },
            "traced": {"evidently": {"traced_peak_mb": 120.0}, "shipway": {"traced_peak_mb": 12.0}},
        },
        "promotion": {"promote_serving_s": [4.0, 5.0, 6.0], "rollback_serving_s": [3.0, 3.5, 7.0],
                      "promote_up_s": [5.0], "rollback_up_s": [4.0],
                      "load": {"requests": 3000, "failed": 0, "rps": 120.0, "outcomes": {"200": 3000}}},
    }
    base.update(overrides)
    return base


def test_serving_cells_sort_by_rows_then_connections():
    cells = {"mlflow": {"100r-c8": [], "1r-c32": [], "1r-c8": []}, "shipway": {"100r-c32": []}}
    assert serving_cells(cells) == ["1r-c8", "1r-c32", "100r-c8", "100r-c32"]


def test_serving_ratios_compare_medians_of_the_same_cell():
    ratios = serving_ratios(doc()["serving"]["load"], "1r-c8")
    assert ratios["rps"] == pytest.approx(580 / 110)
    assert ratios["p99"] == pytest.approx(22 / 90)


def test_goals_are_judged_on_the_worst_cell_and_medians():
    measured = goal_measurements(doc())
    assert measured["rps_1"] == pytest.approx(580 / 110)  # c32 is 7x, c8 is the worst
    assert measured["p99_1"] == pytest.approx(22 / 90)  # c32 is 80/400 = 0.2: c8 is the worst
    assert measured["rps_100"] == pytest.approx(3.0)  # 180/60 at c32, 250/50 = 5 at c8
    assert measured["cold"] == 3.0
    assert measured["drift_speed"] == pytest.approx(60.0)
    assert measured["drift_memory"] == pytest.approx(0.1)
    assert measured["promote_serving"] == 5.0
    assert measured["rollback_serving"] == 3.5
    assert measured["promote"] == 5.0 and measured["rollback"] == 4.0  # whole commands
    assert measured["failed"] == 0.0


def test_p99_goal_takes_the_highest_ratio_across_one_row_cells():
    d = doc()
    d["serving"]["load"]["shipway"]["1r-c32"] = [load(700, 200)]  # 200/400 = 0.5
    assert goal_measurements(d)["p99_1"] == pytest.approx(0.5)


def test_not_met_lists_only_measured_misses():
    # promote 5 s <= 8 s; pin to serving 5 s > 4 s; rollback 4 s <= 5 s; its pin to serving 3.5 s > 2 s
    assert not_met(doc()) == ["rps_100", "cold", "promote_serving", "rollback_serving"]
    assert "promote" not in not_met(doc(promotion={}))


def test_missing_sections_are_not_measured_never_met():
    measured = goal_measurements({"machine": {}})
    assert set(measured) == set(GOALS)
    assert all(v is None for v in measured.values())
    assert goals_table({}).count("not measured") == len(GOALS)


def test_goals_table_rows():
    text = goals_table(doc())
    assert "| serving rps at 100 rows vs MLflow | ≥ 4× | 3× | **not met** |" in text
    assert "| serving cold start to first 200 | ≤ 2.5 s | 3 s | **not met** |" in text
    assert "| drift compute speed-up vs Evidently | ≥ 30× | 60× | met |" in text
    assert "| failed requests across promote + rollback | ≤ 0 requests | 0 requests | met |" in text


def test_profiles_section_covers_exactly_the_missed_goals():
    text = "\n".join(profiles_section(doc()))
    assert "**100-row requests.**" in text and "400 µs per request" in text and "2500 rps" in text
    assert "**Cold start.**" in text and "mlflow 1.6 s" in text
    assert "| import mlflow | 1.2 |" in text and "model.py:131(load_pinned_model)" in text
    assert "**1-row requests.**" not in text
    assert "**Drift.**" not in text and "**Promotion.**" not in text


def test_profiles_section_is_empty_when_every_goal_is_met():
    d = doc()
    d["serving"]["load"]["shipway"]["100r-c32"] = [load(400, 90)]
    d["serving"]["cold_start_s"]["shipway"] = [1.0]
    assert profiles_section(d) == []


def test_render_reports_drift_agreement_and_disagreement():
    assert "all runs of both tools flagged exactly the drifted columns" in render(doc())
    d = doc()
    d["drift"]["samples"]["shipway"] = [{"seconds": 0.5, "flagged": ["num_03"], "rss_before_mb": 1.0,
                                         "rss_peak_mb": 2.0, "maxrss_mb": 3.0}]
    assert ("**disagreement**: expected ['cat_1', 'num_03'], got [['cat_1', 'num_03'], ['cat_1', 'num_03'], "
            "['cat_1', 'num_03'], ['num_03']]") in render(d)


def test_render_has_every_section_and_lists_notes():
    d = doc()
    d["engine"] = {"notes": ["engine_mock aws 50x3 failed: boom"], "unit_suite_s": [120.0],
                   "unit_suite_summary": "10 passed",
                   "mock": {"aws": {"1x1": [{"seconds": 1.0, "resources": 50}],
                                    "50x3": [{"seconds": 60.0, "resources": 6000}]}}}
    text = render(d)
    for heading in ("## Machine", "## Versions", "## Goals (issues 11 and 23)", "## Serving", "## Drift",
                    "## Promotion", "## Engine", "## Profiles", "## Notes"):
        assert heading in text
    assert "| aws | 50 | 3 | 1 | 6000 | 60 | 10 |" in text
    assert "- engine_mock aws 50x3 failed: boom" in text
    assert "| 2 | 23.5 GiB | AMD EPYC | 6.1 | 7 / 7 / 7 |" in text


def test_gbt_goals_are_judged_on_the_worst_cell_against_mlflow_and_the_ceiling():
    d = doc()
    d["serving"]["load"].update({
        "gbt-mlflow": {"1r-c8": [load(150, 100)], "100r-c8": [load(80, 200)]},
        "gbt-shipway": {"1r-c8": [load(1800, 10)], "100r-c8": [load(700, 20)]},
        "gbt-ceiling": {"1r-c8": [load(2000, 8)], "100r-c8": [load(1000, 15)]},
    })
    measured = goal_measurements(d)
    assert measured["gbt_mlflow"] == pytest.approx(700 / 80)  # 8.75x at 100 rows, 12x at 1 row
    assert measured["gbt_ceiling"] == pytest.approx(0.7)  # 0.9x at 1 row, 0.7x at 100 rows
    assert {"gbt_mlflow", "gbt_ceiling"} <= set(not_met(d))
    text = render(d)
    assert "## Serving a realistic model: gradient-boosted trees on 20 features" in text
    assert "| 100r-c8 | 8.75× | 0.1× | 0.7× | 1.33× |" in text
    # the iris rows and goals are untouched by the GBT variants
    assert measured["rps_1"] == goal_measurements(doc())["rps_1"] == pytest.approx(580 / 110)
    assert "gbt_mlflow" not in not_met(doc()) and "## Serving a realistic model" not in render(doc())


def test_cli_section_shows_each_command_against_mlflow_help():
    d = doc(cli={"seconds": {"shipway --help": [0.2, 0.3, 0.25], "mlflow --help": [5.0, 5.0, 5.0]},
                 "import_ms": 126.8})
    text = render(d)
    assert "| shipway --help | 3 | 0.25 | 0.05× |" in text
    assert "| mlflow --help | 3 | 5 | 1× |" in text
    assert "127 ms of top-level imports" in text
