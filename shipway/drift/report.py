"""Batch drift check: a window of live inputs against a baseline, feature by feature.

:func:`compute_drift` is the one entry point (the CLI and the benchmark both call it). The
reference is either the raw training frame (as Evidently takes it) or the stored baseline
profile; with a raw frame the KS statistic is scipy's exactly, with a profile the test runs
against the profile's quantile sketch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from shipway.drift.profile import (
    categorical_entry,
    category_counts,
    is_numeric_column,
    numeric_entry,
    numeric_values,
    reference_scale,
    sorted_bin_counts,
    validate_profile,
)
from shipway.drift.stats import (
    categorical_psi,
    chi_square,
    fractions_of,
    jensen_shannon,
    ks_2samp_sorted,
    ks_against_sketch,
    psi,
    sketch_of,
    wasserstein_normed,
)
from shipway_core.observability.drift import DEFAULT_THRESHOLDS

RULES = ("effect", "any", "all", "psi", "test")
NULL_SLOT = "\x00null"  # cannot collide with a category name read from JSON/CSV text
MAX_PLOTTED_CATEGORIES = 20


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature counts as drifted.

    ``rule``: ``effect`` (the default) decides on effect size, which does not grow with the
    sample: a numeric feature drifts when its normalised Wasserstein distance exceeds
    ``wasserstein`` (0.1: a 0.1-sd mean shift), a categorical one when its Jensen-Shannon
    distance exceeds ``jensen_shannon`` (0.06: about a 7-10 point move of one share), and the
    test (KS / chi-square at ``p_value``) must confirm. Below ``small_sample`` non-null rows on
    either side distances are noisy and the test decides alone. The null rate is its own signal:
    a change of more than ``null_rate`` (0.03 = 3 points) flags the feature whatever its values.
    The older p-value/PSI rules remain: ``any`` flags when PSI *or* the test flags, ``all``
    needs both, ``psi``/``test`` use one signal only (at large volume ``any``/``test`` flag noise).
    """

    psi: float = 0.2
    p_value: float = 0.01
    rule: str = "effect"
    # The stack's defaults (shipway_core.observability.drift): batch report and live alerts agree.
    wasserstein: float = DEFAULT_THRESHOLDS["wasserstein"]
    jensen_shannon: float = DEFAULT_THRESHOLDS["jensen_shannon"]
    null_rate: float = DEFAULT_THRESHOLDS["null_rate"]
    small_sample: int = 1000

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule: {self.rule!r} is not valid; allowed: {', '.join(RULES)}")
        if not self.psi > 0:
            raise ValueError(f"psi: {self.psi!r} is not valid; use a positive PSI threshold")
        if not 0 < self.p_value < 1:
            raise ValueError(f"p_value: {self.p_value!r} is not valid; use a p-value between 0 and 1")
        for name in ("wasserstein", "jensen_shannon", "null_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ValueError(f"{name}: {value!r} is not valid; use a positive distance threshold")
        if not (isinstance(self.small_sample, int) and self.small_sample >= 1):
            raise ValueError(f"small_sample: {self.small_sample!r} is not valid; use a row count of at least 1")

    def effect_threshold(self, kind: str) -> float:
        """The distance threshold of a numeric or categorical feature."""
        return self.wasserstein if kind == "numeric" else self.jensen_shannon

    def judge(
        self, kind: str, *, psi_value: float, effect: float, p_value: float, null_delta: float, n: int
    ) -> tuple[bool, tuple[str, ...]]:
        """Whether a feature drifted under any rule, and every signal that fired.

        Reasons: ``effect`` (distance above its threshold), ``test`` (p below ``p_value``),
        ``psi`` (PSI above ``psi``), ``nulls`` (null rate moved more than ``null_rate``).
        """
        hits = {
            "effect": effect > self.effect_threshold(kind),
            "test": p_value < self.p_value,
            "psi": psi_value > self.psi,
            "nulls": abs(null_delta) > self.null_rate,
        }
        reasons = tuple(r for r, hit in hits.items() if hit)
        if self.rule != "effect":
            return self.decide(psi_value, p_value)
        return bool(self.decisive(reasons, n)), reasons

    def decisive(self, reasons: tuple[str, ...], n: int) -> tuple[str, ...]:
        """The signals that make a feature drift under the rule (empty: it did not drift); the rest
        of ``reasons`` fired too but decide nothing (PSI under the ``effect`` rule, say). The one
        place each rule is defined: ``judge`` and ``decide`` drift exactly when this is not empty."""
        hit = set(reasons)
        if "no-values" in hit:
            return ("no-values",)
        if self.rule == "effect":
            # Distances are noisy on few rows: there the test decides alone; otherwise it confirms.
            if n < self.small_sample:
                decided: tuple[str, ...] = ("test",) if "test" in hit else ()
            else:
                decided = ("effect", "test") if {"effect", "test"} <= hit else ()
            return decided + (("nulls",) if "nulls" in hit else ())
        fired = tuple(r for r in ("psi", "test") if r in hit)
        return {"any": fired, "all": fired if len(fired) == 2 else (),
                "psi": tuple(r for r in fired if r == "psi"), "test": tuple(r for r in fired if r == "test")}[self.rule]

    def decide(self, psi_value: float, p_value: float) -> tuple[bool, tuple[str, ...]]:
        """Whether a feature drifted under a p-value/PSI rule, and which of the two signals fired."""
        reasons = tuple(r for r, hit in (("psi", psi_value > self.psi), ("test", p_value < self.p_value)) if hit)
        return bool(self.decisive(reasons, self.small_sample)), reasons


def thresholds_from_slo(slo: Any, **overrides: Any) -> DriftThresholds:
    """Drift thresholds from a stack's ``shipway_core.config.SloSettings`` (per model and env)."""
    return DriftThresholds(
        **{
            "psi": slo.drift_psi,
            "wasserstein": slo.drift_wasserstein,
            "jensen_shannon": slo.drift_jensen_shannon,
            "null_rate": slo.drift_null_rate,
            **overrides,
        }
    )


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature, with the binned distributions the HTML report plots."""

    name: str
    kind: str
    psi: float
    test: str  # ks | ks-sketch | chi2 | none
    statistic: float
    p_value: float
    drifted: bool
    reasons: tuple[str, ...]
    reference_null_rate: float
    current_null_rate: float
    current_count: int
    bins: tuple[str, ...] = ()
    reference_fractions: tuple[float, ...] = ()
    current_fractions: tuple[float, ...] = ()
    effect: float = math.nan
    effect_measure: str = ""  # wasserstein (normalised by the reference sd) | jensen-shannon
    effect_threshold: float = math.nan
    decided_by: tuple[str, ...] = ()  # the reasons the rule decided on; the others are context

    @property
    def context(self) -> tuple[str, ...]:
        """Signals that fired but decided nothing under the rule (shown as "also: ...")."""
        return tuple(r for r in self.reasons if r not in self.decided_by)

    @property
    def effect_ratio(self) -> float:
        """Effect size ÷ its threshold (1 = the threshold; 0 when there is no effect size)."""
        ratio = self.effect / self.effect_threshold if self.effect_threshold else math.nan
        return ratio if math.isfinite(ratio) else 0.0

    def effect_text(self) -> str:
        """``wasserstein 0.25 > 0.1``: the effect size against its threshold (``n/a`` without one)."""
        if not self.effect_measure:
            return "n/a"
        above = math.isfinite(self.effect) and self.effect > self.effect_threshold
        value = f"{self.effect:.3g}" if math.isfinite(self.effect) else "n/a"
        return f"{self.effect_measure} {value} {'>' if above else '≤'} {self.effect_threshold:.3g}"

    def signal(self, null_rate_threshold: float) -> tuple[str, float, float, float]:
        """The strongest decision signal as (measure, value, threshold, value ÷ threshold): the effect
        size, or the null-rate change when that is further past its own threshold."""
        null_delta = abs(self.current_null_rate - self.reference_null_rate)
        null_ratio = null_delta / null_rate_threshold if null_rate_threshold > 0 else 0.0
        if null_ratio > self.effect_ratio or not self.effect_measure:
            return "null rate change", null_delta, null_rate_threshold, null_ratio
        return self.effect_measure, self.effect, self.effect_threshold, self.effect_ratio


@dataclass(frozen=True)
class DriftReport:
    """The result of one drift check."""

    reference_rows: int
    current_rows: int
    thresholds: DriftThresholds
    features: tuple[FeatureDrift, ...]
    missing_features: tuple[str, ...] = ()
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def drifted_features(self) -> list[str]:
        """Names of the flagged features, furthest past their thresholds first."""
        return [f.name for f in self.ranked() if f.drifted]

    def ranked(self) -> list[FeatureDrift]:
        """Every feature, drifted first, then by how far its strongest signal is past its threshold."""
        null_rate = self.thresholds.null_rate
        return sorted(self.features, key=lambda f: (not f.drifted, -f.signal(null_rate)[3], f.name))

    @property
    def drift_detected(self) -> bool:
        """True when any feature is flagged."""
        return any(f.drifted for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``--output json`` and ``--report-json`` document)."""
        doc = asdict(self)
        for feature_doc, feature in zip(doc["features"], self.features, strict=True):
            feature_doc["effect_ratio"] = feature.effect_ratio
        doc["drifted_features"] = self.drifted_features
        doc["drift_detected"] = self.drift_detected
        return _json_safe(doc)


def _json_safe(value: Any) -> Any:
    """NaN/inf become null: strict JSON (jq, browsers) has no NaN token."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _bin_labels(edges: Sequence[float | None]) -> tuple[str, ...]:
    def fmt(e: float | None, default: str) -> str:
        return default if e is None else f"{e:.4g}"

    return tuple(f"[{fmt(lo, '-inf')}, {fmt(hi, '+inf')})" for lo, hi in zip(edges[:-1], edges[1:], strict=True))


def _with_nulls(fractions: Sequence[float] | np.ndarray, null_rate: float) -> np.ndarray:
    """Bin fractions of all rows plus a null slot, as the serving app computes online PSI.

    With no nulls on either side the extra slot contributes exactly 0, so PSI is the plain binned
    PSI; a pipeline that starts sending nulls raises PSI just as the live gauge does.
    """
    return np.r_[(1.0 - null_rate) * np.asarray(fractions, dtype="float64"), null_rate]


def _null_rate(series: pd.Series, present: int) -> float:
    return (len(series) - present) / len(series) if len(series) else 0.0


def _numeric(
    name: str,
    entry: Mapping[str, Any],
    current: pd.Series,
    ref_sorted: np.ndarray | None,
    n_reference: int,
    thresholds: DriftThresholds,
) -> FeatureDrift:
    cur = np.sort(numeric_values(current))
    edges = entry["edges"]
    cur_fractions = fractions_of(sorted_bin_counts(edges, cur))
    cur_null = _null_rate(current, cur.size)
    ref_null = float(entry.get("null_rate", 0.0))
    value = psi(_with_nulls(entry["fractions"], ref_null), _with_nulls(cur_fractions, cur_null))
    if ref_sorted is not None and ref_sorted.size and cur.size:
        test, res = "ks", ks_2samp_sorted(ref_sorted, cur, decision_threshold=thresholds.p_value)
    elif entry.get("quantiles") and cur.size:
        ref_n = round(n_reference * (1.0 - entry.get("null_rate", 0.0)))
        test, res = (
            "ks-sketch",
            ks_against_sketch(
                entry["quantiles"], max(ref_n, 1), cur, presorted=True, decision_threshold=thresholds.p_value
            ),
        )
    else:
        test, res = "none", None
    statistic, p_value = (res.statistic, res.pvalue) if res else (float("nan"), 1.0)
    ref_sketch = entry.get("quantiles")
    effect = (
        wasserstein_normed(ref_sketch, sketch_of(cur, len(ref_sketch)), reference_scale(entry))
        if ref_sketch and cur.size
        else math.nan
    )
    n = min(round(n_reference * (1.0 - ref_null)), int(cur.size))
    drifted, reasons = thresholds.judge(
        "numeric",
        psi_value=value,
        effect=effect,
        p_value=p_value,
        null_delta=cur_null - ref_null,
        n=n,
    )
    if cur.size == 0 and len(current):
        drifted, reasons = True, ("no-values",)
    return FeatureDrift(
        name=name,
        kind="numeric",
        psi=value,
        test=test,
        statistic=statistic,
        p_value=p_value,
        drifted=drifted,
        reasons=reasons,
        reference_null_rate=ref_null,
        current_null_rate=cur_null,
        current_count=int(cur.size),
        bins=_bin_labels(edges),
        reference_fractions=tuple(float(f) for f in entry["fractions"]),
        current_fractions=tuple(float(f) for f in cur_fractions),
        effect=effect,
        effect_measure="wasserstein",
        effect_threshold=thresholds.wasserstein,
        decided_by=thresholds.decisive(reasons, n) if drifted else (),
    )


def _categorical(
    name: str,
    entry: Mapping[str, Any],
    current: pd.Series,
    ref_counts: Mapping[str, float],
    thresholds: DriftThresholds,
) -> FeatureDrift:
    cur_counts = category_counts(current)
    total = sum(cur_counts.values())
    cur_fractions = {k: v / total for k, v in cur_counts.items()} if total else {}
    ref_fractions: Mapping[str, float] = entry["fractions"]
    ref_null, cur_null = float(entry.get("null_rate", 0.0)), _null_rate(current, total)
    value = categorical_psi(
        {**{k: (1 - ref_null) * f for k, f in ref_fractions.items()}, NULL_SLOT: ref_null},
        {**{k: (1 - cur_null) * f for k, f in cur_fractions.items()}, NULL_SLOT: cur_null},
    )
    res = chi_square(ref_counts, cur_counts)
    effect = jensen_shannon(ref_fractions, cur_fractions) if total else math.nan
    n = min(round(sum(ref_counts.values())), total)
    drifted, reasons = thresholds.judge(
        "categorical",
        psi_value=value,
        effect=effect,
        p_value=res.pvalue,
        null_delta=cur_null - ref_null,
        n=n,
    )
    if total == 0 and len(current):
        drifted, reasons = True, ("no-values",)
    ranked = sorted(
        set(ref_fractions) | set(cur_fractions),
        key=lambda k: -max(ref_fractions.get(k, 0.0), cur_fractions.get(k, 0.0)),
    )
    shown = ranked[:MAX_PLOTTED_CATEGORIES]
    return FeatureDrift(
        name=name,
        kind="categorical",
        psi=value,
        test="chi2",
        statistic=res.statistic,
        p_value=res.pvalue,
        drifted=drifted,
        reasons=reasons,
        reference_null_rate=ref_null,
        current_null_rate=cur_null,
        current_count=total,
        bins=tuple(shown),
        reference_fractions=tuple(float(ref_fractions.get(k, 0.0)) for k in shown),
        current_fractions=tuple(float(cur_fractions.get(k, 0.0)) for k in shown),
        effect=effect,
        effect_measure="jensen-shannon",
        effect_threshold=thresholds.jensen_shannon,
        decided_by=thresholds.decisive(reasons, n) if drifted else (),
    )


def _profile_counts(entry: Mapping[str, Any], n_rows: int) -> dict[str, float]:
    """Approximate reference category counts from a profile (fractions x non-null rows)."""
    present = n_rows * (1.0 - float(entry.get("null_rate", 0.0)))
    return {k: f * present for k, f in entry["fractions"].items()}


def _raw_feature(
    name: str, reference: pd.Series, current: pd.Series, bins: int, thresholds: DriftThresholds
) -> FeatureDrift:
    """One feature against raw reference values: the profile entry and the test share one sort."""
    if is_numeric_column(reference):
        ref_sorted = np.sort(numeric_values(reference))
        entry = numeric_entry(ref_sorted, len(reference), bins)
        return _numeric(name, entry, current, ref_sorted, len(reference), thresholds)
    counts = category_counts(reference)
    return _categorical(name, categorical_entry(counts, len(reference)), current, counts, thresholds)


def _feature_task(
    name: str,
    reference: pd.DataFrame | Mapping[str, Any],
    current: pd.DataFrame,
    n_reference: int,
    bins: int,
    thresholds: DriftThresholds,
) -> Callable[[], FeatureDrift] | None:
    """The computation for one feature, or None when either side lacks it."""
    if name not in current.columns:
        return None
    if isinstance(reference, pd.DataFrame):
        if name not in reference.columns:
            return None
        return partial(_raw_feature, name, reference[name], current[name], bins, thresholds)
    entry = reference["features"].get(name)
    if entry is None:
        return None
    if entry["kind"] == "numeric":
        return partial(_numeric, name, entry, current[name], None, n_reference, thresholds)
    return partial(_categorical, name, entry, current[name], _profile_counts(entry, n_reference), thresholds)


def default_workers() -> int:
    """Threads for per-feature work: numpy's sort/searchsorted release the GIL, so features run
    in parallel on the cores there are (capped: past a few threads memory bandwidth wins)."""
    return max(1, min(os.cpu_count() or 1, 8))


def compute_drift(
    reference: pd.DataFrame | Mapping[str, Any],
    current: pd.DataFrame,
    *,
    thresholds: DriftThresholds | None = None,
    bins: int = 10,
    features: Sequence[str] | None = None,
    workers: int | None = None,
) -> DriftReport:
    """Compare ``current`` with ``reference`` (raw frame or baseline profile) for every feature.

    Features are those of the reference (or ``features``); a reference feature absent from the
    current window is listed in ``missing_features`` rather than silently skipped, because a
    column that stopped arriving is a pipeline break, not "no drift". Features are independent,
    so they are computed on ``workers`` threads (default: one per core, at most 8).
    """
    thresholds = thresholds or DriftThresholds()
    if isinstance(reference, pd.DataFrame):
        names = list(features) if features is not None else [str(c) for c in reference.columns]
        n_reference = int(len(reference))
    else:
        validate_profile(reference)
        names = list(features) if features is not None else list(reference["features"])
        n_reference = int(reference["n_rows"])
    tasks = {name: _feature_task(name, reference, current, n_reference, bins, thresholds) for name in names}
    missing = [name for name, task in tasks.items() if task is None]
    runnable = [task for task in tasks.values() if task is not None]
    n_workers = min(workers or default_workers(), max(len(runnable), 1))
    if n_workers > 1:
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="drift") as pool:
            results = list(pool.map(lambda task: task(), runnable))
    else:
        results = [task() for task in runnable]
    return DriftReport(
        reference_rows=n_reference,
        current_rows=int(len(current)),
        thresholds=thresholds,
        features=tuple(results),
        missing_features=tuple(missing),
    )
