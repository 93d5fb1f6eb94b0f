"""Per-feature attributions (Shapley values) for any model that scores a numeric matrix.

One implementation serves both uses the platform has for explanations:

* **local** (the serving app's ``/explain`` route): attributions for the request's rows;
* **global** (at registration): mean absolute attribution per feature over held-out rows,
  stored with the version as evidence (:func:`global_importance`, :data:`GLOBAL_TAG`).

The method is sampled Shapley values (Strumbelj & Kononenko 2014) with antithetic
permutations, computed from one batched model call per request. It is model-agnostic, needs
no dependency beyond numpy, and keeps two properties tests can check exactly:

* efficiency: a row's attributions sum to ``f(x) - f(baseline)`` for every sample size;
* for an additive model the result is exact: feature ``j`` gets ``w_j * (x_j - b_j)``.

The cost bound is explicit: ``max_evaluations`` model rows per request. With ``m`` features
each permutation costs ``m + 1`` rows, so a request gets ``max_evaluations // (rows * (m+1))``
permutations (at least :data:`MIN_PERMUTATIONS`, else the request is refused with a clear
error rather than answered with noise).

Why not SHAP's TreeExplainer here: it is exact and fast for tree ensembles, but ``shap``
pulls numba/llvmlite (~60 MB, slow import) into the serving image; it can be added later as a
second method without changing the route's contract (``method`` says which one ran).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Scorer = Callable[[np.ndarray], np.ndarray]
"""Scores a float matrix (rows x features) -> (rows,) or (rows, outputs)."""

GLOBAL_TAG = "shipway.explain.global"
"""Registry tag holding the version's global explanation (JSON, see :func:`global_evidence`)."""
METHOD = "sampled_shapley"
MIN_PERMUTATIONS = 2
DEFAULT_MAX_EVALUATIONS = 4096


class ExplainError(ValueError):
    """The request cannot be explained within its bounds; the message says what to change."""


@dataclass(frozen=True)
class Explanation:
    """Attributions for a batch: ``values[i][j]`` is feature ``features[j]``'s share in row ``i``."""

    features: tuple[str, ...]
    values: list[list[float]]
    base_values: list[float]
    outputs: list[float]
    output_index: list[int]
    permutations: int
    evaluations: int
    method: str = METHOD

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of ``/explain``: one entry per row, attributions keyed by feature."""
        rows = [
            {"attributions": dict(zip(self.features, vals, strict=True)), "base_value": base,
             "output": out, "output_index": idx}
            for vals, base, out, idx in zip(self.values, self.base_values, self.outputs, self.output_index,
                                            strict=True)
        ]
        return {"method": self.method, "features": list(self.features), "rows": rows,
                "permutations": self.permutations, "evaluations": self.evaluations}


def permutations_for(n_rows: int, n_features: int, max_evaluations: int) -> int:
    """How many permutations fit the budget (even, for antithetic pairs); ExplainError if < 2."""
    if n_features < 1:
        raise ExplainError("the model has no input features to attribute")
    per_permutation = n_rows * (n_features + 1)
    fits = max_evaluations // per_permutation
    fits -= fits % 2
    if fits < MIN_PERMUTATIONS:
        most = max_evaluations // (MIN_PERMUTATIONS * (n_features + 1))
        raise ExplainError(
            f"rows: {n_rows} rows x {n_features} features exceed the explanation budget of "
            f"{max_evaluations} model evaluations per request; send at most {max(most, 1)} rows per request")
    return fits


def _as_2d(scores: np.ndarray, n: int) -> np.ndarray:
    out = np.asarray(scores, dtype=np.float64)
    if out.ndim == 1:
        out = out.reshape(n, 1)
    if out.shape[0] != n:
        raise ExplainError(f"the model returned {out.shape[0]} scores for {n} rows")
    return out


def _paths(x: np.ndarray, baseline: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Rows walking from the baseline to ``x``, one feature switched per step, per order."""
    n_perm, m = orders.shape
    rows = np.empty((n_perm, m + 1, m), dtype=np.float64)
    rows[:, 0, :] = baseline
    for step in range(m):
        rows[:, step + 1, :] = rows[:, step, :]
        rows[np.arange(n_perm), step + 1, orders[:, step]] = x[orders[:, step]]
    return rows.reshape(n_perm * (m + 1), m)


