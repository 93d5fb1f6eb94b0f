"""Parsers and generators of the harness: wrk's script and summary, logs, pytest and importtime output."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import drift, wrk
from benchmarks.drift_worker import _evidently_flagged
from benchmarks.engine import point_key, pytest_summary
from benchmarks.loadgen import summarize
from benchmarks.profiles import importtime_top
from benchmarks.serving import cell_key, cold_phases

SUMMARY = ('BENCH_JSON {"requests":1000,"duration_us":2000000,"connect":0,"read":2,"write":0,"status":3,'
           '"timeout":1,"p50_us":1500,"p90_us":4000,"p99_us":12500,"max_us":40000}')


def test_wrk_summary_counts_every_error_kind_and_excludes_errors_from_rps():
    result = wrk.parse_output("Running 2s test\n" + SUMMARY + "\n")
    assert result == wrk.LoadResult(requests=1000, seconds=2.0, errors=6, p50_ms=1.5, p90_ms=4.0, p99_ms=12.5,
                                    max_ms=40.0)
    assert result.rps == 497.0


def test_wrk_output_without_a_summary_is_an_error():
    with pytest.raises(ValueError, match=r"^wrk printed no BENCH_JSON summary line; output was: 'unable to connect'$"):
        wrk.parse_output("unable to connect")


def test_lua_script_posts_the_body_verbatim_with_headers_and_a_request_cap():
    body = b'{"a": "]]", "b": "]=]"}'
    script = wrk.lua_script(body, {"Content-Type": "application/json", "Authorization": "Bearer k"}, 5000)
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = [==[{"a": "]]", "b": "]=]"}]==]' in script  # long-bracket level past any "]=]" in body
    assert 'wrk.headers["Authorization"] = "Bearer k"' in script
    assert "if count >= 5000 then wrk.thread:stop() end" in script
    assert "BENCH_JSON" in script


def test_lua_script_refuses_header_values_that_would_break_the_string():
    with pytest.raises(ValueError, match=r"""^header 'X': value 'a"b' is not valid; no quotes or backslashes$"""):
        wrk.lua_script(b"{}", {"X": 'a"b'}, 10)


def test_wrk_only_targets_loopback():
    with pytest.raises(ValueError, match=r"^url: 'http://10.0.0.1:80/' is not valid; load only goes to"):
        wrk.run("http://10.0.0.1:80/", script=None, connections=8, seconds=1)  # type: ignore[arg-type]


def test_cold_phases_from_the_serving_json_log():
    log = "\n".join([
        "not json",
        json.dumps({"ts": "2026-11-26T07:00:02.000+00:00", "event": "log", "message": "Started server process [1]"}),
        json.dumps({"ts": "2026-11-26T07:00:02.100+00:00", "event": "model_loading"}),
        json.dumps({"ts": "2026-11-26T07:00:03.500+00:00", "event": "model_loaded", "load_ms": 1400.0}),
    ])
    started = datetime(2026, 11, 26, 7, 0, tzinfo=UTC).timestamp()
    assert cold_phases(log, started) == pytest.approx({"to_server_started_s": 2.0, "to_model_loaded_s": 3.5})
    assert cold_phases(log.split("\n", 2)[0], started) is None


def test_cell_and_point_keys():
    assert cell_key(100, 32) == "100r-c32"
    assert point_key(50, 3) == "50x3"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("....\n=========== 812 passed, 3 skipped, 4 deselected in 270.12s (0:04:30) ===========",
         "812 passed, 3 skipped, 4 deselected"),
        ("F.\n=== 1 failed, 1 passed, 2 warnings in 1.00s ===", "1 failed, 1 passed, 2 warnings"),
        ("..\n44 passed in 0.99s", "44 passed"),
        ("no summary", ""),
    ],
)
def test_pytest_summary(output, expected):
    assert pytest_summary(output) == expected


def test_importtime_keeps_top_level_rows_only():
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |        300 |   numpy._core",
        "import time:       200 |     500000 | numpy",
        "import time:        50 |    1600000 | mlflow",
        "import time:        10 |       1000 |     deep.child",
    ])
    assert importtime_top(stderr) == [("mlflow", 1.6), ("numpy", 0.5)]


def test_loadgen_summary_counts_non_200_as_failed():
    out = summarize(Counter({"200": 98, "503": 1, "ConnectError": 1}), [1.0] * 99 + [100.0], 2.0,
                    [{"t": 0.5, "outcome": "503"}])
    assert (out["requests"], out["ok"], out["failed"], out["rps"]) == (100, 98, 2, 50.0)
    assert (out["p50_ms"], out["p99_ms"]) == (1.0, 1.0)
    assert out["outcomes"] == {"200": 98, "503": 1, "ConnectError": 1}


def _snapshot(metrics):
    return SimpleNamespace(dict=lambda: {"metrics": metrics})


def test_evidently_flags_distances_at_or_above_and_p_values_below_threshold():
    metrics = [
        {"config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {"count": 2}},
        {"config": {"type": "evidently:metric_v2:ValueDrift", "column": "a",
                    "method": "Wasserstein distance (normed)", "threshold": 0.1}, "value": 0.1},
        {"config": {"type": "evidently:metric_v2:ValueDrift", "column": "b",
                    "method": "Jensen-Shannon distance", "threshold": 0.1}, "value": 0.05},
        {"config": {"type": "evidently:metric_v2:ValueDrift", "column": "c",
                    "method": "K-S p_value", "threshold": 0.05}, "value": 0.01},
        {"config": {"type": "evidently:metric_v2:ValueDrift", "column": "d",
                    "method": "chi-square p_value", "threshold": 0.05}, "value": 0.5},
    ]
    assert _evidently_flagged(_snapshot(metrics)) == ["a", "c"]


def test_generated_drift_data_is_seeded_and_drifts_only_the_declared_columns(tmp_path):
    path = drift.generate(tmp_path / "d.npz", rows=20_000)
    again = drift.generate(tmp_path / "e.npz", rows=20_000)
    data, data2 = np.load(path), np.load(again)
    # NaN-equal: the null-rate column's missing values are part of the seeded data
    assert np.array_equal(data["cur_num"], data2["cur_num"], equal_nan=True)
    assert not np.array_equal(data["cur_num"], data2["cur_num"])  # (plain equality would fail on them)
    names = [str(n) for n in data["numeric_names"]]
    assert len(names) == 30 and len(data["categorical_names"]) == 10  # the 40 columns
    ref, cur = data["ref_num"], data["cur_num"]
    sd = {n: float(np.nanstd(ref[:, i])) for i, n in enumerate(names)}
    mean_moves = {n: (np.nanmean(cur[:, i]) - np.nanmean(ref[:, i])) / sd[n] for i, n in enumerate(names)}
    spreads = {n: np.nanstd(cur[:, i]) / sd[n] for i, n in enumerate(names)}
    shifted = {n for n in names if abs(mean_moves[n]) > 0.2 or abs(spreads[n] - 1) > 0.2}
    assert shifted == set(drift.DRIFTED_NUMERIC)
    assert mean_moves["num_21"] == pytest.approx(0.25, abs=0.04)  # the smallest real mean shift
    for name, moved in (("num_05", 0.03), ("num_14", 0.02), ("num_25", 0.04)):  # negligible ones
        assert mean_moves[name] == pytest.approx(moved, abs=0.025)
    null_rates = {n: (float(np.isnan(ref[:, i]).mean()), float(np.isnan(cur[:, i]).mean()))
                  for i, n in enumerate(names)}
    assert {n for n, (r, c) in null_rates.items() if r or c} == set(drift.DRIFTED_NULLS) == {"num_18"}
    assert null_rates["num_18"][0] == 0.0 and null_rates["num_18"][1] == pytest.approx(0.05, abs=0.01)
    assert drift.real_shifts() == ["cat_1", "cat_3", "cat_6", "num_03", "num_07", "num_12", "num_16", "num_18",
                                   "num_21"]
    assert drift.negligible_shifts() == ["cat_2", "cat_4", "cat_8", "num_05", "num_10", "num_14", "num_25"]
    assert "cat_3_new" in set(data["cur_cat"][:, 3]) and "cat_3_new" not in set(data["ref_cat"][:, 3])
    cats = [str(n) for n in data["categorical_names"]]

    def largest_share_move(name: str) -> float:
        k = cats.index(name)
        levels, ref_counts = np.unique(data["ref_cat"][:, k], return_counts=True)
        cur_counts = np.array([(data["cur_cat"][:, k] == v).sum() for v in levels])
        return float(np.max(np.abs(cur_counts / cur_counts.sum() - ref_counts / ref_counts.sum())))

    assert largest_share_move("cat_6") == pytest.approx(0.10, abs=0.01)  # real: +10 points
    assert largest_share_move("cat_8") == pytest.approx(0.01, abs=0.006)  # negligible: 1 point
    assert largest_share_move("cat_5") < 0.01  # unchanged


def test_accuracy_counts_unchanged_columns_flagged_apart_from_the_negligible_ones():
    got = drift.accuracy(["num_03", "num_05", "cat_5", "num_00"])
    assert got == {"real_caught": 1, "real_total": 9, "negligible_flagged": 1, "negligible_total": 7,
                   "unchanged_flagged": 2}


def test_ladder_table_puts_both_tools_side_by_side_with_the_speed_up_against_evidently():
    def row(tool: str, seconds: float, caught: int, traced: float) -> drift.LadderRow:
        return drift.LadderRow(rows=1_000_000, tool=tool, seconds=seconds, traced_peak_mb=traced,
                               rss_growth_mb=100.0, maxrss_mb=900.0,
                               real_caught=caught, real_total=9, negligible_flagged=0, negligible_total=7,
                               unchanged_flagged=0, flagged=[], runs=2)

    table = drift.ladder_table([row("shipway", 5.0, 9, 100.0), row("evidently", 300.0, 8, 1000.0)])
    assert table[0].startswith("| rows (ref + cur) x 40 cols")
    assert table[2].startswith("| 1,000,000 + 1,000,000 | evidently | 2 | 300 | 1.0x | 1,000.0 | 1.00x")
    assert table[3].startswith("| 1,000,000 + 1,000,000 | shipway | 2 | 5 | 60.0x | 100.0 | 0.10x")
    assert table[3].endswith("| 9 / 9 | 0 / 7 | 0 / 24 |")
