"""The serving ASGI application: routes, auth, instrumentation and zero-downtime model swaps.

A bare ASGI callable rather than a framework: at ~1 ms per request, routing, request
objects and response classes are a visible share of the budget. Small batches are
predicted inline on the event loop (a thread hand-off costs more than a 1-row sklearn
predict); only batches above ``threadpool_rows`` go to a worker thread.

Model swaps: the active model is one reference (``_active``) read once per request under
a lock together with the in-flight increment, so a request always finishes on the model
it started with. A reload loads and warms the new version in a background thread, swaps
the reference, then waits for the old version's in-flight count to reach zero before
deleting its files. A failed load leaves the old version serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import random
import signal
import sys
import threading
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson
from opentelemetry.sdk.trace import SpanProcessor
from prometheus_client import CONTENT_TYPE_LATEST

from shipway.serving import explain as explain_hook
from shipway.serving.config import Pin, PinError, ServingConfig, read_api_key, read_pin
from shipway.serving.drift import DriftMonitor, emit_effects
from shipway.serving.logsink import EventLog, LineSink, utc_now_iso
from shipway.serving.metrics import ModelSeries, ServingMetrics
from shipway.serving.model import LoadedModel, load_pinned_model
from shipway.serving.openapi import openapi_document
from shipway.serving.schema import BadRequest, Batch, parse_csv, parse_payload
from shipway.serving.telemetry import RequestTracer, SpanIds

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Loader = Callable[..., LoadedModel]

INVOCATIONS = "/invocations"
ROUTES = frozenset({INVOCATIONS, "/health", "/ping", "/ready", "/version", "/metrics", "/drift/reset",
                    explain_hook.EXPLAIN})
_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"
# Routes probed by scrapers and orchestrators every few seconds: no spans (they would flood
# trace search) and no request-log lines.
PROBE_ROUTES = frozenset({"/health", "/ping", "/ready", "/metrics"})
# Platform traffic (deployment verification, smoke tests, shadow) marks itself with this
# header; honoured only with a valid API key, so a client cannot hide its own traffic.
TRAFFIC_HEADER = b"x-shipway-traffic"
TRAFFIC_CLASSES = frozenset({"verification", "smoke", "shadow"})
MODEL_INFO = "/model-info"
OPENAPI = "/openapi.json"
EXTRA_ROUTES = frozenset({MODEL_INFO, OPENAPI})
_AUTH_HINT = "missing or invalid API key; send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


@dataclass(frozen=True)
class Response:
    """What a handler produced; ``error_kind`` feeds shipway_errors_total."""

    status: int
    body: bytes
    content_type: bytes = _JSON
    rows: int = 0
    error_kind: str | None = None
    # Close the connection after this response (a body that never finished arriving).
    close: bool = False


def error_response(status: int, code: str, message: str, kind: str) -> Response:
    """A JSON error in MLflow's shape: {"error_code": ..., "message": ...}."""
    return Response(status, orjson.dumps({"error_code": code, "message": message}), error_kind=kind)


def _ok(obj: Any) -> Response:
    return Response(200, orjson.dumps(obj))


@dataclass(eq=False)
class _Active:
    """The served model with its metric children and drift window."""

    model: LoadedModel
    series: ModelSeries
    drift: DriftMonitor | None


class _ClientGone(Exception):
    """The client disconnected before its body arrived."""


class _BodyTimeout(Exception):
    """The body did not finish arriving within ``body_timeout_seconds``."""


