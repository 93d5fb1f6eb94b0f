"""Slow clients against the real server (uvicorn on a free loopback port, a stub model).

Bounded: every socket has its own deadline, the whole test finishes in a few seconds.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipway.serving.app import ServingApp
from shipway.serving.config import ServingConfig
from shipway.serving.model import LoadedModel, synthetic_batch
from shipway.serving.schema import ColumnSpec, InputSchema
from shipway.serving.server import uvicorn_config

BODY_TIMEOUT = 1.0
HEADER_TIMEOUT = 1.0
SCHEMA = InputSchema(columns=(ColumnSpec("x", "double"),))


def stub_loader(pin: Any, log: Any = None) -> LoadedModel:
    return LoadedModel(name=pin.model_name, version=pin.model_version, schema=SCHEMA, flavor="pyfunc",
                       is_classifier=False, predict_fn=lambda b: [0.0] * b.n_rows, warm_batch=synthetic_batch(SCHEMA))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    import uvicorn

    pin = tmp_path / "pin.json"
    pin.write_text(json.dumps({"model_name": "stub", "model_version": 1, "tracking_uri": "http://127.0.0.1:1"}))
    port = free_port()
    config = ServingConfig(pin_file=str(pin), port=port, body_timeout_seconds=BODY_TIMEOUT,
                           header_timeout_seconds=HEADER_TIMEOUT, environment="test")
    app = ServingApp(config, log_stream=io.BytesIO(), loader=stub_loader, process_metrics=False)
    server = uvicorn.Server(uvicorn_config(app, config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started or app.active_model is None:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(10)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the server closes the connection within ``seconds`` (reads until EOF)."""
    sock.settimeout(seconds)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def test_twenty_bodies_that_never_finish_are_all_closed_within_the_timeout(server: int) -> None:
    head = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server), timeout=5)
        s.sendall(head + b'{"inputs":')  # 10 of the promised 100 bytes
        socks.append(s)
    started = time.monotonic()
    results = []
    try:
        for s in socks:
            results.append(closed_within(s, max(0.1, BODY_TIMEOUT + 3 - (time.monotonic() - started))))
    finally:
        for s in socks:
            s.close()
    assert results == [True] * 20
    assert time.monotonic() - started < BODY_TIMEOUT + 3


def test_a_complete_request_on_the_same_server_is_answered(server: int) -> None:
    body = b'{"inputs": {"x": [1.0]}}'
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(b'{"predictions":[0.0]}')


@pytest.mark.parametrize("sent", [
    b"",  # connects and sends nothing
    b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty",  # headers that never finish
])
def test_connections_whose_headers_never_finish_are_closed(server: int, sent: bytes) -> None:
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server), timeout=5)
        if sent:
            s.sendall(sent)
        socks.append(s)
    started = time.monotonic()
    try:
        results = [closed_within(s, max(0.1, HEADER_TIMEOUT + 3 - (time.monotonic() - started))) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert results == [True] * 20


def test_keep_alive_requests_after_the_header_deadline_still_work(server: int) -> None:
    body = b'{"inputs": {"x": [1.0]}}'
    request = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(request)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(HEADER_TIMEOUT + 0.3)  # past the first request's header deadline, within keep-alive
        s.sendall(request)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
