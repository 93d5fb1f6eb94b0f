"""Online input drift: running per-feature histograms over the training baseline's bins.

The baseline profile (``baseline_profile.json``, written at training time) stores, per
feature, quantile bin edges and the fraction of training rows in each bin. Serving keeps
counts of incoming values over the *same* bins, so the Population Stability Index is a
cheap vector operation that can be refreshed every N requests rather than per request.

Bin convention (same as ``numpy.histogram``): bins are left-closed ``[e_i, e_{i+1})``,
the last bin also takes values equal to its right edge, and values outside the first or
last finite edge fall into the outermost bin. Nulls (JSON null / NaN) get their own slot
whose expected fraction is the profile's ``null_rate``; with no nulls on either side it
contributes exactly 0. Unseen categories share an "other" slot whose expected fraction is 0.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipway.drift import stats as drift_stats
from shipway.drift.profile import SKETCH_POINTS, reference_scale
from shipway_core.observability import drift as drift_decision

PSI_EPSILON = 1e-4


def psi(actual_counts: np.ndarray, expected_fractions: np.ndarray) -> float:
    """Population Stability Index of observed counts against expected fractions.

    PSI = sum((a - e) * ln(a / e)) with both fractions floored at ``PSI_EPSILON`` so empty
    bins do not make it infinite. Returns 0.0 when nothing has been observed.
    """
    total = float(actual_counts.sum())
    if total <= 0:
        return 0.0
    return drift_stats.psi(expected_fractions, actual_counts / total, PSI_EPSILON)  # the one PSI


@dataclass(frozen=True)
class NumericFeature:
    """A numeric feature's bins; ``expected`` has one slot per bin plus a final null slot."""

    name: str
    edges: np.ndarray
    expected: np.ndarray
    # The profile's 101-point quantile sketch and standard deviation: live values are also
    # counted between sketch points so the window's quantiles (and the normalised Wasserstein
    # distance the batch report decides on) can be recovered. None for profiles without one.
    sketch: np.ndarray | None = None
    scale: float = 0.0

    @property
    def n_bins(self) -> int:
        """Number of value bins (the null slot not included)."""
        return len(self.edges) - 1


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical feature; ``expected`` is ordered as categories, then "other", then null."""

    name: str
    index: Mapping[str, int]
    expected: np.ndarray


Feature = NumericFeature | CategoricalFeature


@dataclass(frozen=True)
class BaselineProfile:
    """A parsed ``baseline_profile.json`` (format 1)."""

    n_rows: int
    features: Mapping[str, Feature]


class ProfileError(ValueError):
    """The baseline profile is malformed; the message names the field."""


def parse_profile(doc: Any) -> BaselineProfile:
    """Validate and parse a format-1 baseline profile document."""
    if not isinstance(doc, dict):
        raise ProfileError("baseline profile must be a JSON object")
    if doc.get("format") != 1:
        raise ProfileError(f"baseline profile format {doc.get('format')!r} is not supported; allowed: [1]")
    features = doc.get("features")
    if not isinstance(features, dict):
        raise ProfileError("baseline profile 'features' must be an object of feature name -> spec")
    parsed: dict[str, Feature] = {}
    for name, spec in features.items():
        if not isinstance(spec, dict):
            raise ProfileError(f"features.{name} must be an object")
        kind = spec.get("kind")
        null_rate = _null_rate(name, spec.get("null_rate", 0.0))
        if kind == "numeric":
            parsed[name] = _numeric(name, spec, null_rate)
        elif kind == "categorical":
            parsed[name] = _categorical(name, spec, null_rate)
        else:
            raise ProfileError(f"features.{name}.kind {kind!r} is not supported; allowed: "
                               f"['categorical', 'numeric']")
    n_rows = doc.get("n_rows", 0)
    return BaselineProfile(n_rows=int(n_rows) if isinstance(n_rows, int) else 0, features=parsed)


def _null_rate(name: str, value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ProfileError(f"features.{name}.null_rate {value!r} must be a number in [0, 1]")
    return float(value)


def _numeric(name: str, spec: Mapping[str, Any], null_rate: float) -> NumericFeature:
    raw_edges = spec.get("edges")
    fractions = spec.get("fractions")
    if not isinstance(raw_edges, list) or len(raw_edges) < 2:
        raise ProfileError(f"features.{name}.edges must be a list of at least 2 bin edges")
    if not isinstance(fractions, list) or len(fractions) != len(raw_edges) - 1:
        raise ProfileError(f"features.{name}.fractions must be a list of {len(raw_edges) - 1} "
                           f"fractions (one per bin)")
    edges = []
    for i, e in enumerate(raw_edges):
        if e is None and i in (0, len(raw_edges) - 1):
            edges.append(-math.inf if i == 0 else math.inf)
        elif isinstance(e, int | float) and not isinstance(e, bool):
            edges.append(float(e))
        else:
            raise ProfileError(f"features.{name}.edges[{i}] {e!r} must be a number (null only "
                               f"as the first or last edge)")
    if any(b < a for a, b in zip(edges, edges[1:], strict=False)):
        raise ProfileError(f"features.{name}.edges must be sorted ascending")
    expected = np.array([*((1.0 - null_rate) * float(f) for f in fractions), null_rate])
    quantiles = spec.get("quantiles")
    sketch = None
    if isinstance(quantiles, list) and len(quantiles) == SKETCH_POINTS:
        sketch = np.asarray(quantiles, dtype=np.float64)
    return NumericFeature(
        name=name,
        edges=np.array(edges, dtype=np.float64),
        expected=expected,
        sketch=sketch,
        scale=reference_scale(spec) if sketch is not None else 0.0,
    )


def _categorical(name: str, spec: Mapping[str, Any], null_rate: float) -> CategoricalFeature:
    fractions = spec.get("fractions")
    if not isinstance(fractions, dict) or not fractions:
        raise ProfileError(f"features.{name}.fractions must be an object of category -> fraction")
    index = {str(cat): i for i, cat in enumerate(fractions)}
    expected = np.array([*((1.0 - null_rate) * float(f) for f in fractions.values()), 0.0, null_rate])
    return CategoricalFeature(name=name, index=index, expected=expected)


class DriftMonitor:
    """Running histograms of served inputs and their PSI against one baseline profile.

    ``observe`` runs on the request path and only adds counts (bisect for a handful of
    rows, ``np.searchsorted`` + ``np.bincount`` for larger batches). ``refresh_due`` says
    when the PSI values are worth recomputing: after ``refresh_every`` requests or
    ``refresh_seconds`` of observations. When the window holds ``window`` rows, all counts
    are halved, so PSI follows recent traffic instead of everything since start.
    """

    def __init__(
        self,
        profile: BaselineProfile,
        feature_names: set[str] | frozenset[str],
        *,
        refresh_every: int = 100,
        refresh_seconds: float = 5.0,
        window: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.features: dict[str, Feature] = {
            n: f for n, f in profile.features.items() if n in feature_names
        }
        self._edges_list = {
            n: f.edges.tolist() for n, f in self.features.items() if isinstance(f, NumericFeature)
        }
        self.refresh_every = refresh_every
        self.refresh_seconds = refresh_seconds
        self.window = window
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Start a new, empty observation window."""
        self._counts: dict[str, np.ndarray] = {n: np.zeros(len(f.expected)) for n, f in self.features.items()}
        # Single-row requests add to plain lists (a numpy scalar += costs ~1 us, a list slot ~30 ns);
        # they are folded into the arrays whenever counts are read.
        self._small: dict[str, list[int]] = {n: [0] * len(f.expected) for n, f in self.features.items()}
        self.samples = 0.0
        self._pending = 0
        self._last_refresh = self._clock()
        # Counts between sketch points: slot i holds sketch[i-1] <= x < sketch[i] (open ends).
        self._sketch_counts: dict[str, np.ndarray] = {
            n: np.zeros(SKETCH_POINTS + 1)
            for n, f in self.features.items()
            if isinstance(f, NumericFeature) and f.sketch is not None
        }

    @property
    def counts(self) -> dict[str, np.ndarray]:
        """Per-feature counts in the current window (bins, then other/null slots)."""
        for name, small in self._small.items():
            if any(small):
                self._counts[name] += small
                self._small[name] = [0] * len(small)
        return self._counts

    def observe(self, columns: Mapping[str, list[Any]], n_rows: int) -> None:
        """Add one request's rows to the histograms."""
        for name, feature in self.features.items():
            values = columns.get(name)
            if values is None:
                continue
            if isinstance(feature, NumericFeature):
                self._observe_numeric(feature, values, n_rows)
            else:
                self._observe_categorical(feature, values, self._small[name])
        self.samples += n_rows
        self._pending += 1
        if self.samples >= self.window:
            for counts in [*self.counts.values(), *self._sketch_counts.values()]:
                counts *= 0.5
            self.samples *= 0.5

    def _observe_numeric(self, feature: NumericFeature, values: list[Any], n_rows: int) -> None:
        if feature.sketch is not None:
            arr = np.asarray(values, dtype=np.float64)
            arr = arr[np.isfinite(arr)]
            sketch_counts = self._sketch_counts[feature.name]
            sketch_counts += np.bincount(
                np.searchsorted(feature.sketch, arr, side="right"), minlength=sketch_counts.size
            )
        last_bin = feature.n_bins - 1
        if n_rows <= 8:
            small = self._small[feature.name]
            edges = self._edges_list[feature.name]
            for v in values:
                if v is None or v != v:
                    small[-1] += 1
                else:
                    small[min(max(bisect.bisect_right(edges, v) - 1, 0), last_bin)] += 1
            return
        counts = self._counts[feature.name]
        arr = np.asarray(values, dtype=np.float64)
        nulls = np.isnan(arr)
        n_null = int(nulls.sum())
        if n_null:
            arr = arr[~nulls]
            counts[-1] += n_null
        idx = np.clip(np.searchsorted(feature.edges, arr, side="right") - 1, 0, last_bin)
        counts[: feature.n_bins] += np.bincount(idx, minlength=feature.n_bins)

    @staticmethod
    def _observe_categorical(feature: CategoricalFeature, values: list[Any], counts: list[int]) -> None:
        other = len(feature.index)
        for v in values:
            if v is None or v != v:  # JSON null, or NaN (a null as pandas hands it over)
                counts[-1] += 1
            else:
                counts[feature.index.get(v if type(v) is str else str(v), other)] += 1

    @property
    def pending(self) -> int:
        """Requests observed since the PSI values were last computed."""
        return self._pending

    def refresh_due(self) -> bool:
        """True when enough requests or time have passed since the last PSI computation."""
        if self._pending == 0:
            return False
        return self._pending >= self.refresh_every or self._clock() - self._last_refresh >= self.refresh_seconds

    def compute(self) -> dict[str, float]:
        """PSI per monitored feature for the current window; resets the refresh schedule."""
        self._pending = 0
        self._last_refresh = self._clock()
        counts = self.counts
        return {n: psi(counts[n], f.expected) for n, f in self.features.items()}

    def effect_sizes(self) -> dict[str, float]:
        """The batch report's effect size per feature for the current window: the normalised
        Wasserstein distance (numeric, from the window's quantiles recovered from the sketch
        counts) and the Jensen-Shannon distance (categorical, over non-null counts; unseen
        values pooled as one category). NaN for an empty window or a profile without a sketch."""
        counts = self.counts
        out: dict[str, float] = {}
        for name, feature in self.features.items():
            if isinstance(feature, NumericFeature):
                out[name] = self._numeric_effect(feature)
            else:
                out[name] = self._categorical_effect(feature, counts[name])
        return out

    def null_rate_changes(self) -> dict[str, float]:
        """Per feature, the absolute change of the null rate in the window against the baseline's
        (the batch report's null-rate signal; 0.05 = a 5-point jump). NaN for an empty window."""
        counts = self.counts
        out: dict[str, float] = {}
        for name, feature in self.features.items():
            c = counts[name]
            total = float(c.sum())
            out[name] = abs(float(c[-1]) / total - float(feature.expected[-1])) if total > 0 else math.nan
        return out

    def effects(self) -> dict[str, dict[str, float]]:
        """Every live effect size by statistic, then feature: ``wasserstein`` (numeric features),
        ``jensen_shannon`` (categorical) and ``null_rate`` (all): what the drift gauge exports."""
        out: dict[str, dict[str, float]] = {}
        for name, value in self.effect_sizes().items():
            kind = "wasserstein" if isinstance(self.features[name], NumericFeature) else "jensen_shannon"
            out.setdefault(kind, {})[name] = value
        out["null_rate"] = self.null_rate_changes()
        return out

    def _numeric_effect(self, feature: NumericFeature) -> float:
        sketch_counts = self._sketch_counts.get(feature.name)
        if feature.sketch is None or sketch_counts is None or sketch_counts.sum() <= 0:
            return math.nan
        current = window_sketch(feature.sketch, sketch_counts)
        return drift_stats.wasserstein_normed(feature.sketch, current, feature.scale)

    @staticmethod
    def _categorical_effect(feature: CategoricalFeature, counts: np.ndarray) -> float:
        present = counts[:-1]  # categories, then "other"; the null slot is its own signal
        if present.sum() <= 0:
            return math.nan
        names = [*feature.index, "\x00other"]
        expected = feature.expected[:-1]
        return drift_stats.jensen_shannon(
            dict(zip(names, expected.tolist(), strict=True)), dict(zip(names, present.tolist(), strict=True))
        )


