"""Request-log windows: expansion of multi-row requests and the window filter."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from shipway.drift.logs import LogFilter, read_window


def _log(tmp_path: Path) -> Path:
    lines = [
        {
            "ts": "2026-01-01T10:00:00Z",
            "request_id": "1",
            "model": "iris",
            "version": "3",
            "inputs": {"x": [1, 2.5], "c": ["a", "b"]},
            "predictions": [0, 1],
        },
        {
            "ts": "2026-01-01T11:00:00Z",
            "request_id": "2",
            "model": "iris",
            "version": "4",
            "inputs": {"x": [3], "c": ["a"], "new": [7]},
            "predictions": [1],
        },
        {
            "ts": "2026-01-01T12:00:00Z",
            "request_id": "3",
            "model": "other",
            "version": "1",
            "inputs": {"x": [9]},
            "predictions": [1],
        },
    ]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    return path


def test_request_log_expands_rows_and_pads_missing_columns(tmp_path: Path) -> None:
    frame = read_window(_log(tmp_path))
    assert list(frame["x"]) == [1.0, 2.5, 3.0, 9.0]
    assert frame["x"].dtype == "float64"
    assert list(frame["c"][:3]) == ["a", "b", "a"] and pd.isna(frame["c"][3])
    assert frame["new"].isna().tolist() == [True, True, False, True]


def test_filter_by_model_version_and_time(tmp_path: Path) -> None:
    path = _log(tmp_path)
    assert list(read_window(path, LogFilter(model="iris"))["x"]) == [1.0, 2.5, 3.0]
    assert list(read_window(path, LogFilter(model="iris", version="4"))["x"]) == [3.0]
    since = datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert list(read_window(path, LogFilter(since=since))["x"]) == [3.0, 9.0]
    assert list(read_window(path, LogFilter(until=since))["x"]) == [1.0, 2.5]


def test_csv_parquet_and_bad_inputs(tmp_path: Path) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    df.to_csv(tmp_path / "w.csv", index=False)
    df.to_parquet(tmp_path / "w.parquet")
    assert read_window(tmp_path / "w.csv").equals(read_window(tmp_path / "w.parquet"))
    with pytest.raises(ValueError, match="suffix '.txt' is not valid"):
        read_window(tmp_path / "w.txt")
    (tmp_path / "bad.jsonl").write_text('{"ts": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not a JSON object"):
        read_window(tmp_path / "bad.jsonl")
