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
    path = drift.generate(tmp_path / "d.npz", rows=4000)
    again = drift.generate(tmp_path / "e.npz", rows=4000)
    data, data2 = np.load(path), np.load(again)
    # NaN-equal: the null-rate column's missing values are part of the seeded data
    assert np.array_equal(data["cur_num"], data2["cur_num"], equal_nan=True)
    assert not np.array_equal(data["cur_num"], data2["cur_num"])  # (plain equality would fail on them)
    names = [str(n) for n in data["numeric_names"]]
    assert len(names) == 20 and len(data["categorical_names"]) == 5
    ref, cur = data["ref_num"], data["cur_num"]
    shifted = {n for i, n in enumerate(names)
               if abs(np.nanmean(cur[:, i]) - np.nanmean(ref[:, i])) > 0.3 * np.nanstd(ref[:, i])
               or abs(np.nanstd(cur[:, i]) / np.nanstd(ref[:, i]) - 1) > 0.2}
    assert shifted == set(drift.DRIFTED_NUMERIC)
    null_rates = {n: (float(np.isnan(ref[:, i]).mean()), float(np.isnan(cur[:, i]).mean()))
                  for i, n in enumerate(names)}
    assert {n for n, (r, c) in null_rates.items() if r or c} == set(drift.DRIFTED_NULLS) == {"num_18"}
    assert null_rates["num_18"][0] == 0.0 and null_rates["num_18"][1] == pytest.approx(0.05, abs=0.01)
    assert drift.real_shifts() == ["cat_1", "cat_3", "num_03", "num_07", "num_12", "num_16", "num_18"]
    assert drift.expected_drifted() == ["cat_1", "cat_3", "num_03", "num_07", "num_12", "num_16"]
    assert "cat_3_new" in set(data["cur_cat"][:, 3]) and "cat_3_new" not in set(data["ref_cat"][:, 3])
