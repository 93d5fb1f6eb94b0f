"""Late-label join and rolling quality: missing ids, duplicates, late arrivals, exposition."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from shipway.drift.quality import (
    QualityValue,
    join_labels,
    latest_quality,
    read_labels,
    read_predictions,
    render_prometheus,
    windowed_quality,
    write_textfile,
)


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _request(rid: str, ts: str, preds: list, version: str = "3") -> dict:
    return {
        "ts": ts,
        "request_id": rid,
        "model": "iris",
        "version": version,
        "inputs": {"x": [0.0] * len(preds)},
        "predictions": preds,
    }


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return _write_jsonl(
        tmp_path / "requests.jsonl",
        [
            _request("r1", "2026-01-01T10:00:00Z", ["a"]),
            _request("r2", "2026-01-01T10:20:00Z", ["b", "a"]),
            _request("r3", "2026-01-01T11:10:00Z", ["a"]),
            _request("r1", "2026-01-01T11:30:00Z", ["b"]),  # client retry logged twice: first one counts
            _request("r4", "2026-01-01T11:40:00Z", ["b"]),
        ],
    )


def test_join_handles_missing_ids_duplicates_and_late_labels(tmp_path: Path, log: Path) -> None:
    labels = _write_jsonl(
        tmp_path / "labels.jsonl",
        [
            {"request_id": "r3", "label": "b", "ts": "2026-01-03T00:00:00Z"},  # arrives two days late
            {"request_id": "r1", "label": "b", "ts": "2026-01-01T12:00:00Z"},
            {"request_id": "r1", "label": "a", "ts": "2026-01-02T12:00:00Z"},  # correction: latest wins
            {"request_id": "r2", "label": ["b", "b"], "ts": "2026-01-01T12:00:00Z"},
            {"request_id": "ghost", "label": "a", "ts": "2026-01-01T12:00:00Z"},  # never logged
        ],
    )
    joined, stats = join_labels(read_predictions(log), read_labels(labels))
    assert stats.predictions == 5  # r1 (first), r2 x2, r3, r4
    assert stats.duplicate_requests == 1
    assert stats.labels == 6 and stats.duplicate_labels == 1
    assert stats.unmatched_labels == 1
    assert stats.joined == 4 and stats.unlabeled == 1  # r4 has no label yet
    rows = {(r.request_id, r.row): (r.prediction, r.label) for r in joined.itertuples()}
    assert rows == {
        ("r1", 0): ("a", "a"),
        ("r2", 0): ("b", "b"),
        ("r2", 1): ("a", "b"),
        ("r3", 0): ("a", "b"),
    }
    # the late label for r3 lands in r3's window (request time), not when it arrived
    windows = windowed_quality(joined, "1h", "classification")
    assert windows[["window_start", "metric", "value", "n"]].to_dict("records") == [
        {"window_start": pd.Timestamp("2026-01-01T10:00:00Z"), "metric": "accuracy", "value": 2 / 3, "n": 3},
        {"window_start": pd.Timestamp("2026-01-01T11:00:00Z"), "metric": "accuracy", "value": 0.0, "n": 1},
    ]


def test_duplicate_labels_without_timestamps_keep_the_last_in_file_order(tmp_path: Path, log: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nr1,b\nr1,a\n")
    joined, stats = join_labels(read_predictions(log), read_labels(labels))
    assert stats.duplicate_labels == 1
    assert joined[["request_id", "label"]].to_dict("records") == [{"request_id": "r1", "label": "a"}]


def test_csv_labels_need_request_id_and_label(tmp_path: Path) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("id,label\nr1,a\n")
    with pytest.raises(ValueError, match="missing column\\(s\\) request_id; labels need request_id and label"):
        read_labels(bad)


def test_regression_uses_mae_and_latest_window(tmp_path: Path) -> None:
    log = _write_jsonl(
        tmp_path / "requests.jsonl",
        [
            _request("a", "2026-01-01T08:00:00Z", [1.5]),
            _request("b", "2026-01-01T10:00:00Z", [2.5]),
            _request("c", "2026-01-01T10:30:00Z", [4.25]),
        ],
    )
    labels = _write_jsonl(
        tmp_path / "labels.jsonl",
        [
            {"request_id": "a", "label": 10.0},
            {"request_id": "b", "label": 2.0},
            {"request_id": "c", "label": 5.25},
        ],
    )
    joined, _ = join_labels(read_predictions(log), read_labels(labels))
    assert latest_quality(joined, "1h") == [QualityValue("iris", "3", "mae", 0.75, 2)]


def test_prometheus_exposition_and_atomic_textfile(tmp_path: Path) -> None:
    text = render_prometheus(
        [
            QualityValue("iris", "3", "accuracy", 0.875, 40),
            QualityValue('we"ird', "1", "mae", float("nan"), 0),
        ]
    )
    assert text.splitlines() == [
        "# HELP shipway_model_quality Rolling model quality from late ground-truth labels.",
        "# TYPE shipway_model_quality gauge",
        'shipway_model_quality{model="iris",version="3",metric="accuracy"} 0.875',
        'shipway_model_quality{model="we\\"ird",version="1",metric="mae"} NaN',
        "# HELP shipway_model_quality_samples Labeled predictions behind shipway_model_quality.",
        "# TYPE shipway_model_quality_samples gauge",
        'shipway_model_quality_samples{model="iris",version="3"} 40',
        'shipway_model_quality_samples{model="we\\"ird",version="1"} 0',
    ]
    target = tmp_path / "textfile" / "shipway_quality.prom"
    write_textfile(text, target)
    write_textfile(text, target)  # replacing an existing file works too
    assert target.read_text() == text
    assert [p.name for p in target.parent.iterdir()] == ["shipway_quality.prom"]  # no temp files left
    assert oct(target.stat().st_mode & 0o777) == "0o644"
