"""Buffered JSON-lines output for request logs, event logs and the request/prediction log.

A ``write`` syscall per request is a measurable share of a sub-millisecond request, so
lines are appended to an in-memory buffer and written out by a daemon thread at least
every ``interval`` seconds (and whenever the buffer passes ``max_bytes``). ``close``
flushes what is left, which SIGTERM handling calls before the process exits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson


class _IsoClock:
    """UTC ISO 8601 timestamps with milliseconds, formatting the date part once per second.

    ``datetime.now().isoformat()`` is ~10x slower and runs twice per request.
    """

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self) -> str:
        now = time.time()
        second = int(now)
        cached_second, prefix = self._cached
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._cached = (second, prefix)
        return f"{prefix}.{int((now - second) * 1000):03d}+00:00"


utc_now_iso = _IsoClock()
"""Current UTC time as ISO 8601 with milliseconds, e.g. 2026-01-01T12:00:00.123+00:00."""


class LineSink:
    """Thread-safe buffered writer of newline-terminated byte lines."""

    def __init__(self, stream: BinaryIO, *, interval: float = 0.5, max_bytes: int = 1 << 16,
                 close_stream: bool = False):
        self._stream = stream
        self._interval = interval
        self._max_bytes = max_bytes
        self._close_stream = close_stream
        self._lock = threading.Lock()
        self._buffer: list[bytes] = []
        self._size = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def append_file(cls, path: str, **kwargs: Any) -> LineSink:
        """Sink appending to ``path``, created 0600 because request inputs may be sensitive."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return cls(os.fdopen(fd, "ab", buffering=0), close_stream=True, **kwargs)

    def start(self) -> None:
        """Start the periodic flusher thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shipway-log-flush", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def write(self, obj: Any) -> None:
        """Serialise ``obj`` as one JSON line and buffer it."""
        line = orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)
        with self._lock:
            self._buffer.append(line)
            self._size += len(line)
            if self._size >= self._max_bytes:
                self._flush_locked()

    def flush(self) -> None:
        """Write out everything buffered so far."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed or disk full: logging must never fail a request

    def close(self) -> None:
        """Stop the flusher and write out the rest."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self.flush()
        if self._close_stream:
            self._stream.close()


class EventLog:
    """Structured event lines (startup, model loads, swaps, errors) on the log sink."""

    def __init__(self, sink: LineSink, fields: Callable[[], dict[str, Any]] | None = None):
        self._sink = sink
        self._fields = fields

    def emit(self, level: str, event: str, **fields: Any) -> None:
        """Write one event line; ``fields`` must not carry secrets."""
        line: dict[str, Any] = {"ts": utc_now_iso(), "level": level, "event": event}
        if self._fields is not None:
            line.update(self._fields())
        line.update(fields)
        self._sink.write(line)


class JsonLogHandler(logging.Handler):
    """Routes stdlib log records (uvicorn's own) into the JSON event log."""

    def __init__(self, events: EventLog):
        super().__init__()
        self._events = events

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record as one JSON event line."""
        try:
            self._events.emit(record.levelname.lower(), "log", logger=record.name, message=record.getMessage())
        except Exception:  # noqa: BLE001 - a logging handler must never raise
            self.handleError(record)
