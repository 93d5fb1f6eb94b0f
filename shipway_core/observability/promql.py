"""Just enough PromQL lexing to list the metric names an expression reads.

Used to check that dashboards and alerts only query metrics the serving app actually exports
(or rules we record): a typo in a metric name is otherwise a panel that silently shows nothing.
"""

from __future__ import annotations

import re

from shipway_core.observability.delivery import DELIVERY_METRIC_NAMES

# Known serving metrics; histogram series carry the _bucket/_sum/_count suffixes.
SERVING_METRICS = frozenset(
    {
        "shipway_request_duration_seconds",
        "shipway_requests_total",
        "shipway_errors_total",
        "shipway_predictions_total",
        "shipway_prediction_value",
        "shipway_model_info",
        "shipway_inflight_requests",
        "shipway_feature_psi",
        "shipway_feature_drift_effect",
        "shipway_drift_samples",
    }
)
# Exported by shipway monitor quality / the delivery exporter / planned serving gauges / Prometheus.
EXTRA_METRICS = frozenset(
    {
        "shipway_model_quality",
        "shipway_model_quality_samples",
        "shipway_model_trained_timestamp_seconds",
        "up",
    }
) | DELIVERY_METRIC_NAMES
HISTOGRAMS = frozenset({"shipway_request_duration_seconds", "shipway_prediction_value"})

_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric (or recording-rule) names referenced by ``expr``.

    Strings, label matchers ``{...}``, range/subquery brackets ``[...]``, grouping label lists
    and function calls are removed first; what is left that looks like an identifier is a name.
    """
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def base_metric(name: str) -> str:
    """``foo_bucket`` -> ``foo`` for histograms; other names unchanged."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)]
    return name