class _BodyDeadlines:
    """Body-read deadlines, checked by one watchdog task per event loop.

    ``asyncio.timeout`` schedules and cancels a timer per request (~6.5 us on uvloop, 2 % of
    a 1-row GBT request); here a request only enters and leaves a dict, and the watchdog
    cancels any read past its deadline (checked every ``tick``: a late body gets its 408
    between ``seconds`` and ``seconds + tick`` after the read began).
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.tick = min(0.25, seconds / 4)
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def read(self, body: Awaitable[bytes]) -> bytes:
        """Await ``body``; raises :class:`_BodyTimeout` once it has taken longer than ``seconds``."""
        task = asyncio.current_task()
        if task is None:  # not inside a task (cannot be cancelled): no deadline to enforce
            return await body
        loop = task.get_loop()
        watchdog = self._watchdog
        if watchdog is None or watchdog.done() or watchdog.get_loop() is not loop:
            self._watchdog = loop.create_task(self._watch(loop))
        self._reading[task] = loop.time() + self.seconds
        try:
            return await body
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            raise _BodyTimeout from None
        finally:
            self._reading.pop(task, None)
            self._expired.discard(task)

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for task, deadline in list(self._reading.items()):
                if deadline <= now and task.get_loop() is loop:
                    del self._reading[task]
                    self._expired.add(task)
                    task.cancel()

    def stop(self) -> None:
        """Cancel the watchdog (on shutdown, from the loop it runs on or after that loop ended)."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None or watchdog.done():
            return
        loop = watchdog.get_loop()
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        with contextlib.suppress(RuntimeError):  # that loop closed meanwhile: nothing left to cancel
            if on_loop:
                watchdog.cancel()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(watchdog.cancel)


@dataclass(frozen=True)
class _Request:
    """Per-request facts the invocation handler needs beyond the body."""

    content_type: bytes | None
    traffic: str | None
    trace_id: str


