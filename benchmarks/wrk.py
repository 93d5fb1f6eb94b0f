"""Load from Debian's ``wrk``: a Lua script for the POST body, a JSON summary line back.

wrk runs in its own process (C, two threads), so the load generator does not share an
interpreter with either server. Each run is bounded by ``-d`` seconds and, through the
script's ``response`` hook, by a per-thread request cap.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WRK = "/usr/bin/wrk"
MARKER = "BENCH_JSON "

_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def lua_script(body: bytes, headers: Mapping[str, str], max_requests_per_thread: int) -> str:
    """The wrk script: POST ``body`` with ``headers``; each thread stops after its request cap."""
    text = body.decode()
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    lines = ['wrk.method = "POST"', f"wrk.body = [{eq}[{text}]{eq}]"]
    for name, value in headers.items():
        if '"' in name or '"' in value or "\\" in value:
            raise ValueError(f"header {name!r}: value {value!r} is not valid; no quotes or backslashes")
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    lines += [
        "local count = 0",
        "response = function(status, headers, body)",
        "  count = count + 1",
        f"  if count >= {int(max_requests_per_thread)} then wrk.thread:stop() end",
        "end",
    ]
    return "\n".join(lines) + "\n" + _DONE


@dataclass(frozen=True)
class LoadResult:
    """One wrk run."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        """Successful requests per second (errors do not count as throughput)."""
        return (self.requests - self.errors) / self.seconds if self.seconds > 0 else 0.0


def parse_output(stdout: str) -> LoadResult:
    """The summary the script's ``done`` hook printed; raises if wrk printed none."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            doc = json.loads(line[len(MARKER):])
            errors = sum(int(doc[k]) for k in ("connect", "read", "write", "status", "timeout"))
            return LoadResult(
                requests=int(doc["requests"]), seconds=int(doc["duration_us"]) / 1e6, errors=errors,
                p50_ms=doc["p50_us"] / 1000, p90_ms=doc["p90_us"] / 1000, p99_ms=doc["p99_us"] / 1000,
                max_ms=doc["max_us"] / 1000,
            )
    raise ValueError(f"wrk printed no {MARKER.strip()} summary line; output was: {stdout[-500:]!r}")


def run(url: str, script: Path, *, connections: int, seconds: float, threads: int = 2,
        timeout_s: float = 5.0) -> LoadResult:
    """Run wrk against a loopback URL for ``seconds`` (bounded; killed if it overruns)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"url: {url!r} is not valid; load only goes to http://127.0.0.1")
    argv = [WRK, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            f"--timeout={timeout_s:g}s", "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)  # noqa: S603
    return parse_output(out.stdout)
