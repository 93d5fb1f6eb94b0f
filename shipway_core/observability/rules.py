"""SLOs as code: Prometheus recording and alerting rules generated from a stack's SloSettings.

Why generated: the SLO target lives in the stack file (``shipway:slo``); hand-written thresholds
drift away from it. Every threshold is computed from the objective, so raising availability from
99.5% to 99.9% in ``stacks/Pulumi.prod.yaml`` tightens the alerts on the next ``pulumi up``.

The SLOs, SLIs, windows and burn-rate factors are defined once in ``slo.py``; this module renders
them as PromQL (local Prometheus, Kubernetes PrometheusRule, Amazon Managed Prometheus, Azure
managed Prometheus), ``cloudwatch.py`` renders the same objects as CloudWatch metric math.

Metric contract: the serving app's metrics (``shipway_requests_total`` with ``route`` and
``status_class``, ``shipway_request_duration_seconds`` with ``route``, scraped by job
``shipway-endpoints``), ``shipway_model_quality`` from ``shipway monitor quality``, and
``shipway_model_trained_timestamp_seconds`` (training-data freshness; until the serving app
exports it the freshness alert stays silent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipway_core.config import SloSettings
from shipway_core.names import is_model_name
from shipway_core.observability import drift as drift_decision
from shipway_core.observability.links import Template, check_window, evidence_links
from shipway_core.observability.pipeline import pipeline_alerts
from shipway_core.observability.slo import (
    PREDICTION_ROUTE,
    SEVERITIES,
    WINDOWS,
    Slo,
    budget_spent,
    burn_threshold,
    long_windows,
    slos,
    tiers,
)

JOB = "shipway-endpoints"
LATENCY_QUANTILES = {"p50": 0.5, "p99": 0.99}  # recorded for dashboards only: no alert reads them
LATENCY_WINDOW = "5m"
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def error_ratio_record(window: str) -> str:
    """Name of the recorded availability bad ratio (5xx / all on /invocations) over ``window``."""
    return f"model:shipway_request_errors:ratio_rate{window}"


def latency_record(quantile: str, window: str = LATENCY_WINDOW) -> str:
    """Name of the recorded latency quantile (``p50``/``p99``) in seconds."""
    return f"model:shipway_request_duration_seconds:{quantile}_rate{window}"


@dataclass(frozen=True)
class QualityObjective:
    """A bound on ``shipway_model_quality{metric=...}``: ``minimum`` for accuracy-like metrics,
    ``maximum`` for error-like ones (MAE)."""

    metric: str
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if (self.minimum is None) == (self.maximum is None):
            raise ValueError(f"quality.{self.metric}: set exactly one of minimum or maximum")

    def comparison(self) -> tuple[str, str, float]:
        """Aggregation, comparison and bound of the alert: the worst series must break the bound."""
        if self.minimum is not None:
            return "min", "<", self.minimum
        assert self.maximum is not None  # __post_init__ guarantees exactly one bound
        return "max", ">", self.maximum


@dataclass(frozen=True)
class AlertTimings:
    """``for:`` durations of the non-SLO alerts. Burn-rate alerts have none: their short window
    debounces, and a ``for`` only delays the page. Drift is
    short by default so a real check on the local stack sees it fire."""

    endpoint_down: str = "2m"
    drift: str = "1m"
    quality: str = "15m"
    freshness: str = "10m"

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not _DURATION.match(value):
                raise ValueError(f"timings.{name}: {value!r} is not valid; use a Prometheus duration such as 5m")


@dataclass(frozen=True)
class RuleOptions:
    """Everything about the rules that is not an SLO target."""

    job: str = JOB
    runbook_base_url: str = "docs/runbooks"
    drift_min_samples: int = drift_decision.MIN_SAMPLES
    quality_min_samples: int = 100
    quality: tuple[QualityObjective, ...] = (QualityObjective("accuracy", minimum=0.8),)
    timings: AlertTimings = field(default_factory=AlertTimings)
    log_store_url: str | None = None
    """The environment's log store; when set, model alerts carry a ``logs_url`` annotation."""
    traces_url: str | None = None
    """The environment's Jaeger UI; when set, model alerts carry a ``traces_url`` annotation."""
    evidence_window: str = "1h"
    pipeline_jobs: tuple[str, ...] = ()
    """Scrape jobs of the platform's own processes; their health rules go in a ``-pipeline`` group."""
    """How far back the prepared log query and trace search look from when they are opened."""

    def __post_init__(self) -> None:
        check_window(self.evidence_window, "evidence_window")


