"""Traffic scenarios every target's SLO alerting must agree on (promtool for PromQL, the metric-math
evaluator for CloudWatch).

A scenario is per-minute traffic on one model: segments of (minutes, requests/min, bad/min) on
``/invocations`` ("bad" = 5xx for availability, slower than the threshold for latency), optional
noise on other routes, one evaluation minute and the severities that must be firing then. The
objectives are the defaults (99.5% availability, 99% of requests under 250 ms), so the budgets are
0.5% and 1%; the comments give the burn rate each scenario produces.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 1440


@dataclass(frozen=True)
class Scenario:
    name: str
    slo: str  # availability | latency
    segments: tuple[tuple[int, float, float], ...]
    eval_minute: int
    expected: frozenset[str]  # severities firing at eval_minute
    noise_routes: tuple[str, ...] = ()  # 5xx at 1000/min on these routes, never /invocations
    client_errors_per_min: float = 0.0  # 4xx on /invocations: good events

    @property
    def minutes(self) -> int:
        return sum(m for m, _, _ in self.segments)

    def per_minute(self) -> list[tuple[float, float]]:
        """(requests, bad) for each minute 1..minutes."""
        return [(r, b) for m, r, b in self.segments for _ in range(m)]


def _flapping(minutes: int, on: int, off: int, rate: float, bad: float) -> tuple[tuple[int, float, float], ...]:
    segs: list[tuple[int, float, float]] = []
    while sum(m for m, _, _ in segs) < minutes:
        segs += [(on, rate, bad), (off, rate, 0.0)]
    return tuple(segs)


HEALTHY_DAY = ((DAY, 100.0, 0.0),)
LOW_TRAFFIC = ((19, 0.0, 0.0), (1, 1.0, 0.0)) * 5 + ((19, 0.0, 0.0), (1, 1.0, 1.0))
SCENARIOS = (
    # 100% errors for 3 minutes (a deploy blip): 1h ratio 5% < 14.4x = 7.2%, 2h 2.5% but 1d 0.2%
    Scenario("short burst does not page", "availability", HEALTHY_DAY + ((3, 100.0, 100.0), (20, 100.0, 0.0)),
             DAY + 4, frozenset()),
    # 2% errors (4x) for 30h: spends 10% of the budget a day -> ticket (3x tier), never a page (6x)
    Scenario("sustained small excess tickets, does not page", "availability", ((1800, 100.0, 2.0),),
             1800, frozenset({"ticket"})),
    # 20% errors (40x) for 30 minutes after a healthy day: one page (ticket tiers are not yet over)
    Scenario("fast burn pages once", "availability", HEALTHY_DAY + ((30, 100.0, 20.0),),
             DAY + 30, frozenset({"page"})),
    # all requests fail 5 minutes out of 10 for 2 hours (50% = 100x): the 5m window dips every
    # 10 minutes, a `for:` timer would reset; without `for` it pages during every bad phase (and
    # after 2 hours it has spent 3.7% of a day's requests: the 3x ticket tier is over too)
    Scenario("flapping burn pages", "availability", HEALTHY_DAY + _flapping(120, 5, 5, 100.0, 100.0),
             DAY + 114, frozenset({"page", "ticket"})),
    # scanners hitting unknown paths (route="other", 404 -> counted as 5xx here on purpose) and a
    # failing health probe: only /invocations counts
    Scenario("unknown-route and health-route errors do not count", "availability", ((120, 100.0, 0.0),),
             120, frozenset(), noise_routes=("other", "/health")),
    # half of the /invocations requests are 4xx (bad input): client errors are good events
    Scenario("client errors do not count", "availability", ((120, 100.0, 0.0),), 120, frozenset(),
             client_errors_per_min=100.0),
    Scenario("no traffic does not alert", "availability", ((120, 0.0, 0.0),), 120, frozenset()),
    Scenario("no traffic does not alert", "latency", ((120, 0.0, 0.0),), 120, frozenset()),
    # 2% slow requests (2x the 1% budget) for an hour: 0.3% of the month's budget, no page, no ticket
    Scenario("slow latency regression does not page", "latency", HEALTHY_DAY + ((60, 100.0, 2.0),),
             DAY + 60, frozenset()),
    # every request slow 5 minutes out of 10 for 2 hours (50x): the old p99 `for: 10m` alert never fired
    Scenario("intermittent latency burn pages", "latency", HEALTHY_DAY + _flapping(120, 5, 5, 100.0, 100.0),
             DAY + 114, frozenset({"page", "ticket"})),
    # 5% slow (5x) for 30h: ticket, not page
    Scenario("sustained latency excess tickets, does not page", "latency", ((1800, 100.0, 5.0),),
             1800, frozenset({"ticket"})),
    # one request every 20 minutes, the last one failing: 1 of 3 in the last hour (33%) is over every
    # threshold, but 3 requests are not evidence -- the low-traffic guard (100 requests in the long
    # window) keeps it from paging or ticketing
    Scenario("a handful of requests does not alert", "availability", LOW_TRAFFIC, 120, frozenset()),
    Scenario("a handful of requests does not alert", "latency", LOW_TRAFFIC, 120, frozenset()),
    # 2 requests a minute (120 an hour: over the guard), half failing for an hour: it pages
    Scenario("low but sufficient traffic still pages", "availability", ((DAY, 2.0, 0.0), (60, 2.0, 1.0)),
             DAY + 60, frozenset({"page", "ticket"})),
)


def recording_first(doc: dict[str, object]) -> list[str]:
    """promtool's ``group_eval_order`` for a generated rule file: the groups in file order, which puts
    the recording group before the alert groups that read it.

    Without it promtool evaluates the groups of one timestamp in map order, so an alert sometimes
    reads the recording rule's value from the minute before: a scenario whose bad event lands on the
    evaluation minute then passes or fails by chance (CI failed on exactly that). Real Prometheus
    runs groups independently, so in production an alert may lag its recording rule by one
    evaluation interval; these tests judge the thresholds, not that lag.
    """
    groups = doc["groups"]
    assert isinstance(groups, list)
    records = [str(g["name"]) for g in groups if any("record" in r for r in g["rules"])]
    return records + [str(g["name"]) for g in groups if str(g["name"]) not in records]
