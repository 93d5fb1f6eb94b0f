"""The drift alert's decision, defined once for every target.

A feature has drifted when one of its live effect sizes is above the stack's threshold for
that statistic (``slo.driftWasserstein`` / ``driftJensenShannon`` / ``driftNullRate``) and the
window holds at least ``MIN_SAMPLES`` rows: the batch report's measures, never a p-value or PSI,
which grow with the sample and flag noise at production volume. The Prometheus rule
(``rules.py``), the CloudWatch rollback alarms (``components/aws``) and the Azure log alerts
(``components/azure``) all read the thresholds and the guard from here.

Where no Prometheus scrapes the serving app (SageMaker, Azure ML online endpoints), the app
writes one JSON log line per drift refresh,
``{"event": "drift_effects", "max_wasserstein": ..., "max_jensen_shannon": ...,
"max_null_rate": ..., "samples": ..., "model_name": ..., "model_version": ...}``: per statistic the
largest effect over the model's features (0 while the window is empty). The cloud alerts read
those fields; ``LOG_FIELDS`` names them.
"""

from __future__ import annotations

from collections.abc import Mapping

from shipway_core.config import SloSettings

# The statistics of the gauge shipway_feature_drift_effect{statistic=...}, in a fixed order.
STATISTICS = ("wasserstein", "jensen_shannon", "null_rate")
# Fewer rows than this in the live window: distances are noise, no drift alert fires.
MIN_SAMPLES = 500

LOG_EVENT = "drift_effects"
LOG_SAMPLES_FIELD = "samples"
LOG_EFFECT_FIELDS = {statistic: f"max_{statistic}" for statistic in STATISTICS}
LOG_FIELDS = ("event", *LOG_EFFECT_FIELDS.values(), LOG_SAMPLES_FIELD, "model_name", "model_version")

# What each statistic measures, for alert descriptions (units of the threshold).
MEANING = {
    "wasserstein": "normalised Wasserstein distance (training standard deviations)",
    "jensen_shannon": "Jensen-Shannon distance of the category shares",
    "null_rate": "change of the null rate (fraction of rows)",
}


def effect_thresholds(slo: SloSettings) -> dict[str, float]:
    """The stack's threshold per statistic (``slo.drift*``), in ``STATISTICS`` order."""
    return {
        "wasserstein": float(slo.drift_wasserstein),
        "jensen_shannon": float(slo.drift_jensen_shannon),
        "null_rate": float(slo.drift_null_rate),
    }


DEFAULT_THRESHOLDS = effect_thresholds(SloSettings())


def log_fields(effects: Mapping[str, Mapping[str, float]], samples: float) -> dict[str, float]:
    """The effect and sample fields of a ``drift_effects`` log line from the live effects
    (statistic -> feature -> value, NaN while there is nothing to compare): the largest value per
    statistic, 0 when no feature has one."""
    out: dict[str, float] = {}
    for statistic, field in LOG_EFFECT_FIELDS.items():
        values = [v for v in (effects.get(statistic) or {}).values() if v == v]
        out[field] = round(max(values), 6) if values else 0.0
    out[LOG_SAMPLES_FIELD] = round(float(samples), 1)
    return out


def firing(effects_by_statistic: Mapping[str, float], samples: float,
           thresholds: Mapping[str, float], min_samples: int = MIN_SAMPLES) -> list[str]:
    """The statistics whose effect is above its threshold, or none below ``min_samples``: the
    decision every target's drift alert encodes."""
    if samples < min_samples:
        return []
    return [s for s in STATISTICS if effects_by_statistic.get(s, 0.0) > thresholds[s]]


def _with_statistic(selector: str, statistic: str) -> str:
    """``{a="b"}`` -> ``{a="b",statistic="s"}`` (an empty selector gets just the statistic)."""
    inner = selector.strip()[1:-1] if selector.strip() else ""
    return "{" + ",".join(p for p in (inner, f'statistic="{statistic}"') if p) + "}"


def _num(value: float) -> str:
    return f"{value:.6g}"


def effect_above_threshold_promql(slo: SloSettings, selector: str) -> str:
    """PromQL for the alert's per-statistic condition: each live effect above the stack's threshold,
    by model, version, feature and statistic."""
    parts = [f"max by (model, version, feature, statistic) (shipway_feature_drift_effect"
             f"{_with_statistic(selector, s)}) > {_num(t)}" for s, t in effect_thresholds(slo).items()]
    return "(\n" + "\nor\n".join(parts) + "\n)"


def effect_ratio_promql(slo: SloSettings, selector: str, by: str = "model, version, feature") -> str:
    """Each live effect divided by its threshold, by ``by`` and statistic: one chart for all three
    statistics, where 1 is the alert's line (dashboards draw this, so they show what pages)."""
    parts = [f"max by ({by}, statistic) (shipway_feature_drift_effect{_with_statistic(selector, s)}) / {_num(t)}"
             for s, t in effect_thresholds(slo).items()]
    return "(" + " or ".join(parts) + ")"


def drifted_features_promql(slo: SloSettings, selector: str = "", min_samples: int = MIN_SAMPLES) -> str:
    """How many (model, version, feature) the drift alert's condition holds for right now (effect above
    threshold and at least ``min_samples`` rows in the window), 0 when none."""
    samples = f"shipway_drift_samples{selector}" if selector else "shipway_drift_samples"
    return (f"count(max by (model, version, feature) ({effect_ratio_promql(slo, selector)} > 1) "
            f"and on (model, version) max by (model, version) ({samples}) >= {min_samples}) or vector(0)")
