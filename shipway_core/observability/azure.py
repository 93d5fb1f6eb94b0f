"""The SLOs of ``slo.py`` on Azure Monitor, with or without managed Prometheus.

With managed Prometheus, Azure Monitor evaluates PromQL itself, so the Azure target runs the very
expressions the other targets run (``rules.generate_rules``); only the envelope differs: ISO 8601
``for``, a numeric severity (0 critical .. 4 verbose) and no ``for`` at all on burn-rate alerts.

Without it, the same SLOs become log search alerts (scheduled query rules) in KQL over the online
endpoint's traffic log (``AmlOnlineEndpointTrafficLog``, sent to Log Analytics by the endpoint's
diagnostic setting): one alert per SLO and severity, the same windows, burn-rate factors,
thresholds and low-traffic guard (``burn_log_alerts``). The traffic log holds only requests to the
scoring route (``/score``, routed to the container's ``/invocations``): liveness and readiness
probes never reach it. One documented difference: a log search alert reads at most 2 days back,
so the 1x ticket tier's 3-day long window is 2 days here (it fires on 6.7% of the month's budget
spent in 2 days instead of 10% in 3 days).

``run_query``/``evaluate`` are a small evaluator of exactly the KQL ``burn_query`` writes, so tests
run the shared traffic scenarios against the generated queries.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipway_core.config import SloSettings
from shipway_core.observability.slo import SEVERITIES, Slo, burn_threshold, slos, tiers, window_seconds

SEVERITY = {"page": 1, "ticket": 3}
_DURATION = re.compile(r"^([0-9]+)([smhd])$")


def iso_duration(duration: str) -> str:
    """``2m`` -> ``PT2M``, ``1d`` -> ``P1D`` (the single-unit durations the generator emits)."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"for: {duration!r} is not valid here; use one number and unit such as 5m")
    n, unit = match.groups()
    return f"P{n}D" if unit == "d" else f"PT{n}{unit.upper()}"


