"""The metric-name extractor the dashboard and rule contract checks rely on."""

from __future__ import annotations

import pytest

from shipway_core.observability.promql import base_metric, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (model) (rate(shipway_requests_total{job="x",status_class="5xx"}[5m]))',
            {"shipway_requests_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(shipway_request_duration_seconds_bucket[$__rate_interval])))",
            {"shipway_request_duration_seconds_bucket"},
        ),
        (
            "model:shipway_request_errors:ratio_rate1h > 0.072\nand\nmodel:shipway_request_errors:ratio_rate5m > 1e-3",
            {"model:shipway_request_errors:ratio_rate1h", "model:shipway_request_errors:ratio_rate5m"},
        ),
        ('a / on (model, kind) group_left (version) b{kind="by"} unless c offset 5m', {"a", "b", "c"}),
        ("count(max by (m) (x) > 0.2) or vector(0)", {"x"}),
        ('time() - y{l=~"a|b"}', {"y"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_base_metric_strips_only_histogram_suffixes() -> None:
    assert base_metric("shipway_request_duration_seconds_bucket") == "shipway_request_duration_seconds"
    assert base_metric("shipway_prediction_value_count") == "shipway_prediction_value"
    assert base_metric("shipway_requests_total") == "shipway_requests_total"
    assert base_metric("other_bucket") == "other_bucket"
