"""The SLOs of ``slo.py`` as CloudWatch alarms over SageMaker endpoint metrics (AWS).

CloudWatch has no range functions, so each window of each tier is its own metric-math alarm whose
metrics use ``Period = window`` (one evaluation period; CloudWatch allows up to 7 days) and whose
expression is the bad-event ratio; a composite alarm per SLO and severity combines them exactly as
the PromQL alert does: ``(long AND short) OR (long AND short)``. Only the composite alarms notify.

SLIs from ``AWS/SageMaker`` (dimensions ``EndpointName``, ``VariantName``), which only count
``/invocations`` -- health checks (``/ping``) and other routes never reach these metrics:

* availability: ``Invocation5XXErrors`` / ``Invocations`` (Sum); 4xx are not in the numerator.
* latency: ``1 - PR(:threshold) / 100`` of ``ModelLatency`` (microseconds) -- the percentile rank
  is the share of requests at or under the threshold.

No traffic gives no datapoint (0/0 and PR of nothing are missing); ``TreatMissingData`` is
``notBreaching``, matching Prometheus where NaN compares false.

Low-traffic guard (``slo.py``): the long-window alarm of each tier is
``IF(total >= minRequests, ratio, 0)`` over ``Invocations``, the same requests the PromQL guard
counts, so fewer requests than that in the long window never breach.

``evaluate`` is a small evaluator of exactly these definitions (trailing windows, the generated
expression text and composite rule), so tests run the shared traffic scenarios against them.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipway_core.config import SloSettings
from shipway_core.observability.slo import SEVERITIES, Slo, burn_threshold, slos, tiers, window_seconds

NAMESPACE = "AWS/SageMaker"
COMPARISONS = {">": "GreaterThanThreshold", ">=": "GreaterThanOrEqualToThreshold"}


@dataclass(frozen=True)
class WindowAlarm:
    """One (SLO, tier, window) metric-math alarm: the bad ratio over ``window`` against a tier threshold."""

    name: str
    slo: str
    window: str
    burn_rate: float
    threshold: float
    comparison: str  # CloudWatch ComparisonOperator
    expression: str  # over the ids in ``metrics``
    metrics: tuple[dict[str, Any], ...]  # PutMetricAlarm MetricDataQuery structures (without the expression)

    @property
    def period(self) -> int:
        return window_seconds(self.window)


@dataclass(frozen=True)
class CompositeAlarm:
    """One per SLO and severity, like the Prometheus alert; the rule references WindowAlarm names."""

    name: str
    slo: str
    severity: str
    rule: str


def _stat(query_id: str, metric: str, stat: str, period: int, dims: Mapping[str, str]) -> dict[str, Any]:
    return {
        "Id": query_id,
        "ReturnData": False,
        "MetricStat": {
            "Metric": {
                "Namespace": NAMESPACE,
                "MetricName": metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
            },
            "Period": period,
            "Stat": stat,
        },
    }


def _queries(
    slo: Slo, threshold_us: int, period: int, dims: Mapping[str, str], guarded: bool
) -> tuple[tuple[dict, ...], str]:
    """Queries and expression of one window alarm; ``guarded`` (long windows) adds the low-traffic guard:
    ``IF(total >= minRequests, ratio, 0)``, so a handful of requests never breaches."""
    total = _stat("total", "Invocations", "Sum", period, dims)
    if slo.latency_le is None:
        queries: tuple[dict, ...] = (_stat("bad", "Invocation5XXErrors", "Sum", period, dims), total)
        ratio = "bad / total"
    else:
        queries = (_stat("fast", "ModelLatency", f"PR(:{threshold_us})", period, dims),)
        ratio = "1 - fast / 100"
    if not (guarded and slo.min_requests):
        return queries, ratio
    if slo.latency_le is not None:
        queries += (total,)
    return queries, f"IF(total >= {slo.min_requests}, {ratio}, 0)"


def alarms(
    settings: SloSettings, endpoint_name: str, variant: str = "AllTraffic"
) -> tuple[list[WindowAlarm], list[CompositeAlarm]]:
    """Window alarms and composite alarms of every SLO for one endpoint."""
    if not endpoint_name:
        raise ValueError("endpoint_name: '' is not valid; pass the SageMaker endpoint's name")
    dims = {"EndpointName": endpoint_name, "VariantName": variant}
    threshold_us = round(settings.latency_p99_ms * 1000)  # ModelLatency is in microseconds
    windows: list[WindowAlarm] = []
    composites: list[CompositeAlarm] = []
    for slo in slos(settings):
        for severity in SEVERITIES:
            terms = []
            for tier in tiers(severity):
                op, threshold = burn_threshold(tier.burn_rate, slo.budget)
                pair = []
                for window in (tier.long_window, tier.short_window):
                    metrics, expression = _queries(slo, threshold_us, window_seconds(window), dims,
                                                   guarded=window == tier.long_window)
                    name = f"{endpoint_name}-{slo.name}-{_num(tier.burn_rate)}x-{window}"
                    windows.append(WindowAlarm(name, slo.name, window, tier.burn_rate, threshold,
                                               COMPARISONS[op], expression, metrics))
                    pair.append(f'ALARM("{name}")')
                terms.append(f"({' AND '.join(pair)})")
            composites.append(CompositeAlarm(f"{endpoint_name}-{slo.name}-{severity}", slo.name, severity,
                                             " OR ".join(terms)))
    return windows, composites


def _num(value: float) -> str:
    return f"{value:g}"


# --- evaluator -----------------------------------------------------------------------------------

_BINOPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}


_COMPARE: dict[type, Callable[[float, float], bool]] = {
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
}


def eval_expression(expression: str, values: Mapping[str, float | None]) -> float | None:
    """Value of a metric-math expression (+ - * / and comparisons over ids and numbers, and
    ``IF(condition, true, false)``); None = no datapoint."""

    def walk(node: ast.AST) -> float | None:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "IF"
                and len(node.args) == 3 and not node.keywords):
            condition = walk(node.args[0])
            if condition is None:
                return None
            return walk(node.args[1] if condition != 0 else node.args[2])
        if (isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE):
            left, right = walk(node.left), walk(node.comparators[0])
            if left is None or right is None:
                return None
            return 1.0 if _COMPARE[type(node.ops[0])](left, right) else 0.0
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise ValueError(f"expression: {expression!r} reads {node.id!r}, which no query defines")
            return values[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = walk(node.left), walk(node.right)
            if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
                return None  # CloudWatch drops the datapoint
            return _BINOPS[type(node.op)](left, right)
        raise ValueError(f"expression: {expression!r} is not valid here; only + - * /, comparisons and IF() "
                         "over ids and numbers")

    return walk(ast.parse(expression, mode="eval"))


Traffic = Sequence[tuple[float, float]]  # per minute: (requests, bad)


def _stat_value(stat: str, window: Traffic) -> float | None:
    total = sum(r for r, _ in window)
    bad = sum(b for _, b in window)
    if stat == "Sum:Invocations":
        return total
    if stat == "Sum:Invocation5XXErrors":
        return bad
    if stat.startswith("PR("):
        return None if total == 0 else 100.0 * (total - bad) / total
    raise ValueError(f"stat: {stat!r} is not one the evaluator knows")


def alarm_state(alarm: WindowAlarm, traffic: Traffic, minute: int) -> bool:
    """Is the alarm in ALARM at the end of ``minute`` (1-based) given per-minute traffic?"""
    window = traffic[max(0, minute - alarm.period // 60):minute]
    values: dict[str, float | None] = {}
    for query in alarm.metrics:
        stat = query["MetricStat"]
        key = stat["Stat"] if stat["Stat"].startswith("PR(") else f"{stat['Stat']}:{stat['Metric']['MetricName']}"
        values[query["Id"]] = _stat_value(key, window)
    value = eval_expression(alarm.expression, values)
    if value is None:
        return False  # TreatMissingData = notBreaching
    if alarm.comparison == COMPARISONS[">="]:
        return value >= alarm.threshold
    return value > alarm.threshold


_ALARM_REF = re.compile(r'ALARM\("([^"]+)"\)')


def composite_state(composite: CompositeAlarm, states: Mapping[str, bool]) -> bool:
    """Evaluate ``(ALARM("a") AND ALARM("b")) OR ...`` with the window alarms' states."""
    text = _ALARM_REF.sub(lambda m: str(states[m.group(1)]), composite.rule)
    text = text.replace(" AND ", " and ").replace(" OR ", " or ")
    if not re.fullmatch(r"[()\sTrueFalsandor]*", text):
        raise ValueError(f"rule: {composite.rule!r} is not valid here; only ALARM(), AND, OR and parentheses")
    return bool(eval(text, {"__builtins__": {}}))  # noqa: S307 - restricted to True/False/and/or/()


def evaluate(settings: SloSettings, slo_name: str, traffic: Traffic, minute: int) -> set[str]:
    """Severities of ``slo_name`` whose composite alarm is in ALARM at ``minute``."""
    windows, composites = alarms(settings, "endpoint")
    states = {w.name: alarm_state(w, traffic, minute) for w in windows if w.slo == slo_name}
    return {c.severity for c in composites if c.slo == slo_name and composite_state(c, states)}
