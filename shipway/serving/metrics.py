"""Prometheus metrics of the serving app.

The names and labels are a contract: the observability component generates alert rules
and dashboards from them, so they are the same on every target. Each app owns its
``CollectorRegistry`` (tests run several apps in one process). Label-bound children are
cached per model version because ``.labels()`` takes a lock and a dict lookup per call.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

# 0.5 ms .. 5 s: a 1-row sklearn prediction is ~0.1-1 ms, a 10k-row batch can take seconds.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ERROR_KINDS = ("bad_request", "unauthorized", "model_error", "internal")


def status_class(status: int) -> str:
    """HTTP status -> "2xx"/"4xx"/"5xx" label value."""
    return f"{status // 100}xx"


class ServingMetrics:
    """All metric families of one serving app, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process_metrics:
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
        self.drift_samples = Gauge(
            "shipway_drift_samples", "Rows in the current drift window.", ["model", "version"], registry=r)

    def render(self) -> bytes:
        """Prometheus text exposition of every family."""
        return generate_latest(self.registry)

    def series(self, model: str, version: str) -> ModelSeries:
        """Cached label-bound children for one model version."""
        return ModelSeries(self, model, version)


class ModelSeries:
    """Label-bound children for one (model, version); created lazily and kept."""

    def __init__(self, metrics: ServingMetrics, model: str, version: str):
        self.metrics = metrics
        self.model = model
        self.version = version
        self._duration: dict[str, object] = {}
        self._requests: dict[tuple[str, int], object] = {}
        self._errors: dict[str, object] = {}
        self._classes: dict[str, object] = {}
        self._value: object | None = None
        self.inflight = metrics.inflight.labels(model)

    def observe_request(self, route: str, status: int, seconds: float, error_kind: str | None) -> None:
        """Record one finished request."""
        duration = self._duration.get(route)
        if duration is None:
            duration = self._duration[route] = self.metrics.request_duration.labels(
                self.model, self.version, route)
        duration.observe(seconds)  # type: ignore[attr-defined]
        key = (route, status // 100)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.metrics.requests.labels(
                self.model, self.version, route, status_class(status))
        counter.inc()  # type: ignore[attr-defined]
        if error_kind is not None:
            err = self._errors.get(error_kind)
            if err is None:
                err = self._errors[error_kind] = self.metrics.errors.labels(
                    self.model, self.version, error_kind)
            err.inc()  # type: ignore[attr-defined]

    def observe_class(self, label: str, count: int = 1) -> None:
        """Count predictions of one class."""
        child = self._classes.get(label)
        if child is None:
            child = self._classes[label] = self.metrics.predictions.labels(self.model, self.version, label)
        child.inc(count)  # type: ignore[attr-defined]

    def observe_value(self, value: float) -> None:
        """Record one regression output."""
        if self._value is None:
            self._value = self.metrics.prediction_value.labels(self.model, self.version)
        self._value.observe(value)  # type: ignore[attr-defined]

    def set_info(self, environment: str) -> None:
        """Mark this version as the one being served."""
        self.metrics.model_info.labels(self.model, self.version, environment).set(1)

    def retire(self, environment: str, features: list[str]) -> None:
        """Remove this version's state gauges (info, PSI, samples) after a swap."""
        for family, labels in (
            (self.metrics.model_info, (self.model, self.version, environment)),
            (self.metrics.drift_samples, (self.model, self.version)),
            *((self.metrics.feature_psi, (self.model, self.version, f)) for f in features),
        ):
            with contextlib.suppress(KeyError):  # never set, e.g. no baseline profile
                family.remove(*labels)

    def set_drift(self, psi_by_feature: dict[str, float], samples: float) -> None:
        """Publish the latest PSI values and window size."""
        for feature, value in psi_by_feature.items():
            self.metrics.feature_psi.labels(self.model, self.version, feature).set(value)
        self.metrics.drift_samples.labels(self.model, self.version).set(samples)