class ServingApp:
    """ASGI app serving one pinned model version; see the module docstring."""

    def __init__(
        self,
        config: ServingConfig,
        *,
        log_stream: BinaryIO | None = None,
        loader: Loader = load_pinned_model,
        span_processors: Iterable[SpanProcessor] = (),
        process_metrics: bool = True,
        install_signal_handlers: bool = False,
    ):
        self.config = config
        self.pin: Pin = read_pin(config.pin_file)
        self._api_key: bytes | None = None
        loose_key = False
        if config.api_key_file:
            self._api_key, loose_key = read_api_key(config.api_key_file)
        self.metrics = ServingMetrics(process_metrics=process_metrics, enabled=config.metrics)
        self.log_sink = LineSink(log_stream if log_stream is not None else sys.stdout.buffer)
        self.request_sink = LineSink.append_file(config.request_log) if config.request_log else None
        self.events = EventLog(self.log_sink)
        self.tracer = RequestTracer(config.environment, config.otlp_endpoint, span_processors)
        # getrandbits is ~10x cheaper than uuid4; request ids need uniqueness, not secrecy.
        self._ids = random.Random()  # noqa: S311
        self._loader = loader
        self._install_signal_handlers = install_signal_handlers
        self._active: _Active | None = None
        self._idle_series = self.metrics.series(self.pin.model_name, "none")
        self._swap_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._reload_thread: threading.Thread | None = None
        self._reload_again = False
        self._closing = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shipway-predict")
        self._body_deadlines = _BodyDeadlines(config.body_timeout_seconds)
        self._server_attrs = {"server.address": config.host, "server.port": config.port}
        # Explainability hook (logic in shipway/serving/explain.py); None = /explain answers 404.
        self.explainer = explain_hook.Explainer(config.explain_max_evaluations) if config.explain else None
        if loose_key:
            self.events.emit("warning", "api_key_file_permissions",
                             path=config.api_key_file, message="API key file is readable by group/other; use 0600")

    # ----------------------------------------------------------------- lifecycle

    @property
    def active_model(self) -> LoadedModel | None:
        """The model currently answering new requests, if any."""
        active = self._active
        return active.model if active is not None else None

    def start(self) -> None:
        """Start log flushers and the initial model load (in the background, retried)."""
        self.log_sink.start()
        if self.request_sink is not None:
            self.request_sink.start()
        self.events.emit("info", "startup", model=self.pin.model_name, version=self.pin.model_version,
                         environment=self.config.environment, host=self.config.host, port=self.config.port,
                         tracing_export=bool(self.config.otlp_endpoint),
                         request_log=self.config.request_log, auth=self._api_key is not None)
        threading.Thread(target=self._initial_load, name="shipway-initial-load", daemon=True).start()

    def _initial_load(self) -> None:
        """Load the pin, retrying with backoff: the registry may still be starting next to us."""
        delay = 1.0
        while self._active is None and not self._closing.is_set():
            if self.reload():
                return
            self._closing.wait(delay)
            delay = min(delay * 2, 30.0)

    def close(self) -> None:
        """Flush logs and spans; called on shutdown after in-flight requests finished."""
        self._closing.set()
        self._body_deadlines.stop()
        self.events.emit("info", "shutdown", model=self.pin.model_name)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.tracer.shutdown()
        if self.request_sink is not None:
            self.request_sink.close()
        self.log_sink.close()

    def request_reload(self) -> None:
        """SIGHUP handler: reload the pin in a background thread (coalescing repeated signals)."""
        with self._swap_lock:
            if self._reload_thread is not None and self._reload_thread.is_alive():
                self._reload_again = True
                return
            self._reload_thread = threading.Thread(target=self._reload_loop, name="shipway-reload", daemon=True)
            self._reload_thread.start()

    def _reload_loop(self) -> None:
        while True:
            self.reload()
            with self._swap_lock:
                if not self._reload_again:
                    return
                self._reload_again = False

    def reload(self) -> bool:
        """Re-read the API key and the pin; load, warm and swap in a changed version.

        Returns False if the pin could not be served (the previous version keeps serving).

        Blocking; runs in a background thread in the server (tests call it directly).
        """
        with self._reload_lock:
            self._reload_api_key()
            try:
                pin = read_pin(self.config.pin_file)
            except PinError as exc:
                self.events.emit("error", "pin_invalid", error=str(exc), serving=self._serving_version())
                return False
            current = self._active
            if current is not None and (current.model.name, current.model.version) == (
                    pin.model_name, pin.model_version):
                self.events.emit("info", "pin_unchanged", model=pin.model_name, version=pin.model_version)
                return True
            self.events.emit("info", "model_loading", model=pin.model_name, version=pin.model_version,
                             serving=self._serving_version())
            started = time.perf_counter()
            try:
                model = self._loader(pin, log=self.events.emit)
            except Exception as exc:  # noqa: BLE001 - a failed load must never take the endpoint down
                self.events.emit("error", "model_load_failed", model=pin.model_name, version=pin.model_version,
                                 error=f"{type(exc).__name__}: {exc}", serving=self._serving_version())
                return False
            self._install(pin, model, load_ms=round((time.perf_counter() - started) * 1000, 1))
            return True

    def _reload_api_key(self) -> None:
        """Pick up a rotated API key file; an unreadable or empty one keeps the current key."""
        if not self.config.api_key_file:
            return
        try:
            key, _ = read_api_key(self.config.api_key_file)
        except (OSError, ValueError) as exc:
            self.events.emit("error", "api_key_invalid", path=self.config.api_key_file,
                             error=type(exc).__name__, message="keeping the current key")
            return
        if key != self._api_key:
            self._api_key = key
            self.events.emit("info", "api_key_rotated", path=self.config.api_key_file)

    def _serving_version(self) -> int | None:
        active = self._active
        return active.model.version if active is not None else None

    def _install(self, pin: Pin, model: LoadedModel, load_ms: float) -> None:
        series = self.metrics.series(model.name, str(model.version))
        features = model.drift_features()
        drift = None
        if model.profile is not None and features:
            cfg = self.config
            drift = DriftMonitor(model.profile, features, refresh_every=cfg.drift_refresh_requests,
                                 refresh_seconds=cfg.drift_refresh_seconds, window=cfg.drift_window)
        new = _Active(model=model, series=series, drift=drift)
        series.set_info(self.config.environment)
        if drift is not None:
            series.set_drift(dict.fromkeys(sorted(drift.features), 0.0), 0, drift.effects())
        with self._swap_lock:
            old = self._active
            self._active = new
            self.pin = pin
        event = "model_swapped" if old is not None else "model_loaded"
        self.events.emit("info", event, model=model.name, version=model.version, flavor=model.flavor,
                         previous=old.model.version if old is not None else None, load_ms=load_ms,
                         drift_features=sorted(features))
        if old is not None:
            if (old.model.name, old.model.version) != (model.name, model.version):
                old.series.retire(self.config.environment, sorted(old.drift.features) if old.drift else [])
            self._drain(old)

    def _drain(self, old: _Active) -> None:
        """Wait (bounded) for requests still on the old model, then free its files."""
        deadline = time.monotonic() + self.config.drain_seconds
        while old.model.inflight > 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        self.events.emit("info", "model_drained", model=old.model.name, version=old.model.version,
                         inflight_left=old.model.inflight)
        old.model.discard()

    # ----------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.start()
                    if self._install_signal_handlers:
                        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request_reload)
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        start_ns = time.time_ns()
        path: str = scope["path"]
        route = path if path in ROUTES or path in EXTRA_ROUTES else "other"
        method: str = scope["method"]
        request_id = traceparent = content_type = traffic = None
        creds: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"x-request-id":
                request_id = value[:128].decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"authorization" or name == b"x-api-key":
                creds.append((name, value))
            elif name == TRAFFIC_HEADER:
                traffic = value.decode("latin-1").strip().lower()
        if not request_id:
            request_id = f"{self._ids.getrandbits(128):032x}"
        ids = self.tracer.begin(traceparent)

        invocation = route == INVOCATIONS
        with self._swap_lock:
            active = self._active
            if invocation and active is not None:
                active.model.inflight += 1
        series = active.series if active is not None else self._idle_series
        if invocation:
            series.inflight.inc()
        sent = True
        klass = self._traffic_class(traffic, creds) if traffic is not None else None
        try:
            if route == explain_hook.EXPLAIN:  # explainability hook, see shipway/serving/explain.py
                status, body, kind = await explain_hook.handle(
                    self, self.explainer, method, receive, active.model if active else None, creds,
                    request_id, ids.trace_hex)
                response = Response(status, body, error_kind=kind)
            else:
                response = await self._dispatch(
                    route, method, receive, active, creds, request_id,
                    _Request(content_type, klass, ids.trace_hex))
        except _ClientGone:
            response, sent = Response(499, b""), False
        except Exception as exc:  # noqa: BLE001 - turned into a 500 and logged, never a dropped connection
            self.events.emit("error", "request_failed", request_id=request_id, trace_id=ids.trace_hex,
                             route=route, error=f"{type(exc).__name__}: {exc}")
            response = error_response(500, "INTERNAL_ERROR", f"internal error; reference {request_id} "
                                      f"(trace {ids.trace_hex}) in the server log", "internal")
        finally:
            if invocation:
                series.inflight.dec()
                if active is not None:
                    active.model.inflight -= 1
        if sent:
            headers = [
                (b"content-type", response.content_type),
                (b"content-length", str(len(response.body)).encode()),
                (b"x-request-id", request_id.encode("latin-1")),
                (b"x-trace-id", ids.trace_hex.encode()),
            ]
            if response.close:
                headers.append((b"connection", b"close"))
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await send({"type": "http.response.body", "body": response.body})
        seconds = time.perf_counter() - started
        if response.status in (408, 499):
            # The body never arrived: the time measures the client, not us; no latency observation.
            self.events.emit("warning", "request_abandoned", request_id=request_id, route=route,
                             status=response.status, seconds=round(seconds, 3))
            return
        if klass is not None and invocation:
            # Platform traffic is counted under its own route label, so SLO rules selecting
            # route="/invocations" never see the platform testing itself.
            route = f"{INVOCATIONS}:{klass}"
        self._finish(ids, route, method, path, response, active, series, request_id, start_ns, seconds)

    def _finish(self, ids: SpanIds, route: str, method: str, path: str, response: Response,
                active: _Active | None, series: ModelSeries, request_id: str, start_ns: int,
                seconds: float) -> None:
        """Metrics, the span and the JSON request log line for one finished request."""
        status = response.status
        series.observe_request(route, status, seconds, response.error_kind)
        version = active.model.version if active is not None else None
        if self.tracer.enabled and route not in PROBE_ROUTES:
            self.tracer.finish(ids, f"{method} {route}" if route != "other" else method, start_ns,
                               start_ns + int(seconds * 1e9), {
                                   "http.request.method": method, "url.path": path, "http.route": route,
                                   "http.response.status_code": status, **self._server_attrs,
                                   "shipway.model.name": series.model,
                                   "shipway.model.version": version if version is not None else -1,
                                   "shipway.request.rows": response.rows,
                               }, error=status >= 500)
        if not self.config.access_log:
            return
        self.log_sink.write({
            "ts": utc_now_iso(),
            "level": "info" if status < 400 else ("warning" if status < 500 else "error"),
            "request_id": request_id, "trace_id": ids.trace_hex, "span_id": ids.span_hex,
            "route": route, "method": method, "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "model": series.model, "version": version, "rows": response.rows,
        })

    async def _dispatch(self, route: str, method: str, receive: Receive, active: _Active | None,
                        creds: list[tuple[bytes, bytes]], request_id: str,
                        request: _Request | None = None) -> Response:
        if route == INVOCATIONS:
            if method != "POST":
                return self._method_not_allowed(route, "POST")
            if not self._authorized(creds):
                return error_response(401, "UNAUTHORIZED", _AUTH_HINT, "unauthorized")
            if active is None:
                return self._not_ready()
            try:
                body = await self._read_body(receive)
            except BadRequest as exc:
                return error_response(413, "BAD_REQUEST", exc.message, "bad_request")
            except _BodyTimeout:
                return Response(408, orjson.dumps({
                    "error_code": "REQUEST_TIMEOUT",
                    "message": f"the request body did not arrive within {self.config.body_timeout_seconds} s"}),
                    error_kind="bad_request", close=True)
            request = request or _Request(b"application/json", None, "")
            return await self._invoke(active, body, request_id, request)
        if route == MODEL_INFO:
            return self._model_info(active) if method in ("GET", "HEAD") else self._method_not_allowed(route, "GET")
        if route == OPENAPI:
            return Response(200, openapi_document()) if method in ("GET", "HEAD") else self._method_not_allowed(
                route, "GET")
        if route == "/drift/reset":
            if method != "POST":
                return self._method_not_allowed(route, "POST")
            if not self._authorized(creds):
                return error_response(401, "UNAUTHORIZED", _AUTH_HINT, "unauthorized")
            return self._reset_drift(active)
        if route == "other":
            return error_response(404, "NOT_FOUND", "no such route; the endpoints are "
                                  + ", ".join(sorted(ROUTES)), "bad_request")
        if method not in ("GET", "HEAD"):
            return self._method_not_allowed(route, "GET")
        if route in ("/health", "/ping"):
            return _ok({"status": "ok"})
        if route == "/ready":
            return _ok({"status": "ready"}) if active is not None else self._not_ready()
        if route == "/version":
            return self._mlflow_version() if self.config.mlflow_version_route else self._model_info(active)
        return self._metrics(active)

    @staticmethod
    def _method_not_allowed(route: str, allowed: str) -> Response:
        return error_response(405, "METHOD_NOT_ALLOWED", f"{route} only accepts {allowed}", "bad_request")

    def _not_ready(self) -> Response:
        return error_response(503, "NOT_READY", f"model {self.pin.model_name} version "
                              f"{self.pin.model_version} is not loaded yet", "internal")

    def _authorized(self, creds: list[tuple[bytes, bytes]]) -> bool:
        """Constant-time check of 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."""
        if self._api_key is None:
            return True
        for name, value in creds:
            token = value
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    continue
            if hmac.compare_digest(token.strip(), self._api_key):
                return True
        return False

    def _traffic_class(self, traffic: str, creds: list[tuple[bytes, bytes]]) -> str | None:
        """The platform traffic class the request claims, if it may claim one.

        Only a caller holding the API key can mark traffic (else anyone could hide requests
        from drift and SLOs); without a key configured there is nothing to check against,
        which only the local target allows.
        """
        if traffic not in TRAFFIC_CLASSES:
            return None
        if self._api_key is not None and not self._authorized(creds):
            return None
        return traffic

    async def _read_body(self, receive: Receive) -> bytes:
        return await self._body_deadlines.read(self._read_chunks(receive))

    async def _read_chunks(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body_bytes:
                raise BadRequest(f"request body is larger than {self.config.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _invoke(self, active: _Active, body: bytes, request_id: str, request: _Request) -> Response:
        model = active.model
        parser = _parser(request.content_type)
        if isinstance(parser, Response):
            return parser
        try:
            batch = parser(body, model.schema, self.config.max_rows)
        except BadRequest as exc:
            return error_response(400, exc.code, exc.message, "bad_request")
        try:
            if batch.n_rows > self.config.threadpool_rows:
                loop = asyncio.get_running_loop()
                predictions = await loop.run_in_executor(self._executor, model.predict, batch)
            else:
                predictions = model.predict(batch)
        except Exception as exc:  # noqa: BLE001 - the model rejected this input; see _model_failed
            return self._model_failed(exc, batch, model, request_id, request.trace_id)
        self._observe_predictions(active, predictions)
        if request.traffic is not None:
            # Platform traffic: answered, but never part of drift windows or the quality join.
            return Response(200, orjson.dumps({"predictions": predictions}), rows=batch.n_rows)
        if active.drift is not None:
            active.drift.observe(batch.columns, batch.n_rows)
            if active.drift.refresh_due():
                self._publish_drift(active)
        if self.request_sink is not None:
            # request_id joins late labels (shipway/drift/quality.py); trace_id finds the request's
            # trace in Jaeger and its access-log line in the log store (`shipway logs --trace`).
            self.request_sink.write({"ts": utc_now_iso(), "request_id": request_id, "trace_id": request.trace_id,
                                     "model": model.name, "version": model.version, "inputs": batch.columns,
                                     "predictions": predictions})
        return Response(200, orjson.dumps({"predictions": predictions}), rows=batch.n_rows)

    def _model_failed(self, exc: Exception, batch: Batch, model: LoadedModel, request_id: str,
                      trace_id: str) -> Response:
        """A predict that raised: 400 as MLflow answers, the error text only in our log.

        MLflow's scoring server answers BAD_REQUEST for any exception the model raises, since
        it is almost always input the model cannot score (nulls, unseen categories). The
        exception text can reveal internals, so the client gets the nulls we can name and a
        reference to the log line instead.
        """
        self.events.emit("error", "model_error", request_id=request_id, trace_id=trace_id, model=model.name,
                         version=model.version, error=f"{type(exc).__name__}: {exc}"[:500])
        nulls = [name for name, values in batch.columns.items() if None in values]
        hint = (f"columns {nulls} have null values the model cannot score; send a value for every row"
                if nulls else "the model could not score this input; check it against the signature")
        return error_response(400, "BAD_REQUEST", f"{hint} (reference {request_id}, trace {trace_id})",
                              "model_error")

    @staticmethod
    def _observe_predictions(active: _Active, predictions: list[Any]) -> None:
        kind = active.model.is_classifier
        if kind is None or not predictions or isinstance(predictions[0], list | dict):
            return
        if kind:
            if len(predictions) == 1:
                active.series.observe_class(str(predictions[0]))
            else:
                for label, count in Tally(map(str, predictions)).items():
                    active.series.observe_class(label, count)
        else:
            for value in predictions:
                if isinstance(value, int | float):
                    active.series.observe_value(value)

    def _publish_drift(self, active: _Active) -> None:
        """Recompute PSI and set the gauges, unless this version was swapped out meanwhile."""
        if active.drift is not None and active is self._active:
            psi = active.drift.compute()
            effects = active.drift.effects()
            active.series.set_drift(psi, active.drift.samples, effects)
            # The cloud drift alerts' input (the same effect sizes as the gauge, one line per refresh).
            emit_effects(self.events.emit, effects, active.drift.samples, active.model.name, active.model.version)
            # Platform contract hook (shipway_core.contract.DRIFT_LOG_*): the worst feature PSI as
            # one log line (context; the drift alarms decide on the drift_effects line above).
            # Imported here, not at the top: the package's __init__ imports this module, and
            # `python -m shipway.serving.platform` must not find itself imported before it runs.
            from shipway.serving.platform import emit_drift_window

            emit_drift_window(self.events.emit, psi, active.drift.samples, active.model)

    def _reset_drift(self, active: _Active | None) -> Response:
        if active is None or active.drift is None:
            return _ok({"status": "no_drift_window"})
        active.drift.reset()
        self._publish_drift(active)
        return _ok({"status": "reset"})

    @staticmethod
    def _mlflow_version() -> Response:
        """MLflow's /version: the MLflow version string (its client readiness helper compares it)."""
        return Response(200, _mlflow_version_text().encode())

    def _model_info(self, active: _Active | None) -> Response:
        if active is None:
            return self._not_ready()
        model = active.model
        return _ok({"model_name": model.name, "model_version": model.version,
                    "loaded_at": model.loaded_at.isoformat(), "environment": self.config.environment})

    def _metrics(self, active: _Active | None) -> Response:
        if not self.config.metrics:
            return error_response(404, "NOT_FOUND", "metrics are turned off (--no-metrics)", "bad_request")
        if active is not None and active.drift is not None and active.drift.pending:
            self._publish_drift(active)
        return Response(200, self.metrics.render(), content_type=CONTENT_TYPE_LATEST.encode())


_CSV = "text/csv"
_JSON_TYPE = "application/json"


def _parser(content_type: bytes | None) -> Callable[[bytes, Any, int], Batch] | Response:
    """The body parser for a Content-Type, or MLflow's 415 (plain text) for one it refuses.

    MLflow accepts ``application/json`` and ``text/csv`` with at most a UTF-8 ``charset``
    parameter; the exact common header is matched first so the hot path does no parsing.
    """
    if content_type == b"application/json":
        return parse_payload
    if content_type is None:
        return _unsupported("no Content-Type header; send 'Content-Type: application/json' or 'text/csv'")
    # Parsed exactly as MLflow's scoring server does (case-sensitive type, quotes kept), so the
    # same headers are accepted and refused.
    mime, *pairs = (part.strip() for part in content_type.decode("latin-1").split(";"))
    params = {key: value for key, _, value in (p.partition("=") for p in pairs)}
    charset = params.pop("charset", "utf-8").lower()
    if charset != "utf-8":
        return _unsupported(f"charset '{charset}' is not supported; send the body as UTF-8 (charset=utf-8)")
    if params:
        return _unsupported(f"Content-Type parameters {sorted(params)} are not supported; only charset=utf-8 is")
    if mime == _JSON_TYPE:
        return parse_payload
    if mime == _CSV:
        return parse_csv
    return _unsupported(f"Content-Type '{mime}' is not supported; send 'application/json' or 'text/csv'")


def _unsupported(message: str) -> Response:
    # Plain text, no error_code: what MLflow's scoring server answers for the same requests.
    return Response(415, message.encode(), content_type=_TEXT, error_kind="bad_request")


_VERSION_TEXT: list[str] = []


def _mlflow_version_text() -> str:
    """The installed MLflow version (metadata only: importing mlflow would cost seconds)."""
    if not _VERSION_TEXT:
        from importlib.metadata import PackageNotFoundError, version

        try:
            _VERSION_TEXT.append(version("mlflow"))
        except PackageNotFoundError:
            _VERSION_TEXT.append(version("mlflow-skinny"))
    return _VERSION_TEXT[0]