def window_sketch(reference_sketch: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The window's quantiles at the reference sketch's probabilities, from counts between
    reference sketch points (slot ``i``: ``sketch[i-1] <= x < sketch[i]``).

    The window CDF is known exactly at each sketch point (``#(x < sketch[k]) / n``) and taken
    linear in between; mass beyond the reference range sits at its ends. Sketch points are one
    percentile apart, so the recovered quantiles are within one percentile step of the exact ones.
    """
    cdf = np.cumsum(counts)[:-1] / counts.sum()  # F(sketch[k]^-), k = 0..100
    probs = np.linspace(0.0, 1.0, reference_sketch.size)
    return np.interp(probs, cdf, reference_sketch)


def emit_effects(emit: Callable[..., None], effects: Mapping[str, Mapping[str, float]], samples: float,
                 model_name: str, model_version: int | str) -> None:
    """Write one ``drift_effects`` log line (shipway_core.observability.drift.LOG_FIELDS): the
    input of the drift alerts on targets no Prometheus scrapes (CloudWatch metric filters on
    SageMaker, Log Analytics queries on Azure). The app calls this on every drift refresh."""
    emit("info", drift_decision.LOG_EVENT, **drift_decision.log_fields(effects, samples),
         model_name=model_name, model_version=model_version)
