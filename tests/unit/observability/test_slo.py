"""The one SLO definition: windows, budgets, and the histogram bucket the latency SLI reads."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest

from shipway.serving.metrics import DURATION_BUCKETS
from shipway_core.config import LATENCY_BUCKETS_MS, SloSettings
from shipway_core.observability.slo import BURN_WINDOWS, budget_spent, le_label, slos, tiers, window_seconds


def test_every_accepted_threshold_is_a_bucket_the_serving_app_exports_under_the_label_rules_select() -> None:
    registry = CollectorRegistry()
    Histogram("d_seconds", "d", buckets=DURATION_BUCKETS, registry=registry).observe(0.001)
    exposition = generate_latest(registry).decode()
    for ms in LATENCY_BUCKETS_MS:
        assert f'd_seconds_bucket{{le="{le_label(ms)}"}}' in exposition, ms


def test_tiers_follow_the_sre_workbook_and_state_the_budget_they_spend() -> None:
    def shape(severity: str) -> list[tuple[float, str, str]]:
        return [(w.burn_rate, w.long_window, w.short_window) for w in tiers(severity)]

    assert shape("page") == [(14.4, "1h", "5m"), (6, "6h", "30m")]
    assert shape("ticket") == [(3, "1d", "2h"), (1, "3d", "6h")]
    assert [round(budget_spent(w), 4) for w in BURN_WINDOWS] == [0.02, 0.05, 0.1, 0.1]
    with pytest.raises(ValueError, match="severity: 'urgent' is not valid; allowed: page, ticket"):
        tiers("urgent")


def test_each_slo_has_its_own_budget() -> None:
    availability, latency = slos(SloSettings(availability=0.999, latency_objective=0.95, latency_p99_ms=100))
    assert (availability.name, round(availability.budget, 6), availability.latency_le) == ("availability", 0.001, None)
    assert (latency.name, round(latency.budget, 6), latency.latency_le) == ("latency", 0.05, "0.1")
    assert latency.record("1h") == "model:shipway_request_slow:ratio_rate1h"


def test_bad_objective_and_window_are_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"slo.latencyObjective: 1.5 is not valid; use a fraction between 0 and 1"):
        slos(SloSettings(latency_objective=1.5))
    assert window_seconds("3d") == 259200
    with pytest.raises(ValueError, match="window: '1h30m' is not valid"):
        window_seconds("1h30m")
