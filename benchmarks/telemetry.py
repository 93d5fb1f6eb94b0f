"""Serving throughput with vs without the collector pipeline, as a ratio in the same run.

``python -m benchmarks.telemetry [--rounds N] [--seconds S]``

Variants, interleaved per round so a burst of noise on this shared machine hits both:

- ``direct``: the serving app as before issue 24: spans over OTLP/HTTP straight to a
  do-nothing trace sink (``benchmarks.otlp_sink``), JSON log lines to a file nobody reads;
- ``collector``: the same app exporting spans to the built OpenTelemetry Collector
  (``otelcol-shipway``, config from ``shipway_core.observability.collector``), which forwards
  them to the same sink and tails the app's log file into a real VictoriaLogs.

The collector and VictoriaLogs run on the same 2 cores as the app and wrk, so the ratio
``rps(collector) / rps(direct)`` includes the CPU they take. At the end the log records that
reached VictoriaLogs are counted, to show the pipeline did the work.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import procs, wrk
from benchmarks.serving import MODEL, payload, register_model, start_registry
from shipway_core.observability.collector import CollectorSpec, LogSource, collector_config, render_yaml

BIN = procs.ROOT / ".shipway" / "tools" / "bin"
VARIANTS = ("direct", "collector")


def _serve(work: Path, log: Path, port: int, version: int, tracking_uri: str, otlp_port: int) -> procs.Proc:
    pin = work / "pin.json"
    pin.write_text(json.dumps({"model_name": MODEL, "model_version": version, "tracking_uri": tracking_uri}))
    argv = [str(procs.PYTHON), "-m", "shipway.serving", "--pin-file", str(pin), "--host", "127.0.0.1",
            "--port", str(port), "--api-key-file", str(work / "api-key"), "--environment", "bench",
            "--otlp-endpoint", f"http://127.0.0.1:{otlp_port}"]
    return procs.start(argv, log, cwd=procs.ROOT)


def run(rounds: int = 3, seconds: float = 10.0, connections: int = 8) -> dict[str, Any]:
    """Every round of both variants; every process started here is stopped whatever happens."""
    out: dict[str, Any] = {"rps": {v: [] for v in VARIANTS}, "p99_ms": {v: [] for v in VARIANTS},
                           "errors": {v: 0 for v in VARIANTS}, "connections": connections, "seconds": seconds}
    started: list[procs.Proc] = []
    with tempfile.TemporaryDirectory(prefix="shipway-bench-telemetry-") as tmp:
        work = Path(tmp)
        logs = procs.log_dir("telemetry")
        key = secrets.token_urlsafe(24)
        (work / "api-key").write_text(key)
        (work / "api-key").chmod(0o600)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        script = work / "one-row.lua"
        script.write_text(wrk.lua_script(payload(1), headers, 100_000))
        try:
            sink_port, store_port, grpc, http, metrics = (procs.free_port() for _ in range(5))
            started.append(procs.start([str(procs.PYTHON), "-m", "benchmarks.otlp_sink", str(sink_port)],
                                       logs / "otlp-sink.log", cwd=procs.ROOT))
            store = procs.start([str(BIN / "victoria-logs"), f"-httpListenAddr=127.0.0.1:{store_port}",
                                 f"-storageDataPath={work / 'vl'}", "-retentionPeriod=1d"], logs / "vl.log")
            started.append(store)
            procs.wait_for_200(store, "GET", f"http://127.0.0.1:{store_port}/health", timeout=60)
            tailed = work / "tailed"
            tailed.mkdir()
            (work / "storage").mkdir()
            config = collector_config(CollectorSpec(
                host="127.0.0.1", otlp_grpc_port=grpc, otlp_http_port=http, metrics_port=metrics,
                traces_endpoint=f"http://127.0.0.1:{sink_port}", log_store_url=f"http://127.0.0.1:{store_port}",
                log_sources=(LogSource("shipway-serving", str(tailed / "*.log")),), storage_dir=str(work / "storage")))
            (work / "collector.yml").write_text(render_yaml(config))
            collector = procs.start([str(BIN / "otelcol-shipway"), f"--config=file:{work / 'collector.yml'}"],
                                    logs / "otelcol.log")
            started.append(collector)
            procs.wait_for_200(collector, "GET", f"http://127.0.0.1:{metrics}/metrics", timeout=60)
            registry, uri = start_registry(work, logs)
            started.append(registry)
            version = register_model(uri, work)
            for r in range(rounds):
                for variant in VARIANTS:
                    port = procs.free_port()
                    log = (tailed if variant == "collector" else logs) / f"{variant}-{port}.log"
                    app = _serve(work, log, port, version, uri, http if variant == "collector" else sink_port)
                    try:
                        url = f"http://127.0.0.1:{port}/invocations"
                        procs.wait_for_200(app, "POST", url, payload(1), headers, timeout=180)
                        wrk.run(url, script, connections=connections, seconds=2.0)
                        result = wrk.run(url, script, connections=connections, seconds=seconds)
                    finally:
                        procs.stop(app)
                    out["rps"][variant].append(result.rps)
                    out["p99_ms"][variant].append(result.p99_ms)
                    out["errors"][variant] += result.errors
                    print(f"round {r + 1} {variant}: {result.rps:.0f} rps p99 {result.p99_ms:.1f} ms", flush=True)
            time.sleep(5)  # the last batches reach the store
            status, body = procs.http("GET", f"http://127.0.0.1:{store_port}/select/logsql/query?query="
                                      "service.name:shipway-serving%20%7C%20stats%20count()%20as%20n", timeout=30)
            out["log_records_stored"] = int(json.loads(body.splitlines()[0])["n"]) if status == 200 and body else None
        finally:
            for proc in reversed(started):
                procs.stop(proc)
    med = {v: statistics.median(out["rps"][v]) for v in VARIANTS}
    out["median_rps"] = med
    out["ratio_collector_over_direct"] = med["collector"] / med["direct"] if med["direct"] else None
    # Paired per round (the two variants ran back to back): less exposed to a noisy neighbour.
    out["round_ratios"] = [c / d for c, d in zip(out["rps"]["collector"], out["rps"]["direct"], strict=True) if d]
    out["median_round_ratio"] = statistics.median(out["round_ratios"]) if out["round_ratios"] else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.telemetry", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=8)
    a = p.parse_args(argv)
    result = run(a.rounds, a.seconds, a.connections)
    out = procs.RESULTS_DIR / "telemetry.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("median_rps", "ratio_collector_over_direct", "round_ratios",
                                             "median_round_ratio", "log_records_stored", "errors")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
