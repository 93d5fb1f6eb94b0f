"""RESULTS.md from raw samples: which numbers feed each goal, and what the verdicts say."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.promotion import probe_requests
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


def promotion_raw() -> dict[str, Any]:
    """A promotion section shaped like ``benchmarks.promotion`` writes it (values from a real 5-round run)."""
    promote_steps = {"stack outputs": 0.4, "registry": 0.02, "gates": 3.0, "pin": 0.06, "pulumi up": 2.0,
                     "verification": 1.5, "audit": 0.02}
    rollback_steps = {"stack outputs": 0.3, "registry": 0.01, "pin": 0.08, "pulumi up": 2.4,
                      "verification": 0.06, "audit": 0.01}
    return {
        "promote_up_s": [12.5, 11.7, 8.16, 8.88, 7.66], "promote_serving_s": [2.19, 2.37, 1.69, 1.68, 1.59],
        "rollback_up_s": [5.42, 4.06, 3.69, 3.06, 3.1], "rollback_serving_s": [3.27, 1.96, 1.94, 1.49, 1.54],
        "promote_timings": [dict(promote_steps, gates=g) for g in (4.5, 4.3, 2.9, 3.27, 2.91)],
        "rollback_timings": [dict(rollback_steps, **{"pulumi up": u}) for u in (3.8, 2.4, 2.36, 1.8, 1.9)],
        "promote_probe_requests": [300] * 5, "rollback_probe_requests": [10] * 5,
        "rollback_status": ["smoke-verified"] * 5,
        "background_verify": [{"version": 1, "outcome": "ok", "requests": 300, "p99_ms": p, "after_s": a}
                              for p, a in ((38.0, 3.0), (17.1, 1.0), (21.1, 1.0), (10.7, 1.0), (7.6, 1.0))],
        "load": {"requests": 8644, "ok": 8644, "failed": 0, "outcomes": {"200": 8644}, "rps": 120.002,
                 "p50_ms": 5.41, "p99_ms": 59.7},
        "loadavg": [1.2627, 1.8594],
    }


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_goals_table_states_the_median_of_the_runs_their_range_and_the_runs_over_target():
    text = goals_table(doc(promotion=promotion_raw()))
    assert ("| promote: whole `shipway model promote --apply` (gates + up + verification) | ≤ 8 s "
            "| 8.88 s (median of 5; 7.66–12.5) | **not met** (median; 1 of 5 runs ≤ 8 s) |") in text
    assert "| promote: pin to serving | ≤ 4 s | 1.69 s (median of 5; 1.59–2.37) | met |" in text
    assert ("| rollback: whole `shipway model rollback` (up + smoke verification) | ≤ 5 s "
            "| 3.69 s (median of 5; 3.06–5.42) | met (median; 1 of 5 runs over 5 s) |") in text
    assert ("| rollback: pin to serving | ≤ 2 s | 1.94 s (median of 5; 1.49–3.27) "
            "| met (median; 1 of 5 runs over 2 s) |") in text


def test_goals_table_single_run_and_every_run_over_say_so_plainly():
    text = goals_table(doc())  # promote_up_s [5.0]; promote_serving_s [4, 5, 6]: every run but one over 4 s
    assert "| 5 s (1 run) | met |" in text
    assert ("| promote: pin to serving | ≤ 4 s | 5 s (median of 3; 4–6) "
            "| **not met** (median; 1 of 3 runs ≤ 4 s) |") in text
    # rollback_serving_s [3, 3.5, 7]: no run within 2 s
    assert "| rollback: pin to serving | ≤ 2 s | 3.5 s (median of 3; 3–7) | **not met** |" in text


def test_promotion_section_lists_each_run_with_its_verdict():
    text = section(render(doc(promotion=promotion_raw())), "## Promotion and rollback")
    assert ("| promote (v1 -> v2), goal ≤ 8 s / ≤ 4 s | 5 | 8.88 [12.5, 11.7, 8.16, 8.88, 7.66] "
            "| 1.69 [2.19, 2.37, 1.69, 1.68, 1.59] | whole **not met** (median; 1 of 5 runs ≤ 8 s); "
            "pin to serving met |") in text
    assert ("| rollback (v2 -> v1), goal ≤ 5 s / ≤ 2 s | 5 | 3.69 [5.42, 4.06, 3.69, 3.06, 3.1] "
            "| 1.94 [3.27, 1.96, 1.94, 1.49, 1.54] | whole met (median; 1 of 5 runs over 5 s); "
            "pin to serving met (median; 1 of 5 runs over 2 s) |") in text


def test_step_table_has_step_medians_the_rest_and_the_whole_command_last():
    text = section(render(doc(promotion=promotion_raw())), "## Promotion and rollback")
    assert "Seconds per step, median of 5 promote and 5 rollback runs, from each command's own `timings`:" in text
    assert "| step | promote median (s) | rollback median (s) |" in text
    assert "| stack outputs | 0.4 | 0.3 |" in text
    assert "| gates | 3.27 | - |" in text  # median of 4.5, 4.3, 2.9, 3.27, 2.91; rollback runs no gates
    assert "| `pulumi up` | 2 | 2.36 |" in text
    assert "| verification | 1.5 (300 requests) | 0.06 (10 requests) |" in text
    # rest = whole - steps per run, then the median: promote 8.88 - (0.4+0.02+3.27+0.06+2+1.5+0.02) = 1.61
    # (run 4); rollback 3.69 - (0.3+0.01+0.08+2.36+0.06+0.01) = 0.87 (run 3)
    assert "| rest: process start, imports, output (whole command - steps) | 1.61 | 0.87 |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    steps_end = rows.index("| whole command (wall clock) | 8.88 | 3.69 |")
    assert rows[steps_end - 1].startswith("| rest:") and rows[steps_end + 1].startswith("| load across")


def test_step_table_keeps_steps_it_does_not_know_and_counts_only_runs_that_report_a_step():
    raw = promotion_raw()
    raw["promote_timings"][0]["prepare"] = 0.7
    raw["promote_probe_requests"] = []
    text = render(doc(promotion=raw))
    assert "| prepare | 0.7 | - |" in text  # one run reported it: its median is that run, not 0
    assert "| verification | 1.5 | 0.06 (10 requests) |" in text


def test_rollback_status_and_background_verifications():
    text = section(render(doc(promotion=promotion_raw())), "## Promotion and rollback")
    assert "Each rollback returned `smoke-verified` (5 of 5 runs)." in text
    assert ("5 of 5 recorded `ok`, 300 requests each, 1–3 s after the pending record, p99 7.6–38 ms.") in text
    assert "| rollback | version | outcome | requests | p99 ms | seconds after the pending record |" in text
    assert "| 1 | 1 | ok | 300 | 38 | 3 |" in text and "| 5 | 1 | ok | 300 | 7.6 | 1 |" in text
    raw = promotion_raw()
    raw["rollback_status"][1] = "verified"
    raw["background_verify"][2] = {"version": 1, "outcome": "none after 60 s", "requests": None, "after_s": None}
    text = render(doc(promotion=raw))
    assert ("Rollback status per run: `smoke-verified`, `verified`, `smoke-verified`, `smoke-verified`, "
            "`smoke-verified`.") in text
    assert "4 of 5 recorded `ok`" in text and "| 3 | 1 | none after 60 s | - | - | - |" in text


def test_promotion_load_rows_include_the_load_average_before_and_after():
    text = section(render(doc(promotion=promotion_raw())), "## Promotion and rollback")
    for row in ("| requests | 8644 |", "| failed (non-200 or connection error) | 0 |", "| achieved rate (rps) | 120 |",
                "| p50 ms | 5.41 |", "| p99 ms | 59.7 |",
                "| load average (1 min) before the rounds / after them | 1.26 / 1.86 |"):
        assert row in text


def test_missing_promotion_parts_render_not_run():
    # a raw file from before issue 23's round 2: runs and load only
    text = section(render(doc()), "## Promotion and rollback")
    assert "Rollback status: not run (no `rollback_status` in results/raw.json)." in text
    assert "Background full verifications: not run (no `background_verify` in results/raw.json)." in text
    assert "Seconds per step: not run (no `promote_timings` / `rollback_timings` in results/raw.json)." in text
    assert "| load average (1 min) before the rounds / after them | - |" in text
    bare = render(doc(promotion={"notes": ["RuntimeError: boom"]}))
    assert ("| promote (v1 -> v2), goal ≤ 8 s / ≤ 4 s | 0 | - | - "
            "| whole not measured; pin to serving not measured |") in bare
    assert "Load across promotions and rollbacks: not run (no `load` in results/raw.json)." in bare
    assert "- RuntimeError: boom" in bare
    assert "## Promotion\n\nNot run." in render(doc(promotion={}))
    assert "## Promotion\n\nNot run." in render({})


def test_promotion_profile_ranks_the_steps_of_the_command_over_its_goal():
    text = "\n".join(profiles_section(doc(promotion=promotion_raw())))
    assert ("`promote` (8.88 s median): gates 3.27 s, `pulumi up` 2 s, rest (process start, imports, output) "
            "1.61 s, verification 1.5 s, stack outputs 0.4 s") in text
    assert "`rollback`" not in text  # its median met the goal
    raw = promotion_raw()
    del raw["promote_timings"]
    assert "No per-step timings in this run" in "\n".join(profiles_section(doc(promotion=raw)))


def test_probe_requests_come_from_the_commands_slo_check():
    said = {"status": "smoke-verified", "verification": {"checks": {"slo": {"ok": True, "requests": 10}}}}
    assert probe_requests(said) == 10
    assert probe_requests({"status": "unchanged"}) is None
    assert probe_requests({"verification": {"checks": {"slo": {"message": "skipped"}}}}) is None
