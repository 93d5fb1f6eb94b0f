"""The serving ceiling app and the CLI start-up parser of the benchmarks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np

from benchmarks.ceiling_app import make_app
from benchmarks.cli_startup import top_level_import_ms


class Doubler:
    def predict(self, x: np.ndarray) -> np.ndarray:
        assert x.dtype == np.float64
        return x.sum(axis=1) * 2


def _call(app: Any, body: bytes, chunks: int = 1) -> tuple[int, dict[str, Any]]:
    size = max(1, len(body) // chunks + 1)
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "POST", "path": "/invocations"}, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_ceiling_app_predicts_on_the_rows_of_a_dataframe_split_body():
    body = json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3.5, 0.5]]}}).encode()
    assert _call(make_app(Doubler()), body) == (200, {"predictions": [6.0, 8.0]})
    assert _call(make_app(Doubler()), body, chunks=3) == (200, {"predictions": [6.0, 8.0]})


def test_top_level_import_ms_sums_only_depth_zero_modules():
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |        100 |   encodings.utf_8",
        "import time:       200 |       1200 | encodings",
        "import time:        50 |       3000 | shipway.cli",
        "import time:        10 |         10 |     typer.core",
        "some other stderr line",
    ])
    assert top_level_import_ms(stderr) == 4.2
