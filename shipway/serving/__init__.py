"""Shipway's model serving app: one pinned MLflow model version behind a fast ASGI endpoint.

Run it with ``python -m shipway.serving --pin-file PIN.json ...`` (see ``cli``); embed or
test it with :class:`ServingApp`. Modules: ``schema`` (payload validation), ``model``
(registry loading), ``drift`` (PSI against the baseline profile), ``metrics``
(Prometheus contract), ``telemetry`` (OpenTelemetry), ``logsink`` (JSON lines),
``app`` (ASGI routes and hot swap), ``server`` (uvicorn and signals).
"""

from shipway.serving.app import ServingApp
from shipway.serving.config import Pin, ServingConfig, read_pin

__all__ = ["Pin", "ServingApp", "ServingConfig", "read_pin"]
