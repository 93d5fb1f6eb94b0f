"""Baseline profile of a training set: the reference every drift check compares against.

The profile is computed once at training time and stored with the model version as the artifact
``baseline_profile.json``; the serving app bins live inputs with it per request, and
``shipway monitor drift`` compares request-log windows with it. Keeping it a small JSON document
(quantile bin edges + fractions, never raw rows) means it can ship with a model without leaking
training data.

Format (``"format": 1``)::

    {"format": 1, "n_rows": N,
     "features": {
        "<numeric>": {"kind": "numeric", "edges": [null, e1, ..., e9, null],
                      "fractions": [f0, ..., f9], "null_rate": r, "min": lo, "max": hi,
                      "quantiles": [q0, ..., q100], "std": s},
        "<categorical>": {"kind": "categorical", "fractions": {"a": 0.5, ...}, "null_rate": r}}}

* ``edges`` are reference quantiles; the first and last are ``null`` and mean -inf/+inf, so every
  live value falls in some bin. Duplicate quantiles (discrete columns) are collapsed, so a feature
  has *at most* ``bins`` bins; consumers must use ``len(fractions)``, which is always
  ``len(edges) - 1``.
* Bins are left-closed: value ``x`` is in bin ``i`` when ``edges[i] <= x < edges[i + 1]``
  (:func:`bin_indices` is the one implementation; the serving app should use it).
* ``fractions`` are over non-null values; ``null_rate`` is separate so a pipeline that starts
  sending nulls is visible even when the non-null distribution is unchanged.
* ``quantiles`` (optional, 101 points) lets a KS test run against a profile when the raw training
  data is not at hand; consumers that do not need it ignore it. With ``std`` (the reference
  standard deviation) it is also what the normalised Wasserstein distance needs
  (:func:`reference_scale` estimates ``std`` from the sketch for profiles written before it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROFILE_FORMAT = 1
PROFILE_ARTIFACT = "baseline_profile.json"
SKETCH_POINTS = 101


def is_numeric_column(series: pd.Series) -> bool:
    """Numbers are binned by quantiles; booleans and everything else are categories."""
    return bool(pd.api.types.is_numeric_dtype(series.dtype)) and not pd.api.types.is_bool_dtype(series.dtype)


def numeric_values(series: pd.Series) -> np.ndarray:
    """Non-null values as float64 (non-finite values count as null: they cannot be binned)."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return values[np.isfinite(values)]


def category_counts(series: pd.Series) -> dict[str, int]:
    """Non-null value counts keyed by the value as a string.

    Counting first and stringifying only the distinct keys avoids a per-row ``str()`` over
    object columns; keys that stringify alike (``1`` and ``"1"``) are merged.
    """
    counts: dict[str, int] = {}
    for key, count in series.value_counts(sort=False, dropna=True).items():
        name = str(key)
        counts[name] = counts.get(name, 0) + int(count)
    return counts


