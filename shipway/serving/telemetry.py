"""Per-request OpenTelemetry spans at a cost that fits a sub-millisecond request.

The SDK's ``Tracer.start_span`` path (context lookups, sampler, attribute validation for
every attribute) measured at ~40% of this app's own per-request overhead. A server span
here has a fixed, known shape, so the app builds it directly: ids are generated (or
taken from an incoming W3C ``traceparent``) when the request starts, and when it ends a
finished span carrying the HTTP semantic-convention attributes is exported.

Export with ``--otlp-endpoint`` goes through :class:`OtlpSpanExporter`, not the SDK's
``BatchSpanProcessor`` + ``OTLPSpanExporter``: on a request path of ~0.3 ms the SDK pair
(a ``ReadableSpan`` per request, the processor's lock and condition, and protobuf message
objects built per span on the export thread, which competes for the GIL) cost ~20 % of
throughput. Here a request appends one tuple to a deque (no lock), and a daemon thread
encodes the batch straight to OTLP protobuf wire bytes (resource and scope encoded once,
attribute key/value pairs memoised) and POSTs it on a keep-alive connection. Extra SDK
span processors (tests) still receive ``ReadableSpan``s. Without an endpoint and without
processors nothing is built past the ids that go into ``X-Trace-Id`` and the log line.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import struct
import threading
import urllib.parse
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from shipway import __version__

SERVICE_NAME = "shipway-serving"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP traces URL from a collector base URL such as http://127.0.0.1:4318."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


@dataclass(frozen=True, slots=True)
class SpanIds:
    """Ids of one request's server span and, if it continued a trace, its remote parent."""

    trace_id: int
    span_id: int
    parent_span_id: int | None
    sampled: bool

    @property
    def trace_hex(self) -> str:
        """The trace id as 32 lowercase hex digits (the X-Trace-Id header value)."""
        return f"{self.trace_id:032x}"

    @property
    def span_hex(self) -> str:
        """The span id as 16 lowercase hex digits."""
        return f"{self.span_id:016x}"


def parse_traceparent(value: str | None) -> tuple[int, int, bool] | None:
    """(trace id, parent span id, sampled) from a valid W3C traceparent, else None."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == "ff":
        return None
    trace_id, span_id = int(match.group(2), 16), int(match.group(3), 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, bool(int(match.group(4), 16) & 0x01)


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint (negative int64 values as their 64-bit two's complement)."""
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    """OTLP AnyValue: string=1, bool=2, int=3, double=4."""
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    return _field(1, str(value).encode())


def encode_key_value(key: str, value: Any) -> bytes:
    """OTLP KeyValue message body (key=1, value=2)."""
    return _field(1, key.encode()) + _field(2, _any_value(value))


# Span wire tags: trace_id=1, span_id=2, parent_span_id=4, name=5, kind=6 (SERVER=2),
# start=7 and end=8 (fixed64), attributes=9, status=15 (code=3, ERROR=2), flags=16 (fixed32).
_KIND_SERVER = b"\x30\x02"
_STATUS_ERROR = _field(15, b"\x18\x02")
_FLAGS_LOCAL_PARENT = b"\x85\x01" + struct.pack("<I", 0x100)
_FLAGS_REMOTE_PARENT = b"\x85\x01" + struct.pack("<I", 0x300)
_TIMES = struct.Struct("<BQBQ")

SpanRecord = tuple[int, int, "int | None", str, int, int, Mapping[str, Any], bool]
"""(trace id, span id, parent span id, name, start ns, end ns, attributes, error)."""


