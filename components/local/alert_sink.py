"""The local stack's alert receiver: Alertmanager's webhook, recorded to a JSON-lines file.

Run by path (standard library only): ``python alert_sink.py --port P --out alerts.jsonl``.
Alertmanager POSTs its webhook payload (version 4) to ``/alerts``; each alert in it becomes
one line (received time, status, name, labels, annotations, start/end) in ``--out`` (0600),
which `shipway alerts` lists. ``GET /health`` answers 200 for the provider's health check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 1 << 20  # Alertmanager batches stay far below 1 MiB; anything bigger is not ours


def alert_lines(payload: dict[str, Any], received_at: str) -> list[dict[str, Any]]:
    """One record per alert of an Alertmanager webhook payload."""
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise ValueError("alerts: missing or not a list; expected Alertmanager's webhook payload (version 4)")
    out = []
    for alert in alerts:
        if not isinstance(alert, dict):
            raise ValueError("alerts[]: an alert is not an object")
        labels = alert.get("labels") or {}
        out.append({"received_at": received_at, "status": alert.get("status") or payload.get("status"),
                    "alertname": labels.get("alertname"), "labels": labels,
                    "annotations": alert.get("annotations") or {}, "starts_at": alert.get("startsAt"),
                    "ends_at": alert.get("endsAt"), "receiver": payload.get("receiver")})
    return out


class Sink:
    """Appends alerts to ``out`` under a lock (Alertmanager may deliver groups concurrently)."""

    def __init__(self, out: Path):
        self.out = out
        self.lock = threading.Lock()
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)

    def record(self, payload: dict[str, Any]) -> int:
        lines = alert_lines(payload, datetime.now(UTC).isoformat(timespec="seconds"))
        with self.lock, self.out.open("a", encoding="utf-8") as fh:
            for line in lines:
                fh.write(json.dumps(line, sort_keys=True) + "\n")
        return len(lines)


def make_handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path == "/health":
                self._reply(200, {"status": "ok"})
            else:
                self._reply(404, {"error": f"no route {self.path}; POST /alerts, GET /health"})

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            if self.path != "/alerts":
                self._reply(404, {"error": f"no route {self.path}; POST /alerts"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._reply(413 if length > MAX_BODY else 400,
                            {"error": f"Content-Length: {length} is not valid; send 1..{MAX_BODY} bytes"})
                return
            try:
                payload = json.loads(self.rfile.read(length))
                if not isinstance(payload, dict):
                    raise ValueError("body: not a JSON object")
                count = sink.record(payload)
            except ValueError as exc:
                self._reply(400, {"error": str(exc)})
                return
            self._reply(200, {"recorded": count})

        def log_message(self, *_args: Any) -> None:
            pass  # every alert is in the sink file already

    return Handler


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    ns = parser.parse_args(args)
    if ns.host != "127.0.0.1":
        parser.error(f"--host: {ns.host!r} is not allowed; the alert sink binds 127.0.0.1 only")
    server = ThreadingHTTPServer((ns.host, ns.port), make_handler(Sink(ns.out)))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
