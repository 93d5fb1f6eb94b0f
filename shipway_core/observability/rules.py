"""SLOs as code: Prometheus recording and alerting rules generated from a stack's SloSettings.

Why generated: the SLO target lives in the stack file (``shipway:slo``); hand-written thresholds
drift away from it. Here every threshold is computed from the target, so raising availability
from 99.5% to 99.9% in ``stacks/Pulumi.prod.yaml`` tightens the burn-rate alerts on the next
``pulumi up`` without anyone editing PromQL.

Availability uses multi-window, multi-burn-rate alerts (Google SRE workbook, "Alerting on SLOs"):
an alert fires when the error ratio over a long window *and* a short window both exceed
``burn_rate x (1 - availability)``. The long window gives significance, the short one makes the
alert reset quickly once the problem is fixed. Defaults follow the workbook for a 30-day SLO:

=====================  =====  ===========  ============  ========
alert                  burn   long window  short window  severity
=====================  =====  ===========  ============  ========
ErrorBudgetFastBurn    14.4   1h           5m            page      (2% of budget in 1h)
ErrorBudgetMediumBurn  6      6h           30m           page      (5% of budget in 6h)
ErrorBudgetSlowBurn    1      3d           6h            ticket    (10% of budget in 3d)
=====================  =====  ===========  ============  ========

Metric contract: the serving app's metrics (``shipway_requests_total`` etc., scraped by job
``shipway-endpoints``), ``shipway_model_quality`` from ``shipway monitor quality``, and
``shipway_model_trained_timestamp_seconds`` (training-data freshness; the serving app exports it
from the model version's ``trained_at`` tag -- until it does, the freshness alert stays silent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipway_core.config import SloSettings
from shipway_core.names import is_model_name

JOB = "shipway-endpoints"
ERROR_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
LATENCY_QUANTILES = {"p50": 0.5, "p99": 0.99}
LATENCY_WINDOW = "5m"
# Only prediction routes count toward the SLO: health probes and /metrics scrapes are not user
# traffic and would dilute the error ratio (the serving app predicts on /invocations).
DEFAULT_PREDICTION_ROUTES = "/invocations"
SEVERITIES = ("page", "ticket")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def error_ratio_record(window: str) -> str:
    """Name of the recorded 5xx ratio over ``window`` (level:metric:operations convention)."""
    return f"model:shipway_request_errors:ratio_rate{window}"


def latency_record(quantile: str, window: str = LATENCY_WINDOW) -> str:
    """Name of the recorded latency quantile (``p50``/``p99``) in seconds."""
    return f"model:shipway_request_duration_seconds:{quantile}_rate{window}"


@dataclass(frozen=True)
class BurnRateAlert:
    """One multi-window burn-rate alert."""

    name: str
    burn_rate: float
    long_window: str
    short_window: str
    severity: str


BURN_RATE_ALERTS = (
    BurnRateAlert("ShipwayErrorBudgetFastBurn", 14.4, "1h", "5m", "page"),
    BurnRateAlert("ShipwayErrorBudgetMediumBurn", 6.0, "6h", "30m", "page"),
    BurnRateAlert("ShipwayErrorBudgetSlowBurn", 1.0, "3d", "6h", "ticket"),
)


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
    """``for:`` durations. Drift is short by default so a real check on the local stack sees it fire;
    paging burn-rate alerts are short because their short window already debounces."""

    fast_burn: str = "2m"
    medium_burn: str = "5m"
    slow_burn: str = "30m"
    latency: str = "10m"
    prediction_errors: str = "10m"
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
    prediction_routes: str = DEFAULT_PREDICTION_ROUTES
    drift_min_samples: int = 500
    quality_min_samples: int = 100
    quality: tuple[QualityObjective, ...] = (QualityObjective("accuracy", minimum=0.8),)
    burn_rates: tuple[BurnRateAlert, ...] = BURN_RATE_ALERTS
    timings: AlertTimings = field(default_factory=AlertTimings)


ALERT_NAMES = (
    *(b.name for b in BURN_RATE_ALERTS),
    "ShipwayLatencyP99High",
    "ShipwayPredictionErrorsHigh",
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


def recording_rules(models: Sequence[str], options: RuleOptions) -> list[dict[str, Any]]:
    """Error ratios per window and latency quantiles per model."""
    route = f'route=~"{options.prediction_routes}"'
    all_req = _selector(models, options.job, route)
    errors = _selector(models, options.job, f'{route},status_class="5xx"')
    rules: list[dict[str, Any]] = []
    for w in ERROR_WINDOWS:
        total = f"sum by (model) (rate(shipway_requests_total{all_req}[{w}]))"
        # `or ... * 0` keeps a 0 ratio (instead of no series) while there are no 5xx at all.
        bad = f"sum by (model) (rate(shipway_requests_total{errors}[{w}]))"
        rules.append({"record": error_ratio_record(w), "expr": f"({bad} or {total} * 0)\n/\n{total}"})
    buckets = f"sum by (model, le) (rate(shipway_request_duration_seconds_bucket{all_req}[{LATENCY_WINDOW}]))"
    for name, q in LATENCY_QUANTILES.items():
        rules.append({"record": latency_record(name), "expr": f"histogram_quantile({q}, {buckets})"})
    return rules


def _alert(
    name: str,
    expr: str,
    duration: str,
    severity: str,
    environment: str,
    options: RuleOptions,
    summary: str,
    description: str,
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    if severity not in SEVERITIES:
        raise ValueError(f"severity: {severity!r} is not valid; allowed: {', '.join(SEVERITIES)}")
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity, "environment": environment, **(extra_labels or {})},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{options.runbook_base_url.rstrip('/')}/{name}.md",
        },
    }


def burn_threshold(burn_rate: float, availability: float) -> tuple[str, float]:
    """Comparison and threshold for a burn rate against this SLO target.

    ``burn x budget`` can exceed 1 for loose targets (14.4 x 10% = 1.44); an error ratio can never
    do that, so the threshold is capped at 1 and compared with ``>=`` (all requests failing).
    """
    threshold = burn_rate * (1.0 - availability)
    return (">=", 1.0) if threshold >= 1.0 else (">", threshold)


def burn_rate_alerts(slo: SloSettings, environment: str, options: RuleOptions) -> list[dict[str, Any]]:
    """The multi-window, multi-burn-rate availability alerts."""
    durations = {
        "ShipwayErrorBudgetFastBurn": options.timings.fast_burn,
        "ShipwayErrorBudgetMediumBurn": options.timings.medium_burn,
        "ShipwayErrorBudgetSlowBurn": options.timings.slow_burn,
    }
    alerts = []
    for b in options.burn_rates:
        op, threshold = burn_threshold(b.burn_rate, slo.availability)
        expr = (
            f"{error_ratio_record(b.long_window)} {op} {_num(threshold)}\n"
            f"and\n{error_ratio_record(b.short_window)} {op} {_num(threshold)}"
        )
        alerts.append(
            _alert(
                b.name,
                expr,
                durations.get(b.name, options.timings.slow_burn),
                b.severity,
                environment,
                options,
                summary=f"{{{{ $labels.model }}}} is burning its error budget {_num(b.burn_rate)}x too fast",
                description=(
                    f"5xx ratio of {{{{ $labels.model }}}} over {b.long_window} is "
                    f'{{{{ $value | printf "%.4f" }}}} (threshold {_num(threshold)} = {_num(b.burn_rate)}x '
                    f"the {_num(1 - slo.availability)} error budget of the {_num(slo.availability)} "
                    f"availability SLO), confirmed over {b.short_window}."
                ),
                extra_labels={
                    "slo": "availability",
                    "long_window": b.long_window,
                    "short_window": b.short_window,
                },
            )
        )
    return alerts


def service_alerts(
    slo: SloSettings, models: Sequence[str], environment: str, options: RuleOptions
) -> list[dict[str, Any]]:
    """Latency SLO, prediction errors by kind and scrape health."""
    latency_s = slo.latency_p99_ms / 1000.0
    route = f'route=~"{options.prediction_routes}"'
    return [
        _alert(
            "ShipwayLatencyP99High",
            f"{latency_record('p99')} > {_num(latency_s)}",
            options.timings.latency,
            "page",
            environment,
            options,
            summary="{{ $labels.model }} p99 latency is above the SLO",
            description=(
                'p99 latency of {{ $labels.model }} is {{ $value | printf "%.3f" }}s over 5m; '
                f"the SLO is {_num(slo.latency_p99_ms)}ms."
            ),
            extra_labels={"slo": "latency"},
        ),
        _alert(
            "ShipwayPredictionErrorsHigh",
            f"sum by (model, kind) (rate(shipway_errors_total{_selector(models, options.job)}[10m]))\n"
            f"/ on (model) group_left\n"
            f"sum by (model) (rate(shipway_requests_total{_selector(models, options.job, route)}[10m]))\n"
            f"> {_num(slo.max_error_rate)}",
            options.timings.prediction_errors,
            "ticket",
            environment,
            options,
            summary="{{ $labels.model }} fails too many predictions with {{ $labels.kind }} errors",
            description=(
                '{{ $labels.kind }} errors are {{ $value | printf "%.4f" }} of requests to '
                f"{{{{ $labels.model }}}} over 10m; the limit is {_num(slo.max_error_rate)}."
            ),
        ),
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
        ),
    ]


def ml_alerts(slo: SloSettings, models: Sequence[str], environment: str, options: RuleOptions) -> list[dict[str, Any]]:
    """Feature drift, model quality from late labels, training-data freshness."""
    sel = _selector(models, options.job)
    any_sel = _models_matcher(models)
    alerts = [
        _alert(
            "ShipwayFeatureDrift",
            f"max by (model, version, feature) (shipway_feature_psi{sel}) > {_num(slo.drift_psi)}\n"
            f"and on (model, version)\n"
            f"max by (model, version) (shipway_drift_samples{sel}) >= {options.drift_min_samples}",
            options.timings.drift,
            "ticket",
            environment,
            options,
            summary="Input feature {{ $labels.feature }} of {{ $labels.model }} v{{ $labels.version }} has drifted",
            description=(
                "PSI of {{ $labels.feature }} against the training baseline is "
                '{{ $value | printf "%.3f" }} (threshold '
                f"{_num(slo.drift_psi)}, at least "
                f"{options.drift_min_samples} live samples)."
            ),
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
            {"name": f"shipway-{environment}-recording", "rules": recording_rules(models, options)},
            {
                "name": f"shipway-{environment}-slo-alerts",
                "rules": burn_rate_alerts(slo, environment, options)
                + service_alerts(slo, models, environment, options),
            },
            {
                "name": f"shipway-{environment}-ml-alerts",
                "rules": ml_alerts(slo, models, environment, options),
            },
        ]
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
