"""Running the serving app under uvicorn with the process contract the deployers rely on.

- SIGHUP: re-read the pin file and hot-swap the model (handled by the app on the loop).
- SIGTERM/SIGINT: uvicorn stops accepting, lets in-flight requests finish within
  ``drain_seconds``, runs the app's shutdown (flushing logs and spans), and the process
  exits 0. Uvicorn re-raises the captured signal after a graceful shutdown so the default
  action would kill the process with 143; a no-op handler installed first turns that into
  a normal return.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from shipway.serving.app import Loader, ServingApp
from shipway.serving.config import ServingConfig
from shipway.serving.logsink import JsonLogHandler


def _ignore(signum: int, frame: Any) -> None:
    """Swallow uvicorn's re-raised exit signal once shutdown has completed."""


def uvicorn_config(app: ServingApp, config: ServingConfig) -> Any:
    """uvicorn settings tuned for one small-request model server."""
    import importlib.util

    import uvicorn

    fast = all(importlib.util.find_spec(m) is not None for m in ("uvloop", "httptools"))
    http: Any = header_timeout_protocol(config.header_timeout_seconds) if fast else "h11"
    return uvicorn.Config(
        app, host=config.host, port=config.port, workers=1,
        loop="uvloop" if fast else "asyncio", http=http,
        lifespan="on", access_log=False, log_config=None, server_header=False, date_header=False,
        timeout_graceful_shutdown=int(max(1, config.drain_seconds)), timeout_keep_alive=30,
    )


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's httptools protocol with a deadline on the request line and headers.

    uvicorn times out idle keep-alive connections but not a request whose headers never
    finish (slowloris), nor a connection that sends nothing; this closes both after
    ``seconds``. The body has its own deadline in the app (408).
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def run(config: ServingConfig, *, loader: Loader | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code.

    ``loader`` replaces the registry loader (the container start-up passes one for a model
    directory the platform mounted, see :mod:`shipway.serving.platform`).
    """
    import uvicorn
    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # *_created series double the scrape size and no rule uses them
    app = ServingApp(config, install_signal_handlers=True) if loader is None else ServingApp(
        config, install_signal_handlers=True, loader=loader)
    handler = JsonLogHandler(app.events)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    server = uvicorn.Server(uvicorn_config(app, config))
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    # Until the app installs its SIGHUP handler on the loop, a SIGHUP must not kill the process;
    # ignoring it loses nothing because the initial load has not read the pin file yet.
    signal.signal(signal.SIGHUP, _ignore)
    server.run()
    return 0 if server.started else 1
