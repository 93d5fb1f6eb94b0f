"""One drift computation in a fresh process: ``python drift_worker.py TOOL DATA.npz MODE``.

Runs under the project venv (``shipway``) or the separate Evidently venv (``evidently``), so it
imports nothing from the project at module level. Prints one JSON line: compute seconds,
columns flagged, RSS just before the compute and its peak during it (sampled every 2 ms),
the lifetime peak (``ru_maxrss``);
with MODE ``tracemalloc`` also the peak of Python-tracked allocations during the compute
(numpy and pandas report their buffers to tracemalloc), which isolates the compute's own
memory from interpreter and import overhead.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
import tracemalloc
from typing import Any

import numpy as np
import pandas as pd


def frames(path: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """Reference and current frames with the numeric and categorical column names."""
    data = np.load(path, allow_pickle=False)
    numeric = [str(c) for c in data["numeric_names"]]
    categorical = [str(c) for c in data["categorical_names"]]

    def build(side: str) -> pd.DataFrame:
        cols: dict[str, Any] = {c: data[f"{side}_num"][:, i] for i, c in enumerate(numeric)}
        cols.update({c: data[f"{side}_cat"][:, i].astype(object) for i, c in enumerate(categorical)})
        return pd.DataFrame(cols)

    return build("ref"), build("cur"), numeric, categorical


def run_shipway(ref: pd.DataFrame, cur: pd.DataFrame, numeric: list[str], categorical: list[str]) -> list[str]:
    from shipway.drift.report import compute_drift

    return sorted(compute_drift(ref, cur).drifted_features)


def _evidently_flagged(snapshot: Any) -> list[str]:
    """Columns whose ValueDrift crossed its threshold (p-value tests: below; distances: at or above)."""
    flagged = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        method = str(config.get("method", "")).lower()
        value, threshold = float(metric["value"]), float(config["threshold"])
        is_p_value = "p_value" in method or "test" in method
        if (value < threshold) if is_p_value else (value >= threshold):
            flagged.append(str(config["column"]))
    return sorted(flagged)


def run_evidently(ref: pd.DataFrame, cur: pd.DataFrame, numeric: list[str], categorical: list[str]) -> list[str]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    return _evidently_flagged(snapshot)


_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_MB


class PeakRss:
    """Samples this process's RSS every 2 ms while the compute runs (ru_maxrss only knows the
    lifetime high-water mark, which the input frames may already have set)."""

    def __init__(self) -> None:
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def main(argv: list[str]) -> int:
    tool, path, mode = argv
    runner = {"shipway": run_shipway, "evidently": run_evidently}[tool]
    ref, cur, numeric, categorical = frames(path)
    # A small warm-up run first (2000 rows: past the 1000 where Evidently switches tests), so
    # lazy imports (scipy.stats, Evidently's metric registry) are
    # not billed to the measured compute of either tool.
    runner(ref.head(2000), cur.head(2000), numeric, categorical)
    rss_before = _rss_mb()
    if mode == "tracemalloc":
        tracemalloc.start()
    with PeakRss() as peak:
        started = time.perf_counter()
        flagged = runner(ref, cur, numeric, categorical)
        seconds = time.perf_counter() - started
    traced_peak = None
    if mode == "tracemalloc":
        traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    print(json.dumps({
        "tool": tool, "seconds": seconds, "flagged": flagged, "rss_before_mb": rss_before,
        "rss_peak_mb": peak.peak,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "traced_peak_mb": traced_peak,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
