"""Serving process settings, the pin file and the API key file.

The pin file is the only thing that says which model version is served; it is re-read on
SIGHUP. The API key comes from a file (0600, written by the deployment) so it never
shows up in argv, ``ps`` or logs.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


class PinError(ValueError):
    """The pin file is missing or malformed; the message names the field."""


@dataclass(frozen=True)
class Pin:
    """One model pinned to an exact registry version, and where its registry is."""

    model_name: str
    model_version: int
    tracking_uri: str

    @property
    def model_uri(self) -> str:
        """The MLflow URI of the pinned version."""
        return f"models:/{self.model_name}/{self.model_version}"


def read_pin(path: str | Path) -> Pin:
    """Read and validate a pin file such as ``{"model_name": "iris", "model_version": 3, ...}``."""
    try:
        doc: Any = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise PinError(f"pin file {path} does not exist") from None
    except orjson.JSONDecodeError as exc:
        raise PinError(f"pin file {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PinError(f"pin file {path} must hold a JSON object")
    name = doc.get("model_name")
    version = doc.get("model_version")
    uri = doc.get("tracking_uri")
    if not isinstance(name, str) or not name:
        raise PinError(f"pin file {path}: model_name {name!r} must be a non-empty string")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PinError(f"pin file {path}: model_version {version!r} must be a positive integer "
                       f"(an exact registry version, not an alias)")
    if not isinstance(uri, str) or not uri:
        raise PinError(f"pin file {path}: tracking_uri {uri!r} must be a non-empty string")
    return Pin(model_name=name, model_version=version, tracking_uri=uri)


def read_api_key(path: str | Path) -> tuple[bytes, bool]:
    """Read the API key; returns (key, loose_permissions).

    Loose permissions (group/other readable) are reported rather than refused, because
    Kubernetes secret volumes default to 0644 and the container still needs to start;
    the caller logs a warning.
    """
    p = Path(path)
    key = p.read_bytes().strip()
    if not key:
        raise ValueError(f"API key file {path} is empty")
    loose = bool(stat.S_IMODE(os.stat(p).st_mode) & 0o077)
    return key, loose


@dataclass(frozen=True)
class ServingConfig:
    """Everything the serving app needs besides the model itself."""

    pin_file: str
    host: str = "127.0.0.1"
    port: int = 8080
    api_key_file: str | None = None
    otlp_endpoint: str | None = None
    request_log: str | None = None
    environment: str = "local"
    max_rows: int = 10_000
    max_body_bytes: int = 32 * 1024 * 1024
    # Batches above this many rows are predicted in a worker thread so the event loop keeps
    # answering probes; smaller ones run inline, a thread hand-off costs more than the predict.
    threadpool_rows: int = 512
    drift_refresh_requests: int = 100
    drift_refresh_seconds: float = 5.0
    drift_window: int = 10_000
    # Bound on waiting for in-flight requests: old model after a swap, all requests on SIGTERM.
    drain_seconds: float = 10.0
    # A body that has not fully arrived after this long gets 408 and its connection closed
    # (slowloris: Content-Length 100, 10 bytes sent, then silence).
    body_timeout_seconds: float = 15.0
    # A connection whose request line and headers are not complete after this long is closed
    # (also one that sends nothing at all).
    header_timeout_seconds: float = 10.0
    # /version answers MLflow's version string as `mlflow models serve` does (clients' readiness
    # helpers compare it) instead of Shipway's model info, which is always at /model-info.
    mlflow_version_route: bool = False
    # Off switches, for measuring the instrumentation's cost and for deployments scraping
    # nothing: without metrics /metrics answers 404; without the access log no per-request
    # line is written (lifecycle events still are).
    metrics: bool = True
    access_log: bool = True
    # Explainability hook (shipway/serving/explain.py): off by default; when on, /explain pays
    # at most explain_max_evaluations model rows per request.
    explain: bool = False
    explain_max_evaluations: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_rows", "max_body_bytes", "threadpool_rows", "drift_refresh_requests", "drift_window"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} {value!r} must be a positive integer")
        for name in ("body_timeout_seconds", "header_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} {getattr(self, name)!r} must be a positive number of seconds")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port!r} must be in 1..65535")