class OtlpSpanExporter:
    """Buffers finished server spans and POSTs them as OTLP/HTTP protobuf from a daemon thread."""

    def __init__(self, url: str, resource: Resource, scope: InstrumentationScope, *,
                 interval: float = 1.0, max_queue: int = 8192, max_batch: int = 512, timeout: float = 10.0):
        self.url = url
        parts = urllib.parse.urlsplit(url)
        self._https = parts.scheme == "https"
        self._netloc = parts.netloc
        self._path = parts.path or "/v1/traces"
        self._timeout = timeout
        self._interval = interval
        self._max_batch = max_batch
        # A full queue drops the oldest spans: tracing must never slow down or fail a request.
        self._queue: deque[SpanRecord] = deque(maxlen=max_queue)
        self._kv_cache: dict[tuple[str, Any], bytes] = {}
        self._name_cache: dict[str, bytes] = {}
        self._resource_field = _field(1, b"".join(
            _field(1, encode_key_value(k, v)) for k, v in sorted(resource.attributes.items())))
        scope_body = _field(1, scope.name.encode()) + (_field(2, scope.version.encode()) if scope.version else b"")
        self._scope_field = _field(1, scope_body)
        self._conn: http.client.HTTPConnection | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.exported = 0
        self.failed_batches = 0
        self._thread = threading.Thread(target=self._run, name="shipway-span-export", daemon=True)
        self._thread.start()

    def add(self, record: SpanRecord) -> None:
        """Queue one finished span (``deque.append`` is atomic: no lock on the request path)."""
        self._queue.append(record)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> None:
        """Encode and send everything queued so far, in batches of at most ``max_batch``."""
        with self._lock:
            # Only what was queued when the flush began: spans arriving during the POSTs wait for
            # the next tick, else under load the loop chases the queue with many tiny POSTs.
            left = len(self._queue)
            while left > 0:
                batch: list[SpanRecord] = []
                with contextlib.suppress(IndexError):
                    while len(batch) < min(left, self._max_batch):
                        batch.append(self._queue.popleft())
                if not batch:
                    return
                left -= len(batch)
                self._send(self.encode(batch))
                self.exported += len(batch)

    def encode(self, records: Iterable[SpanRecord]) -> bytes:
        """An ``ExportTraceServiceRequest`` holding ``records`` under this service's resource and scope."""
        spans = b"".join(_field(2, self._encode_span(r)) for r in records)
        resource_spans = self._resource_field + _field(2, self._scope_field + spans)
        return _field(1, resource_spans)

    def _encode_span(self, record: SpanRecord) -> bytes:
        trace_id, span_id, parent, name, start, end, attributes, error = record
        name_bytes = self._name_cache.get(name)
        if name_bytes is None:
            name_bytes = self._name_cache[name] = _field(5, name.encode())
            if len(self._name_cache) > 4096:
                self._name_cache.clear()
        parts = [b"\x0a\x10", trace_id.to_bytes(16, "big"), b"\x12\x08", span_id.to_bytes(8, "big")]
        if parent is not None:
            parts += (b"\x22\x08", parent.to_bytes(8, "big"))
        parts += (name_bytes, _KIND_SERVER, _TIMES.pack(0x39, start, 0x41, end))
        cache = self._kv_cache
        for item in attributes.items():
            kv = cache.get(item)
            if kv is None:
                kv = _field(9, encode_key_value(*item))
                if len(cache) < 4096:  # bounded: url.path of unknown routes is caller-controlled
                    cache[item] = kv
            parts.append(kv)
        if error:
            parts.append(_STATUS_ERROR)
        parts.append(_FLAGS_REMOTE_PARENT if parent is not None else _FLAGS_LOCAL_PARENT)
        return b"".join(parts)

    def _send(self, body: bytes) -> None:
        """POST one batch; a failed export is counted and dropped, never retried into the hot path."""
        for attempt in range(2):  # a keep-alive connection the collector closed: reconnect once
            try:
                if self._conn is None:
                    cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                    self._conn = cls(self._netloc, timeout=self._timeout)
                self._conn.request("POST", self._path, body, {"Content-Type": "application/x-protobuf"})
                response = self._conn.getresponse()
                response.read()
                if response.status >= 300:
                    self.failed_batches += 1
                return
            except (OSError, http.client.HTTPException):
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt == 1:
                    self.failed_batches += 1

    def shutdown(self) -> None:
        """Stop the export thread and send what is still queued."""
        self._stop.set()
        self._thread.join(timeout=2)
        self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class RequestTracer:
    """Builds one SERVER span per request and hands it to the span processors."""

    def __init__(self, environment: str, otlp_endpoint: str | None,
                 extra_processors: Iterable[SpanProcessor] = ()):
        self.processors: list[SpanProcessor] = list(extra_processors)
        self.resource = Resource.create({
            "service.name": SERVICE_NAME,
            "service.version": __version__,
            "deployment.environment.name": environment,
        })
        self.scope = InstrumentationScope("shipway.serving", __version__)
        self.exporter = (OtlpSpanExporter(traces_url(otlp_endpoint), self.resource, self.scope)
                         if otlp_endpoint else None)
        self.enabled = self.exporter is not None or bool(self.processors)
        """True when finished spans go anywhere (the app skips building attributes otherwise)."""
        self._rand = random.Random()  # noqa: S311 - W3C trace ids need randomness, not secrecy

    def begin(self, traceparent: str | None) -> SpanIds:
        """Ids for a new server span, continuing the caller's trace when it sent one."""
        span_id = self._rand.getrandbits(64) or 1
        parent = parse_traceparent(traceparent)
        if parent is None:
            return SpanIds(self._rand.getrandbits(128) or 1, span_id, None, True)
        return SpanIds(parent[0], span_id, parent[1], parent[2])

    def finish(self, ids: SpanIds, name: str, start_ns: int, end_ns: int,
               attributes: Mapping[str, Any], error: bool) -> None:
        """Export the finished span (no-op without an exporter or processors, or when not sampled)."""
        if not self.enabled or not ids.sampled:
            return
        if self.exporter is not None:
            self.exporter.add((ids.trace_id, ids.span_id, ids.parent_span_id, name, start_ns, end_ns,
                               attributes, error))
        if not self.processors:
            return
        context = SpanContext(ids.trace_id, ids.span_id, is_remote=False, trace_flags=_SAMPLED)
        parent = None
        if ids.parent_span_id is not None:
            parent = SpanContext(ids.trace_id, ids.parent_span_id, is_remote=True, trace_flags=_SAMPLED)
        span = ReadableSpan(name=name, context=context, parent=parent, resource=self.resource,
                            attributes=dict(attributes), kind=SpanKind.SERVER, instrumentation_scope=self.scope,
                            status=_ERROR if error else _OK, start_time=start_ns, end_time=end_ns)
        for processor in self.processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        """Flush and stop the exporter and processors (what is still queued is sent)."""
        if self.exporter is not None:
            self.exporter.shutdown()
        for processor in self.processors:
            processor.shutdown()