ALERT_NAMES = (
    "ShipwayAvailabilityBudgetBurn",
    "ShipwayLatencyBudgetBurn",
    "ShipwayEndpointDown",
    "ShipwayFeatureDrift",
    "ShipwayModelQualityLow",
    "ShipwayModelStale",
)


def _num(value: float) -> str:
    """A threshold as PromQL literal: short, no float noise (0.072, not 0.07200000000000001)."""
    return f"{value:.6g}"


def _selector(models: Sequence[str], job: str, extra: str = "") -> str:
    parts = [f'job="{job}"']
    if models:
        parts.append(f'model=~"{"|".join(sorted(models))}"')
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


def _models_matcher(models: Sequence[str]) -> str:
    return f'{{model=~"{"|".join(sorted(models))}"}}' if models else ""


def validate_inputs(slo: SloSettings, models: Sequence[str], environment: str) -> None:
    """Reject settings that would produce rules which can never fire or never stop firing."""
    if not 0 < slo.availability < 1:
        raise ValueError(f"slo.availability: {slo.availability!r} is not valid; use a fraction between 0 and 1")
    if not environment:
        raise ValueError("environment: '' is not valid; name the stack's environment (e.g. dev)")
    for model in models:
        if not is_model_name(model):
            raise ValueError(f"models: {model!r} is not valid; model names are lowercase letters, digits and '-'")


def sli_ratio(slo: Slo, window: str, models: Sequence[str], job: str) -> str:
    """PromQL: bad events / all events of ``slo`` over ``window``, per model.

    No traffic gives 0/0 = NaN, which no comparison matches: an idle model neither pages nor
    counts as healthy (see docs/slos.md, "Low traffic").
    """
    route = f'route="{PREDICTION_ROUTE}"'
    if slo.latency_le is None:
        total = f"sum by (model) (rate(shipway_requests_total{_selector(models, job, route)}[{window}]))"
        errors = _selector(models, job, route + ',status_class="5xx"')
        bad = f"sum by (model) (rate(shipway_requests_total{errors}[{window}]))"
        # `or total * 0` keeps a 0 ratio (instead of no series) while there are no 5xx at all.
        return f"({bad} or {total} * 0)\n/\n{total}"
    count = f"sum by (model) (rate(shipway_request_duration_seconds_count{_selector(models, job, route)}[{window}]))"
    fast_sel = _selector(models, job, f'{route},le="{slo.latency_le}"')
    fast = f"sum by (model) (rate(shipway_request_duration_seconds_bucket{fast_sel}[{window}]))"
    return f"({count} - {fast})\n/\n{count}"


def sli_requests(slo: Slo, window: str, models: Sequence[str], job: str) -> str:
    """PromQL: the SLO's events (all /invocations requests) over ``window``, per model (low-traffic guard)."""
    route = f'route="{PREDICTION_ROUTE}"'
    metric = "shipway_requests_total" if slo.latency_le is None else "shipway_request_duration_seconds_count"
    return f"sum by (model) (increase({metric}{_selector(models, job, route)}[{window}]))"


def recording_rules(slo: SloSettings, models: Sequence[str], options: RuleOptions) -> list[dict[str, Any]]:
    """Bad-event ratios per SLO and window, and latency quantiles (dashboards) per model."""
    rules: list[dict[str, Any]] = [
        {"record": s.record(w), "expr": sli_ratio(s, w, models, options.job)} for s in slos(slo) for w in WINDOWS
    ]
    rules += [
        {"record": s.requests_record(w), "expr": sli_requests(s, w, models, options.job)}
        for s in slos(slo) if s.min_requests for w in long_windows()
    ]
    all_req = _selector(models, options.job, f'route="{PREDICTION_ROUTE}"')
    buckets = f"sum by (model, le) (rate(shipway_request_duration_seconds_bucket{all_req}[{LATENCY_WINDOW}]))"
    for name, q in LATENCY_QUANTILES.items():
        rules.append({"record": latency_record(name), "expr": f"histogram_quantile({q}, {buckets})"})
    return rules


