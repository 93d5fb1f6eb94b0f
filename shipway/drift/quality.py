"""Model performance from late ground truth: join labels to the request log, roll quality up.

Labels arrive hours or days after a prediction (a fraud chargeback, a delivered order), so the
join is keyed on ``request_id`` and windows are keyed on the *request* time, not the label's
arrival: a label that comes in late still lands in the window of the prediction it grades.

Join rules (each counted in :class:`JoinStats`, so a broken label feed is visible):

* a label whose ``request_id`` is not in the log is **unmatched** and dropped;
* a prediction with no label is **unlabeled** and excluded from quality (not counted as wrong);
* a duplicate label for the same ``(request_id, row)`` keeps the latest by label ``ts`` (file
  order when there is no ``ts``): corrections win;
* a duplicate ``request_id`` in the log (a client retry logged twice) keeps the first request.

Labels are JSONL or CSV with ``request_id`` and ``label`` columns, optionally ``row`` (position in
a multi-row request, default 0) and ``ts`` (when the label arrived). A JSON label may also be a
list with one entry per row of the request.

The gauge ``shipway_model_quality{model,version,metric}`` is published as a Prometheus text
exposition written atomically to a *textfile* (the node-exporter textfile-collector convention:
``*.prom`` in a directory node_exporter reads, replaced by rename so a scrape never sees half a
file). A batch job then needs no server of its own; the same text can be served or pushed.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipway.drift.logs import iter_records

TASKS = ("auto", "classification", "regression")


@dataclass(frozen=True)
class JoinStats:
    """What happened to every prediction and label in a join."""

    predictions: int
    labels: int
    joined: int
    unlabeled: int
    unmatched_labels: int
    duplicate_labels: int
    duplicate_requests: int


def read_predictions(path: Path) -> pd.DataFrame:
    """One row per scored example of the log: ts, request_id, model, version, row, prediction, record.

    ``record`` is the request's position in the log, which tells a retried request id logged
    twice apart from the rows of one request.
    """
    records: dict[str, list[Any]] = {
        k: [] for k in ("ts", "request_id", "model", "version", "row", "prediction", "record")
    }
    for number, rec in enumerate(iter_records(path)):
        preds = rec.get("predictions") or []
        n = len(preds)
        records["record"].extend([number] * n)
        records["ts"].extend([rec.get("ts")] * n)
        records["request_id"].extend([str(rec.get("request_id"))] * n)
        records["model"].extend([rec.get("model")] * n)
        records["version"].extend([str(rec.get("version"))] * n)
        records["row"].extend(range(n))
        records["prediction"].extend(preds)
    frame = pd.DataFrame(records)
    frame["ts"] = _to_utc(frame["ts"])
    return frame


def _to_utc(values: pd.Series) -> pd.Series:
    if values.empty:
        return pd.Series([], dtype="datetime64[ns, UTC]")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return pd.to_datetime(values, unit="s", utc=True)
    return pd.to_datetime(values, utc=True, format="ISO8601")


def _label_rows(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Flatten label records (list labels become one row each)."""
    cols: dict[str, list[Any]] = {"request_id": [], "row": [], "label": [], "ts": [], "seq": []}
    seq = 0
    for rec in records:
        label = rec.get("label")
        many = isinstance(label, list)
        values: list[Any] = label if isinstance(label, list) else [label]
        for i, value in enumerate(values):
            cols["request_id"].append(str(rec.get("request_id")))
            cols["row"].append(i if many else int(rec.get("row", 0) or 0))
            cols["label"].append(value)
            cols["ts"].append(rec.get("ts"))
            cols["seq"].append(seq)
            seq += 1
    return pd.DataFrame(cols)


