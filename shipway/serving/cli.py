"""Command line of the serving process: ``python -m shipway.serving --pin-file PIN.json ...``.

Secrets never go on the command line: the API key is read from ``--api-key-file``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from shipway.serving.config import PinError, ServingConfig
from shipway.serving.logsink import utc_now_iso


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate so tests can check the contract)."""
    p = argparse.ArgumentParser(
        prog="python -m shipway.serving",
        description="Serve one pinned MLflow model version with metrics, tracing and hot swap.",
        epilog="example: python -m shipway.serving --pin-file pin.json --host 127.0.0.1 --port 8101 "
               "--api-key-file key.txt --environment local",
    )
    p.add_argument("--pin-file", required=True, help="JSON {model_name, model_version, tracking_uri}")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--api-key-file", help="file (0600) holding the API key required on /invocations")
    p.add_argument("--otlp-endpoint", help="OTLP/HTTP collector base URL; traces are exported only if set")
    p.add_argument("--request-log", help="append one JSON line of inputs+predictions per request here")
    p.add_argument("--environment", default="local", help="environment name for metrics and /version")
    p.add_argument("--max-rows", type=int, default=10_000, help="largest batch accepted (default 10000)")
    p.add_argument("--threadpool-rows", type=int, default=512,
                   help="batches above this many rows are predicted off the event loop")
    p.add_argument("--drift-refresh-requests", type=int, default=100)
    p.add_argument("--drift-refresh-seconds", type=float, default=5.0)
    p.add_argument("--drift-window", type=int, default=10_000)
    p.add_argument("--drain-seconds", type=float, default=10.0)
    p.add_argument("--body-timeout-seconds", type=float, default=15.0,
                   help="408 and close the connection when a body has not arrived after this long")
    p.add_argument("--header-timeout-seconds", type=float, default=10.0,
                   help="close a connection whose request headers are not complete after this long")
    p.add_argument("--mlflow-version-route", action="store_true",
                   help="/version answers MLflow's version string, as `mlflow models serve` does "
                        "(model info stays at /model-info)")
    p.add_argument("--no-metrics", action="store_true",
                   help="no Prometheus metrics (/metrics answers 404); for measuring their cost")
    p.add_argument("--no-access-log", action="store_true",
                   help="no per-request JSON log line (lifecycle events are still logged)")
    p.add_argument("--explain", action="store_true",
                   help="serve POST /explain (per-feature attributions); off by default")
    p.add_argument("--explain-max-evaluations", type=int, default=4096,
                   help="cost bound: model rows one /explain request may evaluate (default 4096)")
    return p


def config_from_args(argv: Sequence[str] | None = None) -> ServingConfig:
    """Parse argv into a ServingConfig (argparse exits 2 on bad arguments)."""
    a = build_parser().parse_args(argv)
    return ServingConfig(
        pin_file=a.pin_file, host=a.host, port=a.port, api_key_file=a.api_key_file,
        otlp_endpoint=a.otlp_endpoint, request_log=a.request_log, environment=a.environment,
        max_rows=a.max_rows, threadpool_rows=a.threadpool_rows,
        drift_refresh_requests=a.drift_refresh_requests, drift_refresh_seconds=a.drift_refresh_seconds,
        drift_window=a.drift_window, drain_seconds=a.drain_seconds,
        body_timeout_seconds=a.body_timeout_seconds, header_timeout_seconds=a.header_timeout_seconds,
        mlflow_version_route=a.mlflow_version_route,
        metrics=not a.no_metrics, access_log=not a.no_access_log,
        explain=a.explain, explain_max_evaluations=a.explain_max_evaluations,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for a bad pin file, key file or setting)."""
    try:
        config = config_from_args(argv)
        from shipway.serving.server import run

        return run(config)
    except (PinError, ValueError, OSError) as exc:
        line = {"ts": utc_now_iso(), "level": "error", "event": "startup_failed", "error": str(exc)}
        sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
        sys.stdout.buffer.flush()
        return 2
