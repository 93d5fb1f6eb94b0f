"""Where the time goes, for the goals a run did not meet (cProfile and ``-X importtime``).

py-spy is not available here, so the request path is profiled in-process: the Shipway ASGI
app, configured as deployed, is driven directly with ASGI messages (no uvicorn, no socket)
under cProfile. Comparing its per-request time with the per-request time wrk saw separates
the app's own cost from the server/transport/load-generator share of two shared cores.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import procs


def top_functions(profile: cProfile.Profile, limit: int = 18) -> str:
    """The ``limit`` most expensive functions by cumulative time, as pstats prints them."""
    buf = io.StringIO()
    stats = pstats.Stats(profile, stream=buf)
    stats.strip_dirs().sort_stats("cumulative").print_stats(limit)
    text = buf.getvalue()
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text.rstrip()


def importtime_top(text: str, limit: int = 12) -> list[tuple[str, float]]:
    """Top modules by cumulative import time from ``python -X importtime`` stderr (seconds)."""
    rows = []
    for line in text.splitlines():
        match = re.match(r"import time:\s+\d+\s+\|\s+(\d+)\s+\| (.*)$", line)
        if match:
            rows.append((match.group(2).rstrip(), int(match.group(1)) / 1e6))
    # Nested imports are indented under their importer; only top-level rows add up.
    top_level = [(name, s) for name, s in rows if not name.startswith(" ")]
    return sorted(top_level, key=lambda r: -r[1])[:limit]


# What a Shipway cold start imports: the app, and what load_pinned_model imports lazily.
COLD_START_IMPORTS = ("shipway.serving.server, shipway.serving.app, uvicorn, mlflow, mlflow.artifacts, "
                      "mlflow.models, mlflow.sklearn, sklearn.linear_model")


def import_profile(modules: str = COLD_START_IMPORTS) -> str:
    """Top-level imports of the serving process by cumulative seconds."""
    run = subprocess.run([str(procs.PYTHON), "-X", "importtime", "-c", f"import {modules}"],  # noqa: S603
                         cwd=procs.ROOT, capture_output=True, text=True, timeout=300, check=False)
    rows = importtime_top(run.stderr)
    total = sum(s for _, s in rows)
    lines = [f"{s:8.3f} s  {name}" for name, s in rows]
    return "\n".join([f"`python -X importtime -c 'import {modules}'` (top-level, cumulative):", "```",
                      *lines, f"{total:8.3f} s  (sum of the rows above: top-level imports do not overlap)", "```"])


async def _drive(app: Any, body: bytes, headers: list[tuple[bytes, bytes]], n: int) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for _ in range(n):
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "path": "/invocations", "method": "POST", "headers": headers}
        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"profiled request failed: {sent}")
        sent.clear()


def request_profile(pin_file: Path, api_key_file: Path, otlp_port: int, bodies: dict[int, bytes],
                    n: int, work: Path) -> dict[int, dict[str, Any]]:
    """Per rows: in-process µs per request and the cProfile top list (app as deployed)."""
    from shipway.serving.app import ServingApp
    from shipway.serving.config import ServingConfig

    key = api_key_file.read_text().strip()
    config = ServingConfig(pin_file=str(pin_file), api_key_file=str(api_key_file), environment="bench",
                           request_log=str(work / "profile-requests.jsonl"),
                           otlp_endpoint=f"http://127.0.0.1:{otlp_port}")
    with open(os.devnull, "wb") as sink:
        app = ServingApp(config, log_stream=sink, process_metrics=False)
        app.start()
        try:
            deadline = time.monotonic() + 120
            while app.active_model is None and time.monotonic() < deadline:
                time.sleep(0.05)
            headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode())]
            out: dict[int, dict[str, Any]] = {}
            for rows, body in bodies.items():
                asyncio.run(_drive(app, body, headers, 50))  # warm
                t0 = time.perf_counter()
                asyncio.run(_drive(app, body, headers, n))
                us = (time.perf_counter() - t0) / n * 1e6
                profile = cProfile.Profile()
                profile.enable()
                asyncio.run(_drive(app, body, headers, n))
                profile.disable()
                out[rows] = {"us_per_request": us, "top": top_functions(profile)}
            return out
        finally:
            app.close()


def _startup_in_this_process(pin_file: str) -> str:
    """Phases of a cold start, timed one after the other in this fresh process, then a cProfile of
    the model load itself with its imports already paid (registry lookup, download, unpickle, warm)."""
    import json
    import time as clock

    marks = [("start", clock.perf_counter())]
    from shipway.serving import app as _app  # noqa: F401 - the imports are what is timed

    marks.append(("import shipway.serving.app (+ uvicorn, prometheus, otel)", clock.perf_counter()))
    import mlflow.artifacts  # noqa: F401
    import mlflow.models  # noqa: F401
    from mlflow import MlflowClient  # noqa: F401

    marks.append(("import mlflow (client, artifacts, models)", clock.perf_counter()))
    import sklearn.linear_model  # noqa: F401

    marks.append(("import sklearn.linear_model (unpickling needs it)", clock.perf_counter()))
    from shipway.serving.config import read_pin
    from shipway.serving.model import load_pinned_model

    profile = cProfile.Profile()
    profile.enable()
    model = load_pinned_model(read_pin(pin_file), log=lambda *a, **k: None)
    profile.disable()
    marks.append(("load_pinned_model with imports paid (under cProfile)", clock.perf_counter()))
    model.discard()
    phases = [(name, round(t - marks[i][1], 3)) for i, (name, t) in enumerate(marks[1:])]
    return json.dumps({"phases": phases, "top": top_functions(profile, 20)})


def startup_profile(pin_file: Path) -> dict[str, Any]:
    """Cold-start phases and the load's cProfile, from a fresh process (see above)."""
    import json

    run = subprocess.run([str(procs.PYTHON), "-m", "benchmarks.profiles", str(pin_file)],  # noqa: S603
                         cwd=procs.ROOT, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode != 0 or not lines:
        raise RuntimeError(run.stderr[-1500:])
    return json.loads(lines[-1])


def safe(fn: Callable[[], Any], notes: list[str], what: str) -> Any:
    """Run a profile; a failing profile is a note, never a failed benchmark."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - profiles are best effort
        notes.append(f"profile {what} failed: {type(exc).__name__}: {exc}")
        return None


if __name__ == "__main__":
    import sys

    print(_startup_in_this_process(sys.argv[1]))