def azure_rules(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every rule of every group, in order (recording rules first, as generated), Azure-shaped."""
    out: list[dict[str, Any]] = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                out.append({"record": rule["record"], "expression": rule["expr"]})
                continue
            severity = rule["labels"]["severity"]
            if severity not in SEVERITY:
                raise ValueError(f"severity: {severity!r} is not valid; allowed: {', '.join(SEVERITY)}")
            converted = {
                "alert": rule["alert"],
                "expression": rule["expr"],
                "severity": SEVERITY[severity],
                "labels": dict(rule["labels"]),
                "annotations": dict(rule.get("annotations", {})),
            }
            if "for" in rule:
                converted["for"] = iso_duration(rule["for"])
            out.append(converted)
    return out


# --- burn-rate log alerts (Azure stacks without managed Prometheus) --------------------------------

TRAFFIC_TABLE = "AmlOnlineEndpointTrafficLog"
SCORING_PATH = "/score"  # the managed online endpoint's scoring route (the container's /invocations)
LOG_ALERT_MAX_WINDOW = "2d"  # a log search alert reads at most 2 days back (overrideQueryTimeRange)
_EVALUATION = {"page": "PT5M", "ticket": "PT15M"}


@dataclass(frozen=True)
class LogBurnAlert:
    """One scheduled-query (log search) alert per SLO and severity over the endpoint traffic log.

    The query computes every window's bad ratio and request count of the severity's tiers and a
    ``firing`` column (1 when any tier's long *and* short window exceed its threshold and the long
    window holds at least ``min_requests`` requests); the rule alerts when ``firing > 0``.
    """

    name: str
    slo: str
    severity: str
    azure_severity: int
    query: str
    lookback: str  # ISO 8601 overrideQueryTimeRange: the longest window the query reads
    evaluation_frequency: str  # ISO 8601; also the rule's windowSize (the query sets its own windows)
    tiers: tuple[tuple[float, str, str], ...]  # (burn rate, long window, short window) as evaluated

    measure: str = "firing"


def log_window(window: str) -> str:
    """The window a log alert can read: the tier's own, or the 2-day maximum for longer ones (3d)."""
    return window if window_seconds(window) <= window_seconds(LOG_ALERT_MAX_WINDOW) else LOG_ALERT_MAX_WINDOW


def _kql_num(value: float) -> str:
    return f"{value:.6g}"


def burn_query(slo: Slo, severity: str, endpoint_name: str) -> tuple[str, tuple[tuple[float, str, str], ...]]:
    """KQL of one SLO's alert at ``severity`` over the endpoint traffic log, and the tiers it evaluates.

    Same SLI as everywhere: bad = a 5xx (availability) or slower than the threshold (latency),
    events = every request on the scoring route; same tiers, thresholds and low-traffic guard.
    """
    if not endpoint_name or "'" in endpoint_name:
        raise ValueError(f"endpoint_name: {endpoint_name!r} is not valid; pass the online endpoint's name")
    evaluated = tuple((w.burn_rate, log_window(w.long_window), w.short_window) for w in tiers(severity))
    windows = sorted({win for _, long, short in evaluated for win in (long, short)}, key=window_seconds)
    bad = "ResponseCode >= 500" if slo.latency_ms is None else f"TotalDurationMs > {_kql_num(slo.latency_ms)}"
    counts = ",\n    ".join(
        f"requests_{w} = countif(TimeGenerated > ago({w})), bad_{w} = countif(TimeGenerated > ago({w}) and bad)"
        for w in windows
    )
    ratios = ",\n    ".join(
        f"ratio_{w} = iff(requests_{w} == 0, real(null), todouble(bad_{w}) / requests_{w})" for w in windows
    )
    terms = []
    for burn, long, short in evaluated:
        op, threshold = burn_threshold(burn, slo.budget)
        term = (f"coalesce(ratio_{long}, 0.0) {op} {_kql_num(threshold)} and "
                f"coalesce(ratio_{short}, 0.0) {op} {_kql_num(threshold)}")
        if slo.min_requests:
            term += f" and requests_{long} >= {slo.min_requests}"
        terms.append(f"({term})")
    query = (
        f"{TRAFFIC_TABLE}\n"
        f"| where TimeGenerated > ago({windows[-1]})\n"
        f"| where EndpointName == '{endpoint_name}' and Path == '{SCORING_PATH}'\n"
        f"| extend bad = {bad}\n"
        f"| summarize\n    {counts}\n"
        f"| extend\n    {ratios}\n"
        f"| extend firing = iff({' or '.join(terms)}, 1, 0)"
    )
    return query, evaluated


def burn_log_alerts(settings: SloSettings, model: str, endpoint_name: str) -> list[LogBurnAlert]:
    """The burn-rate alerts of every SLO for one endpoint, as log search alerts."""
    out = []
    for slo in slos(settings):
        for severity in SEVERITIES:
            query, evaluated = burn_query(slo, severity, endpoint_name)
            longest = max((long for _, long, _ in evaluated), key=window_seconds)
            out.append(LogBurnAlert(f"{model}-{slo.name}-{severity}", slo.name, severity, SEVERITY[severity],
                                    query, iso_duration(longest), _EVALUATION[severity], evaluated))
    return out


# --- evaluator -----------------------------------------------------------------------------------

Row = Mapping[str, Any]


def _kql_walk(node: ast.AST, env: Mapping[str, Any], text: str) -> Any:
    """Value of a KQL scalar expression of the subset ``burn_query`` writes (Python-compatible syntax:
    comparisons, and/or, + - * /, iff/coalesce/todouble/real(null)/ago); null is None."""

    def walk(n: ast.AST) -> Any:
        if isinstance(n, ast.Expression):
            return walk(n.body)
        if isinstance(n, ast.Constant):
            return n.value
        if isinstance(n, ast.Name):
            if n.id not in env:
                raise ValueError(f"query: {text!r} reads {n.id!r}, which is no column here")
            return env[n.id]
        if isinstance(n, ast.BoolOp):
            values = [walk(v) for v in n.values]
            truth = [bool(v) for v in values if v is not None]
            if isinstance(n.op, ast.And):
                return False if not all(truth) else (None if None in values else True)
            return True if any(truth) else (None if None in values else False)
        if isinstance(n, ast.Compare) and len(n.ops) == 1 and type(n.ops[0]) in _KQL_COMPARE:
            left, right = walk(n.left), walk(n.comparators[0])
            if left is None or right is None:
                return None
            return _KQL_COMPARE[type(n.ops[0])](left, right)
        if isinstance(n, ast.BinOp) and type(n.op) in _KQL_ARITH:
            left, right = walk(n.left), walk(n.right)
            if left is None or right is None:
                return None
            if isinstance(n.op, ast.Div) and right == 0:
                return math.nan if left == 0 else math.copysign(math.inf, left)  # real division
            return _KQL_ARITH[type(n.op)](left, right)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and not n.keywords:
            fn, args = n.func.id, n.args
            if fn == "iff" and len(args) == 3:
                return walk(args[1]) if walk(args[0]) is True else walk(args[2])
            if fn == "coalesce" and args:
                return next((v for v in (walk(a) for a in args) if v is not None), None)
            if fn == "todouble" and len(args) == 1:
                value = walk(args[0])
                return None if value is None else float(value)
            if fn == "real" and len(args) == 1 and isinstance(args[0], ast.Name) and args[0].id == "null":
                return None
            if fn == "ago" and len(args) == 1 and isinstance(args[0], ast.Name):
                return env["now"] - window_seconds(args[0].id.removeprefix("w"))
        raise ValueError(f"query: {text!r} is not valid here; the evaluator reads only what burn_query writes")

    return walk(node)


_KQL_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Eq: operator.eq,
}
_KQL_ARITH: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_AGO = re.compile(r"\bago\(([0-9]+[smhd])\)")


