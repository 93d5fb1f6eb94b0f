"""Helpers for the operating-ML tests: a real sklearn model served in-process or under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shipway.serving.app import ServingApp
from shipway.serving.config import Pin, ServingConfig
from shipway.serving.model import LoadedModel, sklearn_loaded_model
from shipway.serving.schema import ColumnSpec, InputSchema, batch_from_columns

KEY = "operating-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass
class Served:
    """An in-process serving app with its log stream."""

    app: ServingApp
    out: io.BytesIO
    x: Any
    estimator: Any

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(send())

    def events(self, name: str) -> list[dict[str, Any]]:
        self.app.log_sink.flush()
        lines = [json.loads(line) for line in self.out.getvalue().splitlines()]
        return [line for line in lines if line.get("event") == name]


def iris_loader(estimator: Any, x: Any) -> Callable[..., LoadedModel]:
    schema = InputSchema(columns=tuple(ColumnSpec(c, "double") for c in IRIS_COLUMNS))
    warm = batch_from_columns({c: [float(x[c].iloc[0])] for c in IRIS_COLUMNS}, schema)

    def load(pin: Pin, log: Any = None) -> LoadedModel:
        return sklearn_loaded_model(pin, estimator, schema, warm)

    return load


@dataclass
class LiveServer:
    """The real serving app under uvicorn on a free 127.0.0.1 port, in a thread of this process."""

    base_url: str
    key: str | None
    key_file: Path | None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def live_server(tmp: Path, est: Any, x: Any, *, auth: bool = True) -> Iterator[LiveServer]:
    import threading
    import time

    import uvicorn

    from shipway.serving.server import uvicorn_config

    pin = tmp / "pin.json"
    pin.write_text(json.dumps({"model_name": "iris", "model_version": 3, "tracking_uri": "sqlite:///none"}))
    key_file = tmp / "api-key" if auth else None
    if key_file is not None:
        key_file.write_text(KEY + "\n")
        key_file.chmod(0o600)
    config = ServingConfig(pin_file=str(pin), port=_free_port(), environment="test", access_log=False,
                           api_key_file=str(key_file) if key_file else None)
    app = ServingApp(config, log_stream=io.BytesIO(), loader=iris_loader(est, x), process_metrics=False)
    server = uvicorn.Server(uvicorn_config(app, config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{config.port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    try:
        yield LiveServer(base, KEY if auth else None, key_file)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