def _orders(n_perm: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Antithetic permutations: each random order is followed by its reverse (halves the variance
    for models close to additive, at no extra cost)."""
    half = np.array([rng.permutation(m) for _ in range(n_perm // 2)], dtype=np.intp).reshape(-1, m)
    return np.concatenate([half, half[:, ::-1]])[:n_perm] if n_perm else half


def explain(score: Scorer, x: np.ndarray, baseline: np.ndarray, features: Sequence[str], *,
            max_evaluations: int = DEFAULT_MAX_EVALUATIONS, output: int | None = None,
            seed: int = 0) -> Explanation:
    """Sampled Shapley attributions of ``x`` (rows x features) against ``baseline`` (features,).

    ``output`` picks the column of a multi-output scorer (e.g. a class probability); by default
    each row explains its own highest-scoring output (the predicted class).
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    base = np.asarray(baseline, dtype=np.float64).reshape(-1)
    n, m = x.shape
    if base.shape[0] != m or len(features) != m:
        raise ExplainError(f"baseline has {base.shape[0]} values and {len(features)} names for {m} features")
    n_perm = permutations_for(n, m, max_evaluations)
    rng = np.random.default_rng(seed)
    orders = _orders(n_perm, m, rng)
    paths = np.concatenate([_paths(x[i], base, orders) for i in range(n)])
    scores = _as_2d(score(paths), paths.shape[0]).reshape(n, n_perm, m + 1, -1)
    values, bases, outs, picks = [], [], [], []
    for i in range(n):
        col = output if output is not None else int(np.argmax(scores[i, 0, m]))
        walk = scores[i, :, :, col]  # (perm, m+1)
        deltas = np.diff(walk, axis=1)  # contribution of the feature switched at each step
        phi = np.zeros(m)
        np.add.at(phi, orders.reshape(-1), deltas.reshape(-1))
        values.append((phi / n_perm).tolist())
        bases.append(float(walk[0, 0]))
        outs.append(float(walk[0, m]))
        picks.append(col)
    return Explanation(features=tuple(features), values=values, base_values=bases, outputs=outs,
                       output_index=picks, permutations=n_perm, evaluations=int(paths.shape[0]))


def global_importance(score: Scorer, x: np.ndarray, features: Sequence[str], *,
                      baseline: np.ndarray | None = None, max_evaluations: int = 200_000,
                      seed: int = 0) -> dict[str, float]:
    """Mean |attribution| per feature over ``x`` (held-out rows), largest first.

    The baseline defaults to the column medians of ``x``: a typical input, robust to outliers.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    base = np.median(x, axis=0) if baseline is None else np.asarray(baseline, dtype=np.float64)
    n, m = x.shape
    # Fewer permutations per row beat fewer rows: importance is an average over the data.
    rows = min(n, max(1, max_evaluations // (MIN_PERMUTATIONS * (m + 1))))
    result = explain(score, x[:rows], base, features, max_evaluations=max_evaluations, seed=seed)
    mean_abs = np.abs(np.array(result.values)).mean(axis=0)
    ranked = sorted(zip(features, mean_abs.tolist(), strict=True), key=lambda kv: -kv[1])
    return {name: round(value, 6) for name, value in ranked}


def global_evidence(importance: Mapping[str, float], rows: int) -> dict[str, Any]:
    """The JSON stored under :data:`GLOBAL_TAG` (and linked from promotion audit records)."""
    return {"method": METHOD, "rows": rows, "importance": dict(importance)}


def global_tag_value(importance: Mapping[str, float], rows: int) -> str:
    return json.dumps(global_evidence(importance, rows), sort_keys=False, separators=(",", ":"))


def global_explanation_tags(score: Scorer, x: np.ndarray, features: Sequence[str]) -> dict[str, str]:
    """What registration stores on a new version (``Registry.set_tags`` / ``set_model_version_tag``)."""
    importance = global_importance(score, x, features)
    return {GLOBAL_TAG: global_tag_value(importance, rows=int(np.atleast_2d(x).shape[0]))}


def explanation_link(tracking_uri: str, name: str, version: int, tags: Mapping[str, str]) -> dict[str, Any] | None:
    """What a promotion's audit record carries about the version's global explanation, if any."""
    if GLOBAL_TAG not in tags:
        return None
    try:
        top = list(json.loads(tags[GLOBAL_TAG]).get("importance", {}))[:5]
    except (ValueError, AttributeError):
        top = []
    return {"tag": GLOBAL_TAG, "model_version": f"models:/{name}/{version}", "registry": tracking_uri,
            "top_features": top}


def estimator_scorer(estimator: Any) -> Scorer:
    """Probabilities for a classifier (the predicted class's share is what a reviewer reads),
    the prediction itself for a regressor."""
    proba = getattr(estimator, "predict_proba", None)
    if callable(proba):
        return lambda rows: np.asarray(proba(rows), dtype=np.float64)
    predict = estimator.predict
    return lambda rows: np.asarray(predict(rows), dtype=np.float64)