def _expr(text: str) -> ast.Expression:
    # `ago(1d)` is not Python; quote the timespan as a name (`ago(_1d)` would change the column names).
    return ast.parse(_AGO.sub(lambda m: f"ago(w{m.group(1)})", text), mode="eval")


def _assignments(text: str) -> list[tuple[str, str]]:
    """``a = expr, b = expr`` (top-level commas only) -> [(a, expr), ...]."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    out = []
    for part in parts:
        name, _, expr = part.strip().partition(" = ")
        if not name.isidentifier() or not expr:
            raise ValueError(f"query: {part.strip()!r} is not valid here; expected name = expression")
        out.append((name, expr))
    return out


def run_query(query: str, rows: Sequence[Row], now: float) -> list[dict[str, Any]]:
    """Run a ``burn_query`` over ``rows`` (columns as in the traffic log, TimeGenerated in seconds,
    optional ``_weight``: how many identical log records the row stands for) at time ``now``."""
    stages = [s.strip() for s in query.split("\n|")]
    if stages[0] != TRAFFIC_TABLE:
        raise ValueError(f"query: reads {stages[0]!r}; the evaluator knows only {TRAFFIC_TABLE}")
    table: list[dict[str, Any]] = [dict(r) for r in rows]
    for stage in stages[1:]:
        verb, rest = (re.split(r"\s+", stage, maxsplit=1) + [""])[:2]
        if verb == "where":
            tree = _expr(rest)
            table = [r for r in table if _kql_walk(tree, {**r, **_ago_env(now)}, rest) is True]
        elif verb == "extend":
            for name, text in _assignments(rest):
                tree = _expr(text)
                for r in table:
                    r[name] = _kql_walk(tree, {**r, **_ago_env(now)}, text)
        elif verb == "summarize":
            aggregates = []
            for name, text in _assignments(rest):
                match = re.fullmatch(r"countif\((.*)\)", text.strip(), re.S)
                if match is None:
                    raise ValueError(f"query: {text!r} is not valid here; the evaluator knows countif() only")
                aggregates.append((name, match.group(1), _expr(match.group(1))))
            # summarize without `by` returns one row, also over no input (counts 0)
            table = [{
                name: sum(r.get("_weight", 1) for r in table if _kql_walk(tree, {**r, **_ago_env(now)}, text) is True)
                for name, text, tree in aggregates
            }]
        else:
            raise ValueError(f"query: stage {verb!r} is not valid here; the evaluator knows where/extend/summarize")
    return table


def _ago_env(now: float) -> dict[str, Any]:
    return {"now": now}


Traffic = Sequence[tuple[float, float]]  # per minute: (requests, bad)


def traffic_rows(slo: Slo, traffic: Traffic, endpoint_name: str, *, client_errors_per_min: float = 0.0,
                 noise_paths: Sequence[str] = ()) -> list[dict[str, Any]]:
    """What the traffic log would hold for per-minute traffic (one weighted row per kind and minute)."""
    threshold = slo.latency_ms or 0.0
    rows: list[dict[str, Any]] = []
    for i, (requests, bad) in enumerate(traffic, start=1):
        t = i * 60 - 30  # mid-minute
        base = {"TimeGenerated": t, "EndpointName": endpoint_name, "Path": SCORING_PATH}
        good = {"ResponseCode": 200, "TotalDurationMs": threshold / 2}
        failed = ({"ResponseCode": 500, "TotalDurationMs": threshold / 2} if slo.latency_ms is None
                  else {"ResponseCode": 200, "TotalDurationMs": threshold + 1000})
        rows.append({**base, **good, "_weight": requests - bad})
        rows.append({**base, **failed, "_weight": bad})
        if client_errors_per_min:
            rows.append({**base, "ResponseCode": 400, "TotalDurationMs": threshold / 2,
                         "_weight": client_errors_per_min})
        for path in noise_paths:
            rows.append({**base, "Path": path, "ResponseCode": 500, "TotalDurationMs": threshold + 1000,
                         "_weight": 1000})
    return [r for r in rows if r["_weight"]]


def evaluate(settings: SloSettings, slo_name: str, traffic: Traffic, minute: int, *,
             client_errors_per_min: float = 0.0, noise_paths: Sequence[str] = ()) -> set[str]:
    """Severities of ``slo_name`` whose log alert fires at the end of ``minute`` (1-based)."""
    slo = next(s for s in slos(settings) if s.name == slo_name)
    rows = traffic_rows(slo, traffic[:minute], "endpoint", client_errors_per_min=client_errors_per_min,
                        noise_paths=noise_paths)
    fired = set()
    for alert in burn_log_alerts(settings, "model", "endpoint"):
        if alert.slo != slo_name:
            continue
        result = run_query(alert.query, rows, now=minute * 60)
        if any((r.get(alert.measure) or 0) > 0 for r in result):
            fired.add(alert.severity)
    return fired