def sorted_quantiles(sorted_values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles (numpy's default method) of an already sorted array.

    Sorting once and indexing is cheaper than ``np.quantile`` (which partitions again), and the
    same sorted array then serves the bin counts and the KS test.
    """
    n = sorted_values.size
    pos = probs * (n - 1)
    lo = np.floor(pos).astype("int64")
    hi = np.minimum(lo + 1, n - 1)
    a, b = sorted_values[lo], sorted_values[hi]
    return a + (pos - lo) * (b - a)


def quantile_edges(sorted_values: np.ndarray, bins: int) -> list[float | None]:
    """Edges ``[None, q(1/bins), ..., q((bins-1)/bins), None]`` with duplicate quantiles removed."""
    if sorted_values.size == 0:
        return [None, None]
    inner = np.unique(sorted_quantiles(sorted_values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return [None, *(float(e) for e in inner), None]


def inner_edges(edges: Sequence[float | None]) -> np.ndarray:
    """The finite edges of a profile's edge list (the first/last ``None`` are -inf/+inf)."""
    return np.asarray([e for e in edges[1:-1]], dtype="float64")


def bin_indices(edges: Sequence[float | None], values: np.ndarray) -> np.ndarray:
    """Bin index of each value under the left-closed convention ``edges[i] <= x < edges[i+1]``."""
    return np.searchsorted(inner_edges(edges), values, side="right")


def bin_counts(edges: Sequence[float | None], values: np.ndarray) -> np.ndarray:
    """Counts per bin (vectorised: one searchsorted + one bincount, no per-row Python)."""
    return np.bincount(bin_indices(edges, values), minlength=len(edges) - 1).astype("int64")


def sorted_bin_counts(edges: Sequence[float | None], sorted_values: np.ndarray) -> np.ndarray:
    """Counts per bin of a *sorted* array: ``#(x < e[i+1]) - #(x < e[i])``, O(bins log n)."""
    below = np.searchsorted(sorted_values, inner_edges(edges), side="left")
    return np.diff(np.r_[0, below, sorted_values.size]).astype("int64")


def _fractions(counts: np.ndarray) -> list[float]:
    total = int(counts.sum())
    return [float(c) / total if total else 0.0 for c in counts]


def numeric_entry(sorted_values: np.ndarray, n_rows: int, bins: int) -> dict[str, Any]:
    """Profile entry of a numeric column from its sorted non-null values and total row count."""
    edges = quantile_edges(sorted_values, bins)
    present = sorted_values.size
    entry: dict[str, Any] = {
        "kind": "numeric",
        "edges": edges,
        "fractions": _fractions(sorted_bin_counts(edges, sorted_values)) if present else [0.0],
        "null_rate": (n_rows - present) / n_rows if n_rows else 0.0,
        "min": float(sorted_values[0]) if present else None,
        "max": float(sorted_values[-1]) if present else None,
    }
    if present:
        sketch = sorted_quantiles(sorted_values, np.linspace(0.0, 1.0, SKETCH_POINTS))
        entry["quantiles"] = [float(q) for q in sketch]
        # The scale of the normalised Wasserstein distance: live and batch divide by the same number.
        entry["std"] = float(sorted_values.std())
    return entry


def reference_scale(entry: Mapping[str, Any]) -> float:
    """The reference standard deviation of a numeric entry; older profiles without ``std`` get
    the normal-consistent estimate from the sketch's interquartile range (IQR / 1.349)."""
    if entry.get("std") is not None:
        return float(entry["std"])
    q = entry.get("quantiles") or []
    return (float(q[75]) - float(q[25])) / 1.349 if len(q) == SKETCH_POINTS else 0.0


def numeric_feature(series: pd.Series, bins: int) -> dict[str, Any]:
    """Profile entry of one numeric column."""
    return numeric_entry(np.sort(numeric_values(series)), len(series), bins)


def categorical_entry(counts: Mapping[str, int], n_rows: int) -> dict[str, Any]:
    """Profile entry of a categorical column from its category counts and total row count."""
    total = sum(counts.values())
    return {
        "kind": "categorical",
        "fractions": {k: v / total for k, v in sorted(counts.items())} if total else {},
        "null_rate": (n_rows - total) / n_rows if n_rows else 0.0,
    }


def categorical_feature(series: pd.Series) -> dict[str, Any]:
    """Profile entry of one categorical column (fractions over non-null values)."""
    return categorical_entry(category_counts(series), len(series))


def build_profile(df: pd.DataFrame, bins: int = 10) -> dict[str, Any]:
    """Profile every column of ``df``: quantile bins for numbers, category fractions otherwise."""
    if bins < 2:
        raise ValueError(f"bins: {bins} is not valid; use at least 2 bins")
    features: dict[str, Any] = {}
    for column in df.columns:
        series = df[column]
        features[str(column)] = (
            numeric_feature(series, bins) if is_numeric_column(series) else categorical_feature(series)
        )
    return {"format": PROFILE_FORMAT, "n_rows": int(len(df)), "features": features}


def validate_profile(profile: Mapping[str, Any]) -> None:
    """Reject a document that is not a format-1 profile, naming the first bad field."""
    if profile.get("format") != PROFILE_FORMAT:
        raise ValueError(f"format: {profile.get('format')!r} is not valid; allowed: {PROFILE_FORMAT}")
    features = profile.get("features")
    if not isinstance(features, Mapping):
        raise ValueError("features: missing; a profile maps feature names to entries")
    for name, entry in features.items():
        kind = entry.get("kind")
        if kind == "numeric":
            edges, fractions = entry.get("edges", []), entry.get("fractions", [])
            if len(edges) != len(fractions) + 1 or edges[0] is not None or edges[-1] is not None:
                raise ValueError(f"features.{name}.edges: need len(fractions)+1 edges with null ends")
            finite = [e for e in edges[1:-1]]
            if any(e is None or not math.isfinite(e) for e in finite) or finite != sorted(finite):
                raise ValueError(f"features.{name}.edges: inner edges must be finite and increasing")
        elif kind != "categorical":
            raise ValueError(f"features.{name}.kind: {kind!r} is not valid; allowed: categorical, numeric")


def save_profile(profile: Mapping[str, Any], path: Path) -> Path:
    """Write a profile as JSON (``allow_nan=False``: the format has no NaN/Infinity tokens)."""
    path.write_text(json.dumps(profile, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def load_profile(path: Path) -> dict[str, Any]:
    """Read and validate a ``baseline_profile.json``."""
    profile = json.loads(Path(path).read_text())
    validate_profile(profile)
    return profile


def log_profile(df: pd.DataFrame, bins: int = 10) -> dict[str, Any]:
    """Compute the profile and log it to the active MLflow run as ``baseline_profile.json``.

    Called from the training script, inside ``mlflow.start_run()``, so the profile travels with
    the run that produced the registered model version.
    """
    import mlflow

    profile = build_profile(df, bins=bins)
    mlflow.log_dict(profile, PROFILE_ARTIFACT)
    return profile


def fetch_profile(name: str, version: int, tracking_uri: str, dest: Path) -> dict[str, Any]:
    """Download a model version's baseline profile from the registry.

    The artifact is looked up next to the model first (``<model source>/baseline_profile.json``,
    where a training script logging it inside the model directory puts it) and then in the run
    that produced the version (where :func:`log_profile` puts it).
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from shipway.registry import mlflow_uris

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mv = client.get_model_version(name, str(version))
    candidates: list[dict[str, str]] = []
    if mv.source:
        candidates.append({"artifact_uri": f"{mv.source.rstrip('/')}/{PROFILE_ARTIFACT}"})
    if mv.run_id:
        candidates.append({"run_id": mv.run_id, "artifact_path": PROFILE_ARTIFACT})
    errors: list[str] = []
    for where in candidates:
        try:
            # MLflow 3 resolves a `models:/m-<id>` source through the process-wide URIs, not the
            # one passed here: unset, it would open (and create) ./mlflow.db in the caller's cwd.
            with mlflow_uris(tracking_uri):
                local = mlflow.artifacts.download_artifacts(**where, dst_path=str(dest), tracking_uri=tracking_uri)
        except (MlflowException, OSError) as exc:
            errors.append(f"{where}: {exc}")
            continue
        return load_profile(Path(local))
    raise FileNotFoundError(
        f"model {name} version {version} has no {PROFILE_ARTIFACT} artifact (looked in: "
        + "; ".join(errors or ["no source or run recorded"])
        + ")"
    )