def _alert(
    name: str,
    expr: str,
    duration: str | None,
    severity: str,
    environment: str,
    options: RuleOptions,
    summary: str,
    description: str,
    extra_labels: Mapping[str, str] | None = None,
    evidence: tuple[bool, bool] = (False, False),
) -> dict[str, Any]:
    """One alert rule; ``evidence`` = (has a model label, has a version label) adds the prepared
    log query and trace search for that model (and version) to its annotations."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity: {severity!r} is not valid; allowed: {', '.join(SEVERITIES)}")
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if duration is not None:
        rule["for"] = duration
    return rule | {
        "labels": {"severity": severity, "environment": environment, **(extra_labels or {})},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{options.runbook_base_url.rstrip('/')}/{name}.md",
            **(evidence_links(log_store_url=options.log_store_url, traces_url=options.traces_url,
                              model=Template("model"), version=Template("version") if evidence[1] else None,
                              window=options.evidence_window) if evidence[0] else {}),
        },
    }


def burn_expr(slo: Slo, severity: str) -> str:
    """PromQL of one SLO's alert at ``severity``: any of its tiers, each long *and* short window,
    and (low-traffic guard) at least ``min_requests`` requests in the long window."""
    parts = []
    for w in tiers(severity):
        op, threshold = burn_threshold(w.burn_rate, slo.budget)
        guard = f"\nand\n{slo.requests_record(w.long_window)} >= {slo.min_requests}" if slo.min_requests else ""
        parts.append(f"({slo.record(w.long_window)} {op} {_num(threshold)}\n"
                     f"and\n{slo.record(w.short_window)} {op} {_num(threshold)}{guard})")
    return "\nor\n".join(parts)


def _tier_text(slo: Slo, severity: str) -> str:
    return "; or ".join(
        f"{_num(w.burn_rate)}x over {w.long_window} and {w.short_window} "
        f"({_num(100 * budget_spent(w))}% of the 30-day budget gone in {w.long_window})"
        for w in tiers(severity)
    )


def burn_rate_alerts(slo: SloSettings, environment: str, options: RuleOptions) -> list[dict[str, Any]]:
    """One alert per SLO and severity, no ``for`` (the short window debounces)."""
    alerts = []
    for s in slos(slo):
        for severity in SEVERITIES:
            alerts.append(
                _alert(
                    s.alert,
                    burn_expr(s, severity),
                    None,
                    severity,
                    environment,
                    options,
                    summary=f"{{{{ $labels.model }}}} is burning its {s.name} error budget too fast ({severity})",
                    description=(
                        f"Share of /invocations requests that are {s.bad_event} is "
                        f'{{{{ $value | printf "%.4f" }}}} over the long window; the {s.name} SLO allows '
                        f"{_num(s.budget)} ({_num(s.objective)} objective). Fires on: {_tier_text(s, severity)}."
                    ),
                    extra_labels={"slo": s.name},
                    evidence=(True, False),
                )
            )
    return alerts


def service_alerts(environment: str, options: RuleOptions) -> list[dict[str, Any]]:
    """Scrape health (the SLOs cover errors and latency; a down target produces no requests)."""
    return [
        _alert(
            "ShipwayEndpointDown",
            f'up{{job="{options.job}"}} == 0',
            options.timings.endpoint_down,
            "page",
            environment,
            options,
            summary="Endpoint {{ $labels.instance }} is not answering scrapes",
            description=(
                "Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) "
                f"for {options.timings.endpoint_down}: the process is down or unreachable."
            ),
            evidence=(True, False),  # the scrape target carries its model label
        ),
    ]


def _drift_effect_expr(slo: SloSettings, sel: str) -> str:
    """Effect size above its threshold, per statistic (the batch report's decision measures: a
    p-value is no signal at serving volume); the ``statistic`` label says which one fired."""
    return drift_decision.effect_above_threshold_promql(slo, sel)


def ml_alerts(slo: SloSettings, models: Sequence[str], environment: str, options: RuleOptions) -> list[dict[str, Any]]:
    """Feature drift, model quality from late labels, training-data freshness."""
    sel = _selector(models, options.job)
    any_sel = _models_matcher(models)
    alerts = [
        _alert(
            "ShipwayFeatureDrift",
            _drift_effect_expr(slo, sel)
            + f"\nand on (model, version)\n"
            f"max by (model, version) (shipway_drift_samples{sel}) >= {options.drift_min_samples}",
            options.timings.drift,
            "ticket",
            environment,
            options,
            summary="Input feature {{ $labels.feature }} of {{ $labels.model }} v{{ $labels.version }} has drifted",
            description=(
                "The live {{ $labels.statistic }} effect size of {{ $labels.feature }} against the training "
                'baseline is {{ $value | printf "%.3f" }} (thresholds: normalised Wasserstein '
                f"{_num(slo.drift_wasserstein)} sd, Jensen-Shannon {_num(slo.drift_jensen_shannon)}, "
                f"null-rate change {_num(slo.drift_null_rate)}; at least "
                f"{options.drift_min_samples} live samples)."
            ),
            evidence=(True, True),
        )
    ]
    for q in options.quality:
        metric_sel = f'{{metric="{q.metric}"{"," + any_sel[1:-1] if any_sel else ""}}}'
        agg, op, bound = q.comparison()
        alerts.append(
            _alert(
                "ShipwayModelQualityLow",
                f"{agg} by (model, version, metric) (shipway_model_quality{metric_sel}) {op} {_num(bound)}\n"
                f"and on (model, version)\n"
                f"max by (model, version) (shipway_model_quality_samples{any_sel})"
                f" >= {options.quality_min_samples}",
                options.timings.quality,
                "ticket",
                environment,
                options,
                summary="{{ $labels.model }} v{{ $labels.version }} {{ $labels.metric }} is out of bounds",
                description=(
                    'Rolling {{ $labels.metric }} from late labels is {{ $value | printf "%.3f" }}; '
                    f"the objective is {'at least' if q.minimum is not None else 'at most'} {_num(bound)}."
                ),
                evidence=(True, True),
            )
        )
    alerts.append(
        _alert(
            "ShipwayModelStale",
            f"(time() - max by (model, version) (shipway_model_trained_timestamp_seconds{any_sel})) / 3600\n"
            f"> {_num(slo.freshness_hours)}",
            options.timings.freshness,
            "ticket",
            environment,
            options,
            summary="{{ $labels.model }} v{{ $labels.version }} was trained on stale data",
            description=(
                '{{ $labels.model }} v{{ $labels.version }} was trained {{ $value | printf "%.1f" }}h ago; '
                f"the freshness objective is {_num(slo.freshness_hours)}h. Retrain and promote."
            ),
            evidence=(True, True),
        )
    )
    return alerts


def generate_rules(
    slo: SloSettings, models: Sequence[str], environment: str, options: RuleOptions | None = None
) -> dict[str, Any]:
    """The Prometheus rule file (as a dict) for one environment's endpoints."""
    options = options or RuleOptions()
    validate_inputs(slo, models, environment)
    return {
        "groups": [
            {"name": f"shipway-{environment}-recording", "rules": recording_rules(slo, models, options)},
            {
                "name": f"shipway-{environment}-slo-alerts",
                "rules": burn_rate_alerts(slo, environment, options)
                + service_alerts(environment, options),
            },
            {
                "name": f"shipway-{environment}-ml-alerts",
                "rules": ml_alerts(slo, models, environment, options),
            },
        ]
        + ([{"name": f"shipway-{environment}-pipeline",
             "rules": pipeline_alerts(options.pipeline_jobs, environment,
                                      runbook_base_url=options.runbook_base_url)}]
           if options.pipeline_jobs else [])
    }


def alert_names(rules: Mapping[str, Any]) -> list[str]:
    """Distinct alert names in a rule file, in order of appearance."""
    seen: dict[str, None] = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                seen.setdefault(rule["alert"], None)
    return list(seen)


def recorded_names(rules: Mapping[str, Any]) -> list[str]:
    """Names of the recording rules in a rule file."""
    return [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]


def render_yaml(document: Mapping[str, Any]) -> str:
    """YAML text of a rule file; multi-line expressions become literal blocks for readability."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import LiteralScalarString

    def convert(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, str) and "\n" in value:
            return LiteralScalarString(value)
        return value

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(convert(document), out)
    return out.getvalue()