def read_labels(path: Path) -> pd.DataFrame:
    """Labels from JSONL or CSV: request_id, row, label, ts (may be null), seq (file order)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        raw = pd.read_csv(path, dtype={"request_id": str})
        missing = {"request_id", "label"} - set(raw.columns)
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(sorted(missing))}; labels need request_id and label"
            )
        records: Iterable[Mapping[str, Any]] = raw.to_dict("records")
    else:
        records = iter_records(path)
    frame = _label_rows(records)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601") if frame["ts"].notna().any() else pd.NaT
    return frame


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame) -> tuple[pd.DataFrame, JoinStats]:
    """Inner-join labels to predictions on (request_id, row) under the module's rules."""
    first_record = predictions.groupby("request_id", sort=False)["record"].transform("min")
    dup_requests = int(predictions.drop_duplicates(["request_id", "record"]).duplicated("request_id").sum())
    preds = predictions[predictions["record"] == first_record]
    ordered = labels.sort_values(["ts", "seq"], na_position="first", kind="stable")
    latest = ordered.drop_duplicates(["request_id", "row"], keep="last")
    duplicate_labels = len(labels) - len(latest)
    joined = preds.merge(
        latest[["request_id", "row", "label", "ts"]].rename(columns={"ts": "label_ts"}),
        on=["request_id", "row"],
        how="inner",
    )
    known = set(preds["request_id"])
    unmatched = int((~latest["request_id"].isin(known)).sum())
    stats = JoinStats(
        predictions=len(preds),
        labels=len(labels),
        joined=len(joined),
        unlabeled=len(preds) - len(joined),
        unmatched_labels=unmatched,
        duplicate_labels=duplicate_labels,
        duplicate_requests=dup_requests,
    )
    return joined.sort_values("ts", kind="stable").reset_index(drop=True), stats


def detect_task(joined: pd.DataFrame) -> str:
    """Regression when predictions are non-integer floats; classification otherwise."""
    pred = pd.to_numeric(joined["prediction"], errors="coerce")
    if pred.notna().all() and len(pred) and not np.allclose(pred, np.round(pred)):
        return "regression"
    return "classification"


def _scores(joined: pd.DataFrame, task: str) -> tuple[str, pd.Series]:
    """Per-example score whose mean is the window metric (1/0 hits, or absolute error)."""
    if task == "regression":
        err = (
            pd.to_numeric(joined["prediction"], errors="coerce") - pd.to_numeric(joined["label"], errors="coerce")
        ).abs()
        return "mae", err
    return "accuracy", (joined["prediction"].astype(str) == joined["label"].astype(str)).astype("float64")


def windowed_quality(joined: pd.DataFrame, freq: str = "1h", task: str = "auto") -> pd.DataFrame:
    """Quality per tumbling window of *request* time: model, version, window_start, metric, value, n."""
    task = detect_task(joined) if task == "auto" else task
    metric, score = _scores(joined, task)
    frame = joined.assign(score=score)
    grouped = frame.groupby(["model", "version", pd.Grouper(key="ts", freq=freq)], sort=True)["score"]
    out = grouped.agg(["mean", "count"]).reset_index()
    out = out[out["count"] > 0].rename(columns={"ts": "window_start", "mean": "value", "count": "n"})
    out.insert(3, "metric", metric)
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class QualityValue:
    """The latest rolling quality of one model version (one gauge sample)."""

    model: str
    version: str
    metric: str
    value: float
    samples: int


def latest_quality(joined: pd.DataFrame, window: str = "1h", task: str = "auto") -> list[QualityValue]:
    """Quality over the trailing ``window`` ending at each version's newest labeled request."""
    if joined.empty:
        return []
    task = detect_task(joined) if task == "auto" else task
    metric, score = _scores(joined, task)
    frame = joined.assign(score=score)
    span = pd.Timedelta(window)
    values = []
    for (model, version), group in frame.groupby(["model", "version"], sort=True):
        recent = group[group["ts"] > group["ts"].max() - span]
        values.append(
            QualityValue(str(model), str(version), metric, float(recent["score"].mean()), int(recent["score"].count()))
        )
    return values


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_prometheus(values: Iterable[QualityValue]) -> str:
    """Prometheus text exposition of ``shipway_model_quality`` and ``shipway_model_quality_samples``."""
    quality = [
        "# HELP shipway_model_quality Rolling model quality from late ground-truth labels.",
        "# TYPE shipway_model_quality gauge",
    ]
    samples = [
        "# HELP shipway_model_quality_samples Labeled predictions behind shipway_model_quality.",
        "# TYPE shipway_model_quality_samples gauge",
    ]
    for v in values:
        labels = f'model="{_escape_label(v.model)}",version="{_escape_label(v.version)}"'
        shown = "NaN" if not math.isfinite(v.value) else repr(float(v.value))
        quality.append(f'shipway_model_quality{{{labels},metric="{_escape_label(v.metric)}"}} {shown}')
        samples.append(f"shipway_model_quality_samples{{{labels}}} {v.samples}")
    return "\n".join(quality + samples) + "\n"


def write_textfile(text: str, path: Path) -> Path:
    """Replace ``path`` atomically (temp file in the same directory + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
