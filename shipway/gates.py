"""Quality gates a model version must pass before it is pinned in an environment.

Four gates, thresholds from the target env's :class:`shipway_core.config.GateSettings`:

* ``metric-thresholds``: the version's run logged each metric in ``min_metrics`` at or above
  its minimum;
* ``no-regression``: scored *for real* on one evaluation set (both versions loaded with
  ``mlflow.pyfunc``), the candidate's accuracy is at most ``max_regression`` below the
  version currently pinned in the env. The set belongs to the environment or the champion
  (:func:`select_evaluation_set`); a candidate's own set fails the gate when there is a
  champion. Its source, owner and SHA-256 are evidence;
* ``signature-compatibility``: the candidate accepts every input the current version
  accepts, with the same types (extra *optional* inputs are fine; extra required ones would
  break existing callers);
* ``data-consistency``: the golden data matches the training baseline profile
  (``baseline_profile.json``): same features and kinds, values within the training range,
  null rates within ``max_null_rate_delta``, PSI per feature at most ``max_psi``.

All gates always run, so the evidence is complete even when the first one fails. Each
result is a :class:`GateResult` whose ``message`` is the exact line a reviewer reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipway.drift import profile as drift_profile
from shipway.drift import stats as drift_stats
from shipway.drift.profile import category_counts
from shipway_core.config import GateSettings

GATES = ("metric-thresholds", "no-regression", "signature-compatibility", "data-consistency")
LABEL_COLUMN = "label"
GOLDEN_ARTIFACT = "golden.csv"
BASELINE_ARTIFACT = "baseline_profile.json"
PROFILE_FORMAT = 1
# Golden values may exceed the training min/max by this fraction of the training span
# before it counts as out of range: a held-out set legitimately reaches a little further.
RANGE_TOLERANCE = 0.1
# Floor for empty bins in PSI, so one empty bin does not make PSI infinite.
PSI_EPSILON = 1e-4
# Comparisons of rounded-looking numbers (0.9667 - 0.9567) must not fail on float noise.
_FLOAT_SLACK = 1e-9

Predictor = Callable[[pd.DataFrame], Any]


@dataclass(frozen=True)
class ModelUnderTest:
    """One version as the gates see it (loaded lazily by the caller's ``predict``)."""

    name: str
    version: int
    run_id: str | None
    metrics: Mapping[str, float]
    signature: Any | None  # mlflow.models.ModelSignature
    predict: Predictor
    tags: Mapping[str, str] = field(default_factory=dict)  # registry tags (non-functional evidence)


@dataclass(frozen=True)
class GateInputs:
    """Everything the gates need; built by promotion from the registry (or by tests)."""

    env: str
    settings: GateSettings
    candidate: ModelUnderTest
    current: ModelUnderTest | None
    golden: pd.DataFrame | None
    golden_source: str
    baseline: Mapping[str, Any] | None
    # Who owns the evaluation set: "environment", "champion" or "candidate" (see
    # :func:`select_evaluation_set`). None: a caller that does not say (recorded as such).
    golden_owner: str | None = None


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict, the sentence explaining it and the numbers behind it."""

    gate: str
    passed: bool
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "message": self.message, **self.evidence}


@dataclass(frozen=True)
class GateReport:
    """All gate results for one candidate in one env."""

    env: str
    model: str
    version: int
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]

    def evidence(self) -> dict[str, Any]:
        """The JSON-able evidence stored in tags and in the audit trail."""
        return {
            "env": self.env,
            "model": self.model,
            "version": self.version,
            "passed": self.passed,
            "gates": {r.gate: r.as_dict() for r in self.results},
        }

    def tags(self) -> dict[str, str]:
        """MLflow version tags: one verdict per gate, the overall verdict, and the evidence."""
        tags = {f"shipway.gates.{r.gate}": "pass" if r.passed else "fail" for r in self.results}
        tags["shipway.gates.passed"] = "true" if self.passed else "false"
        tags["shipway.gates.env"] = self.env
        tags["shipway.gates.evidence"] = json.dumps(self.evidence(), sort_keys=True, separators=(",", ":"))
        return tags


def _passed(gate: str, text: str, **evidence: Any) -> GateResult:
    return GateResult(gate, True, f"gate '{gate}' passed: {text}", evidence)


def _failed(gate: str, text: str, **evidence: Any) -> GateResult:
    return GateResult(gate, False, f"gate '{gate}' failed: {text}", evidence)


def _f(x: float) -> str:
    return f"{x:.4f}"


# ----------------------------------------------------------------- metric thresholds


def metric_gate(inputs: GateInputs) -> GateResult:
    """Every required metric of the candidate's run is logged and at or above its minimum."""
    gate = "metric-thresholds"
    cand = inputs.candidate
    problems: list[str] = []
    checked: dict[str, Any] = {}
    for metric, minimum in sorted(inputs.settings.min_metrics.items()):
        value = cand.metrics.get(metric)
        checked[metric] = {"value": value, "min": minimum}
        if value is None:
            problems.append(
                f"metric '{metric}' is not logged on run {cand.run_id} of version {cand.version} "
                f"(required minimum {_f(minimum)})"
            )
        elif value + _FLOAT_SLACK < minimum:
            problems.append(f"{metric} {_f(value)} < required minimum {_f(minimum)}")
    if problems:
        return _failed(gate, "; ".join(problems), metrics=checked)
    if not checked:
        return _passed(gate, "no minimum metrics configured", metrics=checked)
    shown = ", ".join(f"{m} {_f(c['value'])} >= {_f(c['min'])}" for m, c in checked.items())
    return _passed(gate, shown, metrics=checked)


# ----------------------------------------------------------------------- regression


def split_golden(golden: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Features and labels of a golden dataset."""
    return golden.drop(columns=[LABEL_COLUMN]), golden[LABEL_COLUMN].to_numpy()


def predictions(predict: Predictor, features: pd.DataFrame) -> np.ndarray:
    """Model output as a flat array, whatever container pyfunc returned."""
    out = predict(features)
    if isinstance(out, pd.DataFrame):
        out = out.iloc[:, 0] if out.shape[1] == 1 else out
    arr = np.asarray(out)
    return arr.ravel() if arr.ndim > 1 and 1 in arr.shape else arr


def accuracy(predict: Predictor, golden: pd.DataFrame) -> float:
    """Share of golden rows whose prediction equals the label."""
    features, labels = split_golden(golden)
    pred = predictions(predict, features)
    return float(np.mean(pred == labels))


def _error_text(exc: Exception) -> str:
    """One readable line: MLflow schema errors embed the whole frame before the useful "Error: ..."."""
    text = str(exc).strip()
    if "Error: " in text:
        text = text.rsplit("Error: ", 1)[1]
    first = (text.splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}"


def _golden_problem(inputs: GateInputs) -> str | None:
    if inputs.golden is None:
        return f"no golden dataset ({inputs.golden_source}); pass --golden PATH"
    if LABEL_COLUMN not in inputs.golden.columns:
        return f"golden dataset {inputs.golden_source} has no '{LABEL_COLUMN}' column"
    if inputs.golden.empty:
        return f"golden dataset {inputs.golden_source} has no rows"
    return None


EVALUATION_OWNERS = ("environment", "champion", "candidate")


def select_evaluation_set(
    environment: tuple[pd.DataFrame, str] | None,
    champion: tuple[pd.DataFrame, str] | None,
    candidate: tuple[pd.DataFrame, str] | None,
) -> tuple[pd.DataFrame | None, str, str | None]:
    """The set both versions are scored on: the environment's, else the champion's.

    The candidate's own set is used only when there is no champion to compare with (a first
    promotion): a candidate that ships an easy test set must not pass the no-regression gate
    on it. Returns ``(frame, source, owner)``.
    """
    for owner, found in (("environment", environment), ("champion", champion), ("candidate", candidate)):
        if found is not None:
            return found[0], found[1], owner
    return None, "no evaluation set from the environment, the champion or the candidate", None


def dataset_sha256(frame: pd.DataFrame) -> str:
    """Content hash of an evaluation set (its canonical CSV), recorded as gate evidence so an
    auditor can tell which rows a verdict rests on."""
    import hashlib

    return hashlib.sha256(frame.to_csv(index=False, lineterminator="\n").encode()).hexdigest()


def regression_gate(inputs: GateInputs) -> GateResult:
    """Candidate accuracy may drop at most ``max_regression`` below the current version's, both
    scored on the same evaluation set owned by the environment or the champion."""
    gate = "no-regression"
    problem = _golden_problem(inputs)
    if problem:
        return _failed(gate, problem, golden=inputs.golden_source)
    assert inputs.golden is not None
    cand, cur = inputs.candidate, inputs.current
    allowed = inputs.settings.max_regression
    owner = inputs.golden_owner
    if owner is not None and owner not in EVALUATION_OWNERS:
        raise ValueError(f"golden_owner: {owner!r} is not valid; allowed: {', '.join(EVALUATION_OWNERS)}")
    base = {
        "golden": inputs.golden_source,
        "golden_owner": owner or "unrecorded",
        "golden_sha256": dataset_sha256(inputs.golden),
        "rows": len(inputs.golden),
        "allowed_drop": allowed,
    }
    if owner == "candidate" and cur is not None:
        return _failed(
            gate,
            f"evaluation set {inputs.golden_source} belongs to the candidate; score both versions on "
            f"the environment's or version {cur.version}'s set (an easy set of its own proves nothing)",
            current_version=cur.version,
            **base,
        )
    try:
        cand_acc = accuracy(cand.predict, inputs.golden)
    except Exception as exc:
        return _failed(
            gate, f"version {cand.version} cannot score the golden dataset: {_error_text(exc)}", **base
        )
    if cur is None:
        return _passed(
            gate,
            f"golden accuracy {_f(cand_acc)}; no version pinned in {inputs.env} to compare with",
            candidate_accuracy=cand_acc,
            current_version=None,
            **base,
        )
    try:
        cur_acc = accuracy(cur.predict, inputs.golden)
    except Exception as exc:
        return _failed(
            gate,
            f"current version {cur.version} cannot score the golden dataset: {_error_text(exc)}",
            candidate_accuracy=cand_acc,
            **base,
        )
    drop = cur_acc - cand_acc
    numbers = {
        "candidate_accuracy": cand_acc,
        "current_accuracy": cur_acc,
        "current_version": cur.version,
        "drop": drop,
        **base,
    }
    text = f"golden accuracy {_f(cand_acc)} vs current {_f(cur_acc)}"
    if drop > allowed + _FLOAT_SLACK:
        return _failed(gate, f"{text} (drop {_f(drop)} > allowed {_f(allowed)})", **numbers)
    return _passed(gate, f"{text} (drop {_f(max(drop, 0.0))} <= allowed {_f(allowed)})", **numbers)


# ------------------------------------------------------------ signature compatibility


def _columns(signature: Any) -> dict[str, tuple[str, bool]] | None:
    """name -> (type, required) for a column-based signature, None for tensor-based ones."""
    inputs = signature.inputs
    if (
        not getattr(inputs, "has_input_names", lambda: False)()
        or getattr(inputs, "is_tensor_spec", lambda: False)()
    ):
        return None
    out = {}
    for col in inputs.inputs:
        out[str(col.name)] = (str(getattr(col.type, "name", col.type)), bool(getattr(col, "required", True)))
    return out


def signature_problems(current: Any, candidate: Any, cur_v: int, cand_v: int) -> list[str]:
    """Why callers of the current version would break on the candidate (empty when they would not)."""
    cur_cols, cand_cols = _columns(current), _columns(candidate)
    if cur_cols is None or cand_cols is None:
        same = current.inputs.to_dict() == candidate.inputs.to_dict()
        return [] if same else [f"tensor input signature of version {cand_v} differs from version {cur_v}"]
    problems = []
    for name, (typ, _req) in cur_cols.items():
        if name not in cand_cols:
            problems.append(f"input '{name}' ({typ}) of version {cur_v} is missing from version {cand_v}")
        elif cand_cols[name][0] != typ:
            problems.append(
                f"input '{name}' is {typ} in version {cur_v} but {cand_cols[name][0]} in version {cand_v}"
            )
    for name, (typ, req) in cand_cols.items():
        if name not in cur_cols and req:
            problems.append(
                f"version {cand_v} adds required input '{name}' ({typ}) that callers of "
                f"version {cur_v} do not send"
            )
    return problems


def signature_gate(inputs: GateInputs) -> GateResult:
    """The candidate must accept exactly what the current version's callers already send."""
    gate = "signature-compatibility"
    cand, cur = inputs.candidate, inputs.current
    if cand.signature is None or cand.signature.inputs is None:
        return _failed(gate, f"version {cand.version} has no input signature")
    if cur is None:
        return _passed(gate, f"no version pinned in {inputs.env} to compare with", current_version=None)
    if cur.signature is None or cur.signature.inputs is None:
        return _failed(
            gate,
            f"current version {cur.version} has no input signature to compare with",
            current_version=cur.version,
        )
    problems = signature_problems(cur.signature, cand.signature, cur.version, cand.version)
    if problems:
        return _failed(gate, "; ".join(problems), current_version=cur.version, problems=problems)
    return _passed(
        gate,
        f"version {cand.version} accepts every input of version {cur.version}",
        current_version=cur.version,
    )


# ---------------------------------------------------------------- data consistency


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _inner_edges(edges: list[float | None]) -> np.ndarray:
    return np.asarray([e for e in edges if e is not None], dtype=float)


def numeric_fractions(values: pd.Series, edges: list[float | None]) -> np.ndarray:
    """Share of non-null values per bin; bin i is [edge_i, edge_i+1) with open outer ends."""
    inner = _inner_edges(edges)
    vals = values.dropna().to_numpy(dtype=float)
    counts = np.bincount(np.searchsorted(inner, vals, side="right"), minlength=len(inner) + 1)
    total = counts.sum()
    return counts / total if total else np.zeros(len(inner) + 1)


# A PSI over k bins from n rows is biased upwards by about (k-1)/n even with no drift, so
# small golden sets are compared on merged bins holding at least this many expected rows.
MIN_EXPECTED_ROWS_PER_BIN = 10


def coarsen_bins(expected: np.ndarray, actual: np.ndarray, n_rows: int,
                 min_rows: int = MIN_EXPECTED_ROWS_PER_BIN) -> tuple[np.ndarray, np.ndarray, int]:
    """Merge adjacent bins until each expects ``min_rows`` of ``n_rows`` golden rows."""
    if n_rows <= 0 or len(expected) <= 1:
        return expected, actual, len(expected)
    merged_e: list[float] = []
    merged_a: list[float] = []
    acc_e = acc_a = 0.0
    for e, a in zip(expected, actual, strict=True):
        acc_e += e
        acc_a += a
        if acc_e * n_rows >= min_rows:
            merged_e.append(acc_e)
            merged_a.append(acc_a)
            acc_e = acc_a = 0.0
    if acc_e or acc_a:  # the tail joins the last full bin
        if merged_e:
            merged_e[-1] += acc_e
            merged_a[-1] += acc_a
        else:
            merged_e.append(acc_e)
            merged_a.append(acc_a)
    return np.asarray(merged_e), np.asarray(merged_a), len(merged_e)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: the drift module's one implementation (``PSI_EPSILON`` floor)."""
    return drift_stats.psi(expected, actual, PSI_EPSILON)


def categorical_psi(expected: Mapping[str, float], values: pd.Series) -> float:
    """PSI over the union of baseline and golden categories."""
    total = values.notna().sum()
    observed = {k: v / total for k, v in category_counts(values).items()} if total else {}
    return drift_stats.categorical_psi(expected, observed, PSI_EPSILON)


def build_profile(frame: pd.DataFrame, bins: int = 10) -> dict[str, Any]:
    """Training baseline profile: the same function training uses (``shipway.drift.profile``), so
    the gate's tests build baselines exactly as training does."""
    return drift_profile.build_profile(frame, bins=bins)


def _feature_problems(
    name: str, spec: Mapping[str, Any], col: pd.Series, settings: GateSettings, stats: dict[str, Any]
) -> list[str]:
    problems: list[str] = []
    kind = spec.get("kind")
    golden_kind = "numeric" if _is_numeric(col) else "categorical"
    if kind != golden_kind:
        return [f"feature '{name}' is {kind} in the baseline but {golden_kind} in the golden data"]
    null_rate = float(col.isna().mean())
    base_null = float(spec.get("null_rate", 0.0))
    delta = abs(null_rate - base_null)
    stats["null_rate"], stats["baseline_null_rate"] = null_rate, base_null
    if delta > settings.max_null_rate_delta + _FLOAT_SLACK:
        problems.append(
            f"feature '{name}' null rate {_f(null_rate)} vs baseline {_f(base_null)} "
            f"(delta {_f(delta)} > allowed {_f(settings.max_null_rate_delta)})"
        )
    if kind == "numeric":
        lo, hi = spec.get("min"), spec.get("max")
        if lo is not None and hi is not None:
            margin = RANGE_TOLERANCE * (hi - lo)
            vals = col.dropna()
            outside = int(((vals < lo - margin) | (vals > hi + margin)).sum())
            stats["out_of_range"] = outside
            if outside:
                problems.append(
                    f"feature '{name}' has {outside} of {len(vals)} golden values outside the "
                    f"training range [{_f(lo)}, {_f(hi)}] (+{RANGE_TOLERANCE:.0%} margin)"
                )
        expected, actual, bins = coarsen_bins(np.asarray(spec["fractions"], dtype=float),
                                              numeric_fractions(col, spec["edges"]), int(col.notna().sum()))
        stats["bins"] = bins
        value = psi(expected, actual)
    else:
        value = categorical_psi(spec.get("fractions", {}), col)
    stats["psi"] = value
    if value > settings.max_psi + _FLOAT_SLACK:
        problems.append(f"feature '{name}' PSI {_f(value)} > allowed {_f(settings.max_psi)}")
    return problems


def consistency_gate(inputs: GateInputs) -> GateResult:
    """Golden data must look like the training data the baseline profile describes."""
    gate = "data-consistency"
    cand = inputs.candidate
    if inputs.baseline is None:
        return _failed(gate, f"version {cand.version} has no {BASELINE_ARTIFACT} artifact")
    if inputs.baseline.get("format") != PROFILE_FORMAT or not isinstance(
        inputs.baseline.get("features"), Mapping
    ):
        return _failed(
            gate,
            f"{BASELINE_ARTIFACT} of version {cand.version} is not a format-{PROFILE_FORMAT} "
            "profile with a 'features' mapping",
        )
    if inputs.golden is None:
        return _failed(gate, f"no golden dataset ({inputs.golden_source}); pass --golden PATH")
    golden = inputs.golden.drop(columns=[LABEL_COLUMN], errors="ignore")
    problems: list[str] = []
    per_feature: dict[str, Any] = {}
    for name, spec in inputs.baseline["features"].items():
        if name not in golden.columns:
            problems.append(f"feature '{name}' is in the baseline but missing from the golden data")
            continue
        stats: dict[str, Any] = {}
        problems.extend(_feature_problems(name, spec, golden[name], inputs.settings, stats))
        per_feature[name] = stats
    psis = [s["psi"] for s in per_feature.values() if "psi" in s]
    max_psi = max(psis, default=0.0)
    evidence = {"features": per_feature, "max_psi": max_psi, "allowed_psi": inputs.settings.max_psi}
    if problems:
        return _failed(gate, "; ".join(problems), problems=problems, **evidence)
    return _passed(
        gate,
        f"{len(per_feature)} features match the baseline (max PSI {_f(max_psi)} <= "
        f"allowed {_f(inputs.settings.max_psi)})",
        **evidence,
    )


# ------------------------------------------------------------------------- running


def nonfunctional_gate(inputs: GateInputs) -> GateResult:
    """The environment requires passing `shipway test load|resilience|security` evidence on the
    candidate version (tags written by those commands)."""
    from shipway.nonfunctional import missing_evidence

    gate, required = "non-functional", inputs.settings.require_nonfunctional
    problems = missing_evidence(inputs.candidate.tags, required)
    if problems:
        return _failed(gate, "; ".join(problems), required=list(required))
    return _passed(gate, f"{', '.join(required)} evidence passed on version {inputs.candidate.version}",
                   required=list(required))


def run_gates(inputs: GateInputs) -> GateReport:
    """Run every gate (never stopping early) and collect the report."""
    results: tuple[GateResult, ...] = (metric_gate(inputs), regression_gate(inputs), signature_gate(inputs),
                                       consistency_gate(inputs))
    if inputs.settings.require_nonfunctional:
        results += (nonfunctional_gate(inputs),)
    return GateReport(
        env=inputs.env, model=inputs.candidate.name, version=inputs.candidate.version, results=results
    )
