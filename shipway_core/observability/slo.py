"""The one SLO definition every target's alerting is generated from.

An SLO here is a ratio of *good* events over all events on the prediction route, an objective
(the fraction that must be good over 30 days) and therefore an error budget ``1 - objective``.
Alerts fire on the *burn rate* -- how many times faster than "exactly exhausted in 30 days" the
budget is being spent -- over a long window (significance) and a short window (it is still
happening; this also debounces, so burn-rate alerts carry no ``for``). The windows and factors are
the SRE Workbook's ("Alerting on SLOs", multiwindow, multi-burn-rate):

========  =====  ===========  ============  ========  =========================
severity  burn   long window  short window  budget    spent when it fires
========  =====  ===========  ============  ========  =========================
page      14.4   1h           5m            2%        in 1 hour
page      6      6h           30m           5%        in 6 hours
ticket    3      1d           2h            10%       in 1 day
ticket    1      3d           6h            10%       in 3 days
========  =====  ===========  ============  ========  =========================

One alert per SLO and severity: the page alert is ``(14.4x tier) or (6x tier)``, so one incident
pages once under one name. Prometheus (local, Kubernetes, Amazon Managed Prometheus, Azure
managed Prometheus) and CloudWatch (``cloudwatch.py``) are generated from these same objects.

SLIs (metric contract with ``shipway/serving/metrics.py``; only ``route="/invocations"`` counts,
so health probes, ``/metrics`` scrapes and unknown routes -- ``route="other"`` -- never do):

* availability: bad = ``shipway_requests_total{status_class="5xx"}``; total = every request.
  Client errors (4xx) are *good* events: the service answered correctly and a caller's bad input
  must not spend our budget.
* latency: good = ``shipway_request_duration_seconds_bucket{le="<threshold>"}``; total =
  ``shipway_request_duration_seconds_count``. The threshold must be a bucket boundary
  (``LATENCY_BUCKETS_MS``), which the config enforces.

Low traffic: a tier fires only when its *long* window holds at least ``slo.minRequests``
/invocations requests (default 100; 0 turns the guard off). Three requests an hour with one failure
is a 33% bad ratio -- far over every threshold -- but not evidence of an incident, and must not page
anyone. Every target applies the same guard to the same window (Prometheus: a recorded request count
``and``-ed into the tier; CloudWatch: ``IF(total >= N, ratio, 0)`` in the long-window alarm; Azure:
the same condition in the KQL). The cost: a model serving fewer than ``minRequests`` per hour cannot
page through the 1-hour tier -- it pages through the 6-hour tier once 6 hours hold enough requests,
or tickets later. docs/slos.md ("Low traffic") says how to choose the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipway_core.config import SloSettings

PREDICTION_ROUTE = "/invocations"
SLO_PERIOD_DAYS = 30
SEVERITIES = ("page", "ticket")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"^([0-9]+)([smhd])$")


@dataclass(frozen=True)
class BurnWindow:
    """One tier: fire when the bad ratio over both windows exceeds ``burn_rate x budget``."""

    burn_rate: float
    long_window: str
    short_window: str
    severity: str


BURN_WINDOWS = (
    BurnWindow(14.4, "1h", "5m", "page"),
    BurnWindow(6.0, "6h", "30m", "page"),
    BurnWindow(3.0, "1d", "2h", "ticket"),
    BurnWindow(1.0, "3d", "6h", "ticket"),
)
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True)
class Slo:
    """One SLO: what a bad event is, the objective, and the names its rules use."""

    name: str  # availability | latency
    objective: float
    alert: str  # one alert name; the severity label tells page from ticket
    bad_event: str  # human wording for docs and annotations
    record_metric: str  # recorded bad ratio: model:<record_metric>:ratio_rate<window>
    latency_le: str | None = None  # the histogram bucket label of the threshold (latency only)
    min_requests: int = 0  # low-traffic guard: requests the long window must hold for a tier to fire

    @property
    def latency_ms(self) -> float | None:
        """The latency threshold in milliseconds (latency only)."""
        return None if self.latency_le is None else float(self.latency_le) * 1000.0

    @property
    def budget(self) -> float:
        return 1.0 - self.objective

    def record(self, window: str) -> str:
        """Name of the recorded bad-event ratio over ``window`` (level:metric:operations)."""
        return f"model:{self.record_metric}:ratio_rate{window}"

    def requests_record(self, window: str) -> str:
        """Name of the recorded count of the SLO's events (all /invocations requests) over ``window``."""
        return f"model:shipway_{self.name}_sli_requests:increase{window}"


def le_label(threshold_ms: float) -> str:
    """The ``le`` label value prometheus_client writes for a boundary of ``threshold_ms`` (Go float)."""
    return repr(float(threshold_ms) / 1000.0)


def slos(settings: SloSettings) -> tuple[Slo, ...]:
    """The stack's SLOs: availability and latency, each with its own objective and budget."""
    objectives = (("slo.availability", settings.availability), ("slo.latencyObjective", settings.latency_objective))
    for key, value in objectives:
        if not 0 < value < 1:
            raise ValueError(f"{key}: {value!r} is not valid; use a fraction between 0 and 1 (e.g. 0.995)")
    guard = settings.min_requests
    if isinstance(guard, bool) or not isinstance(guard, int) or guard < 0:
        raise ValueError(f"slo.minRequests: {guard!r} is not valid; use a whole number of requests "
                         "(0 turns the low-traffic guard off)")
    return (
        Slo("availability", settings.availability, "ShipwayAvailabilityBudgetBurn",
            "a 5xx response", "shipway_request_errors", min_requests=guard),
        Slo("latency", settings.latency_objective, "ShipwayLatencyBudgetBurn",
            f"a response slower than {settings.latency_p99_ms:g} ms", "shipway_request_slow",
            latency_le=le_label(settings.latency_p99_ms), min_requests=guard),
    )


def long_windows() -> tuple[str, ...]:
    """The long windows of every tier (where the low-traffic guard counts requests)."""
    return tuple(dict.fromkeys(w.long_window for w in BURN_WINDOWS))


def window_seconds(window: str) -> int:
    """``1h`` -> 3600; only the single-unit windows used here are accepted."""
    match = _WINDOW.match(window)
    if match is None:
        raise ValueError(f"window: {window!r} is not valid; use a number and one of s, m, h, d (e.g. 5m)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def burn_threshold(burn_rate: float, budget: float) -> tuple[str, float]:
    """Comparison and bad-ratio threshold of a tier.

    ``burn x budget`` can exceed 1 for loose objectives (14.4 x 10% = 1.44); a ratio never does,
    so the threshold is capped at 1 and compared with ``>=`` (every event bad).
    """
    threshold = burn_rate * budget
    return (">=", 1.0) if threshold >= 1.0 else (">", threshold)


def tiers(severity: str) -> tuple[BurnWindow, ...]:
    """The burn windows whose alerts carry ``severity``."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity: {severity!r} is not valid; allowed: {', '.join(SEVERITIES)}")
    return tuple(w for w in BURN_WINDOWS if w.severity == severity)


def budget_spent(window: BurnWindow) -> float:
    """Fraction of the 30-day budget spent when a tier fires (burn x long window / period)."""
    return window.burn_rate * window_seconds(window.long_window) / (SLO_PERIOD_DAYS * 86400)
