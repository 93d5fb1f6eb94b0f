"""Prometheus metrics of the serving app.

The names and labels are a contract: the observability component generates alert rules
and dashboards from them, so they are the same on every target. Each app owns its
``CollectorRegistry`` (tests run several apps in one process). Label-bound children are
cached per model version because ``.labels()`` takes a lock and a dict lookup per call.

Per-request observations (request counts and durations, errors, predicted classes,
in-flight count) are not written into the prometheus_client children on the request
path: each ``inc``/``observe`` there takes a mutex and a histogram walks its buckets,
~10 µs per request in all. They are tallied in plain dicts and ints on the event loop
thread instead, and folded into the children when the registry is collected (a scrape,
or ``get_sample_value``), by a collector registered ahead of every metric family. The
exposition is identical; it is just computed at scrape time.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from shipway_core.config import LATENCY_BUCKETS_MS

# 0.5 ms .. 10 s: a 1-row sklearn prediction is ~0.1-1 ms, a 10k-row batch can take seconds. The latency
# SLI counts requests in the bucket whose le is the stack's threshold, so every threshold the config
# accepts (LATENCY_BUCKETS_MS) is a boundary here.
DRIFT_STATISTICS = ("wasserstein", "jensen_shannon", "null_rate")
"""The ``statistic`` label values of ``shipway_feature_drift_effect`` (the batch report's measures)."""
DURATION_BUCKETS = tuple(ms / 1000 for ms in LATENCY_BUCKETS_MS)
ERROR_KINDS = ("bad_request", "unauthorized", "model_error", "internal")


def status_class(status: int) -> str:
    """HTTP status -> "2xx"/"4xx"/"5xx" label value."""
    return f"{status // 100}xx"


class ServingMetrics:
    """All metric families of one serving app, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True,
                 enabled: bool = True):
        self.enabled = enabled
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._all_series: list[ModelSeries] = []
        self._inflight_counts: dict[str, InflightCount] = {}
        r.register(_FlushFirst(self))
        if process_metrics and enabled:
            ProcessCollector(registry=r)
            GCCollector(registry=r)
        self.request_duration = Histogram(
            "shipway_request_duration_seconds", "Request latency by route.",
            ["model", "version", "route"], buckets=DURATION_BUCKETS, registry=r)
        self.requests = Counter(
            "shipway_requests_total", "Requests by route and status class.",
            ["model", "version", "route", "status_class"], registry=r)
        self.errors = Counter(
            "shipway_errors_total", "Failed requests by kind.", ["model", "version", "kind"], registry=r)
        self.predictions = Counter(
            "shipway_predictions_total", "Predicted classes (classifiers).",
            ["model", "version", "class"], registry=r)
        self.prediction_value = Histogram(
            "shipway_prediction_value", "Predicted values (regressors).", ["model", "version"], registry=r)
        self.model_info = Gauge(
            "shipway_model_info", "1 for the model version being served.",
            ["model", "version", "environment"], registry=r)
        self.inflight = Gauge(
            "shipway_inflight_requests", "Invocations being processed.", ["model"], registry=r)
        self.feature_psi = Gauge(
            "shipway_feature_psi", "Population Stability Index of a feature against the training baseline.",
            ["model", "version", "feature"], registry=r)
        self.feature_drift_effect = Gauge(
            "shipway_feature_drift_effect",
            "Live drift effect size of a feature against the training baseline: statistic=wasserstein "
            "(normalised Wasserstein distance, in reference standard deviations), jensen_shannon "
            "(categorical share distance) or null_rate (absolute change of the null rate).",
            ["model", "version", "feature", "statistic"], registry=r)
        self.drift_samples = Gauge(
            "shipway_drift_samples", "Rows in the current drift window.", ["model", "version"], registry=r)

    def render(self) -> bytes:
        """Prometheus text exposition of every family (pending tallies folded in first)."""
        return generate_latest(self.registry)

    def series(self, model: str, version: str) -> ModelSeries:
        """Cached label-bound children for one model version (no-ops when metrics are off)."""
        if not self.enabled:
            return NullSeries(self, model, version)
        series = ModelSeries(self, model, version)
        self._all_series.append(series)
        return series

    def inflight_count(self, model: str) -> InflightCount:
        """The in-flight counter of ``model``, shared by all its versions (the gauge has no version label)."""
        count = self._inflight_counts.get(model)
        if count is None:
            count = self._inflight_counts[model] = InflightCount(self.inflight.labels(model))
        return count

    def flush(self) -> None:
        """Fold every pending tally into the prometheus_client children (runs on collection)."""
        for series in self._all_series:
            series.flush()
        for count in self._inflight_counts.values():
            count.gauge.set(count.value)


class _FlushFirst:
    """Registered before the metric families so every collection sees up-to-date values."""

    def __init__(self, metrics: ServingMetrics):
        self._metrics = metrics

    def describe(self) -> list[Any]:
        """No metric of its own."""
        return []

    def collect(self) -> list[Any]:
        """Flush the pending tallies; yields no metric."""
        self._metrics.flush()
        return []


class InflightCount:
    """A plain in-flight counter (event loop only); the gauge is set from it on collection."""

    __slots__ = ("gauge", "value")

    def __init__(self, gauge: Any):
        self.gauge = gauge
        self.value = 0

    def inc(self) -> None:
        """One more request in flight."""
        self.value += 1

    def dec(self) -> None:
        """One request fewer in flight."""
        self.value -= 1


class ModelSeries:
    """Label-bound children for one (model, version), created lazily and kept, plus pending tallies."""

    def __init__(self, metrics: ServingMetrics, model: str, version: str):
        self.metrics = metrics
        self.model = model
        self.version = version
        self._duration: dict[str, Any] = {}
        self._requests: dict[tuple[str, int], Any] = {}
        self._errors: dict[str, Any] = {}
        self._classes: dict[str, Any] = {}
        self._value: Any = None
        self._bounds: list[float] = list(metrics.request_duration._upper_bounds)  # noqa: SLF001 - incl. +Inf
        # Pending tallies, folded into the children by flush(): all touched on the event loop only.
        self._pending_duration: dict[str, list[float]] = {}  # route -> [count per bucket..., sum]
        self._pending_requests: dict[tuple[str, int], int] = {}
        self._pending_errors: dict[str, int] = {}
        self._pending_classes: dict[str, int] = {}
        self.inflight = metrics.inflight_count(model)

    def observe_request(self, route: str, status: int, seconds: float, error_kind: str | None) -> None:
        """Record one finished request (tallied; see the module docstring)."""
        tally = self._pending_duration.get(route)
        if tally is None:
            tally = self._pending_duration[route] = [0] * len(self._bounds) + [0.0]
        tally[bisect_left(self._bounds, seconds)] += 1  # first bucket with seconds <= bound, as observe()
        tally[-1] += seconds
        key = (route, status // 100)
        pending = self._pending_requests
        pending[key] = pending.get(key, 0) + 1
        if error_kind is not None:
            self._pending_errors[error_kind] = self._pending_errors.get(error_kind, 0) + 1

    def observe_class(self, label: str, count: int = 1) -> None:
        """Count predictions of one class (tallied)."""
        self._pending_classes[label] = self._pending_classes.get(label, 0) + count

    def flush(self) -> None:
        """Fold the pending tallies into the prometheus_client children."""
        m = self.metrics
        durations, self._pending_duration = self._pending_duration, {}
        for route, tally in durations.items():
            child = self._duration.get(route)
            if child is None:
                child = self._duration[route] = m.request_duration.labels(self.model, self.version, route)
            child._sum.inc(tally[-1])  # noqa: SLF001 - Histogram.observe's own steps, batched
            for i, n in enumerate(tally[:-1]):
                if n:
                    child._buckets[i].inc(n)  # noqa: SLF001
        requests, self._pending_requests = self._pending_requests, {}
        for (route, klass), n in requests.items():
            child = self._requests.get((route, klass))
            if child is None:
                child = self._requests[(route, klass)] = m.requests.labels(
                    self.model, self.version, route, status_class(klass * 100))
            child.inc(n)
        errors, self._pending_errors = self._pending_errors, {}
        for kind, n in errors.items():
            child = self._errors.get(kind)
            if child is None:
                child = self._errors[kind] = m.errors.labels(self.model, self.version, kind)
            child.inc(n)
        classes, self._pending_classes = self._pending_classes, {}
        for label, n in classes.items():
            child = self._classes.get(label)
            if child is None:
                child = self._classes[label] = m.predictions.labels(self.model, self.version, label)
            child.inc(n)

    def observe_value(self, value: float) -> None:
        """Record one regression output."""
        if self._value is None:
            self._value = self.metrics.prediction_value.labels(self.model, self.version)
        self._value.observe(value)

    def set_info(self, environment: str) -> None:
        """Mark this version as the one being served."""
        self.metrics.model_info.labels(self.model, self.version, environment).set(1)

    def retire(self, environment: str, features: list[str]) -> None:
        """Remove this version's state gauges (info, PSI, samples) after a swap."""
        for family, labels in (
            (self.metrics.model_info, (self.model, self.version, environment)),
            (self.metrics.drift_samples, (self.model, self.version)),
            *((self.metrics.feature_psi, (self.model, self.version, f)) for f in features),
            *((self.metrics.feature_drift_effect, (self.model, self.version, f, stat))
              for f in features for stat in DRIFT_STATISTICS),
        ):
            with contextlib.suppress(KeyError):  # never set, e.g. no baseline profile
                family.remove(*labels)

    def set_drift(self, psi_by_feature: dict[str, float], samples: float,
                  effects: dict[str, dict[str, float]] | None = None) -> None:
        """Publish the latest PSI values, effect sizes (statistic -> feature -> value; NaN, i.e.
        nothing to compare yet, is published as 0) and window size."""
        for feature, value in psi_by_feature.items():
            self.metrics.feature_psi.labels(self.model, self.version, feature).set(value)
        for statistic, by_feature in (effects or {}).items():
            for feature, value in by_feature.items():
                self.metrics.feature_drift_effect.labels(self.model, self.version, feature, statistic).set(
                    0.0 if value != value else value)
        self.metrics.drift_samples.labels(self.model, self.version).set(samples)


class _NullChild:
    """Stands in for a label-bound gauge when metrics are off."""

    def inc(self, amount: float = 1) -> None:
        """Nothing to count."""

    def dec(self, amount: float = 1) -> None:
        """Nothing to count."""


class NullSeries(ModelSeries):
    """``--no-metrics``: the same interface as ModelSeries, recording nothing."""

    def __init__(self, metrics: ServingMetrics, model: str, version: str):
        self.metrics = metrics
        self.model = model
        self.version = version
        self.inflight = _NullChild()  # type: ignore[assignment]

    def flush(self) -> None:
        """Metrics are off."""

    def observe_request(self, route: str, status: int, seconds: float, error_kind: str | None) -> None:
        """Metrics are off."""

    def observe_class(self, label: str, count: int = 1) -> None:
        """Metrics are off."""

    def observe_value(self, value: float) -> None:
        """Metrics are off."""

    def set_info(self, environment: str) -> None:
        """Metrics are off."""

    def retire(self, environment: str, features: list[str]) -> None:
        """Metrics are off."""

    def set_drift(self, psi_by_feature: dict[str, float], samples: float,
                  effects: dict[str, dict[str, float]] | None = None) -> None:
        """Metrics are off."""
