"""A paced load generator for the promotion benchmark, run as its own process.

``python -m benchmarks.loadgen URL BODY_FILE OUT_JSON --rate 120 --concurrency 8 --max-seconds 600``

wrk is the tool for "as fast as possible"; a promotion needs steady, paced traffic across an
unknown span (two ``pulumi up`` runs) and an exact count of failures, so this sends
``rate`` requests per second from ``concurrency`` keep-alive connections until SIGTERM,
``--max-seconds`` or ``--max-requests``, whichever comes first, then writes a JSON summary.
The API key comes from the ``BENCH_API_KEY`` environment variable, never argv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.stats import percentile


def summarize(outcomes: Counter[str], latencies_ms: list[float], seconds: float,
              first_failures: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON summary: counts by outcome, achieved rate, latency percentiles."""
    total = sum(outcomes.values())
    ok = outcomes.get("200", 0)
    return {
        "requests": total, "ok": ok, "failed": total - ok, "outcomes": dict(outcomes),
        "seconds": seconds, "rps": total / seconds if seconds > 0 else 0.0,
        "p50_ms": percentile(latencies_ms, 50), "p99_ms": percentile(latencies_ms, 99),
        "first_failures": first_failures[:20],
    }


async def _load(args: argparse.Namespace, stop: asyncio.Event) -> dict[str, Any]:
    body = Path(args.body_file).read_bytes()
    headers = {"Content-Type": "application/json"}
    key = os.environ.get("BENCH_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    failures: list[dict[str, Any]] = []
    started = time.perf_counter()
    interval = args.concurrency / args.rate
    budget = [args.max_requests]

    async def worker(client: httpx.AsyncClient, offset: float) -> None:
        next_at = started + offset
        while not stop.is_set() and budget[0] > 0 and time.perf_counter() - started < args.max_seconds:
            budget[0] -= 1
            t0 = time.perf_counter()
            try:
                resp = await client.post(args.url, content=body, headers=headers)
                outcome = str(resp.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            latencies.append((time.perf_counter() - t0) * 1000)
            outcomes[outcome] += 1
            if outcome != "200" and len(failures) < 20:
                failures.append({"t": round(t0 - started, 3), "outcome": outcome})
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
        await asyncio.gather(*(worker(client, i * interval / args.concurrency) for i in range(args.concurrency)))
    return summarize(outcomes, latencies, time.perf_counter() - started, failures)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    p.add_argument("url")
    p.add_argument("body_file")
    p.add_argument("out_json")
    p.add_argument("--rate", type=float, default=120.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--max-requests", type=int, default=200_000)
    args = p.parse_args(argv)
    if not args.url.startswith("http://127.0.0.1:"):
        p.error(f"url {args.url!r}: load only goes to http://127.0.0.1")

    async def go() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await _load(args, stop)

    result = asyncio.run(go())
    Path(args.out_json).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
