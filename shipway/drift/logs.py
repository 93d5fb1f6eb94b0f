"""Reading monitoring windows: the serving app's request log, or a CSV/Parquet extract.

The serving app (``--request-log PATH``) appends one JSON object per request::

    {"ts": "...", "request_id": "...", "model": "...", "version": "...",
     "inputs": {"col": [v0, v1, ...]}, "predictions": [p0, p1, ...]}

A request may carry several rows; they are expanded here so a window is an ordinary DataFrame
with one row per scored example.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

LOG_SUFFIXES = (".jsonl", ".json", ".log", ".ndjson")


@dataclass(frozen=True)
class LogFilter:
    """Which requests of a log belong to the window (all when every field is None)."""

    model: str | None = None
    version: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def parse_ts(value: Any) -> pd.Timestamp:
    """Request-log timestamps: ISO-8601 strings or epoch seconds, normalised to UTC."""
    if isinstance(value, int | float):
        return pd.Timestamp(value, unit="s", tz="UTC")
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """JSON objects of a JSONL file; blank lines are skipped, a corrupt line names its number."""
    with Path(path).open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON object ({exc})") from exc


def _wanted(record: dict[str, Any], flt: LogFilter) -> bool:
    if flt.model is not None and record.get("model") != flt.model:
        return False
    if flt.version is not None and str(record.get("version")) != str(flt.version):
        return False
    if flt.since is None and flt.until is None:
        return True
    ts = parse_ts(record.get("ts"))
    if flt.since is not None and ts < pd.Timestamp(flt.since).tz_convert("UTC"):
        return False
    return not (flt.until is not None and ts >= pd.Timestamp(flt.until).tz_convert("UTC"))


def read_request_log_inputs(path: Path, flt: LogFilter | None = None) -> pd.DataFrame:
    """Model inputs of every request in the window, one row per example.

    Columns are accumulated as lists (one ``extend`` per request and column) so a large log costs
    one JSON parse per line and one DataFrame construction, not a DataFrame per request.
    """
    flt = flt or LogFilter()
    columns: dict[str, list[Any]] = {}
    rows = 0
    for record in iter_records(path):
        if not _wanted(record, flt):
            continue
        # a scalar input is a one-row column: tolerate clients that log {"x": 1.0}
        inputs = {k: v if isinstance(v, list) else [v] for k, v in (record.get("inputs") or {}).items()}
        width = max((len(v) for v in inputs.values()), default=0)
        for name in inputs.keys() - columns.keys():
            columns[name] = [None] * rows
        for name, values in columns.items():
            got = inputs.get(name)
            values.extend(got if got is not None and len(got) == width else [None] * width)
        rows += width
    # pandas infers float64 for JSON numbers mixed with nulls and keeps strings/bools as categories.
    return pd.DataFrame(columns)


def read_window(path: Path, flt: LogFilter | None = None) -> pd.DataFrame:
    """A monitoring window from a request log (JSONL), a CSV or a Parquet file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in LOG_SUFFIXES:
        return read_request_log_inputs(path, flt)
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ValueError(f"{path}: suffix {suffix!r} is not valid; allowed: {', '.join(LOG_SUFFIXES)}, .csv, .parquet")
