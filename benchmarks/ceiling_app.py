"""The serving ceiling: a pickled estimator's ``predict`` behind the thinnest HTTP server.

``python -m benchmarks.ceiling_app MODEL.pkl PORT``: a bare ASGI callable under uvicorn
(httptools + uvloop, one worker, no access log: the server Shipway runs on). ``POST`` any path
with an MLflow ``dataframe_split`` body whose columns are already in the model's order ->
``{"predictions": [...]}``. No validation, auth, metrics, logs or traces: what a hand-written
app calling ``estimator.predict`` on a numpy array costs, the practical upper bound for a
Python model server on this machine.
"""

from __future__ import annotations

import json
import pickle  # noqa: S403 - the benchmark reads the estimator it pickled itself
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def make_app(estimator: Any) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    """The ASGI app around ``estimator``."""
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    predict = estimator.predict
    headers = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        rows = json.loads(body)["dataframe_split"]["data"]
        out = json.dumps({"predictions": predict(np.asarray(rows, dtype=np.float64)).tolist()}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return app


def main(argv: list[str]) -> None:
    import uvicorn

    with open(argv[0], "rb") as f:
        estimator = pickle.load(f)  # noqa: S301 - see the import
    uvicorn.run(make_app(estimator), host="127.0.0.1", port=int(argv[1]), http="httptools", loop="uvloop",
                lifespan="off", access_log=False, log_level="warning", workers=1, server_header=False,
                date_header=False)


if __name__ == "__main__":
    main(sys.argv[1:])
