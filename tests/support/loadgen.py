"""A bounded HTTP load generator in its own process (127.0.0.1 only).

    python -m tests.support.loadgen URL --key-file F --concurrency 8 --max-seconds 300 --stop-file S

Sends 1-row scoring requests until the stop file appears (or the time bound), then prints
one JSON line: requests, failures by kind, rps and the versions that answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import httpx


async def worker(client: httpx.AsyncClient, url: str, payload: dict, stop: Path, deadline: float,
                 counts: Counter[str]) -> None:
    while time.monotonic() < deadline and not stop.exists():
        try:
            resp = await client.post(url, json=payload)
            counts["ok" if resp.status_code == 200 else f"http_{resp.status_code}"] += 1
        except httpx.HTTPError as exc:
            counts[type(exc).__name__] += 1


async def main(args: argparse.Namespace) -> dict:
    if not args.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise SystemExit("loadgen only targets 127.0.0.1")
    payload = {"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                                   "data": [[5.1, 3.5, 1.4, 0.2]]}}
    headers = {"Authorization": f"Bearer {Path(args.key_file).read_text().strip()}"}
    counts: Counter[str] = Counter()
    start = time.monotonic()
    deadline = start + args.max_seconds
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(headers=headers, timeout=args.timeout, limits=limits) as client:
        await asyncio.gather(*(worker(client, args.url + "/invocations", payload, Path(args.stop_file), deadline,
                                      counts) for _ in range(args.concurrency)))
    elapsed = time.monotonic() - start
    total = sum(counts.values())
    return {"requests": total, "ok": counts["ok"], "failed": total - counts["ok"],
            "failures": {k: v for k, v in counts.items() if k != "ok"}, "seconds": round(elapsed, 2),
            "rps": round(total / elapsed, 1) if elapsed else 0.0}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--timeout", type=float, default=10)
    parser.add_argument("--stop-file", required=True)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
    sys.stdout.flush()
