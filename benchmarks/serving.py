"""Serving: ``mlflow models serve --env-manager local`` vs Shipway's endpoint, same model, same payloads.

Per round (rounds interleave the servers, so a burst of noise on this shared machine hits
both): start the server and time process start -> first 200 on ``/invocations`` (cold
start), warm it up, run wrk at each (rows, connections) cell for a bounded time, read the
RSS of its process tree, stop it by PID.

Variants: ``mlflow`` (the reference), ``shipway`` (as deployed: API key, JSON log lines,
Prometheus metrics, spans exported over OTLP to a local sink, request log),
``shipway-min`` (no OTLP export, no request log) and ``shipway-off`` (instrumentation off:
also ``--no-metrics --no-access-log``), the baseline of the overhead
``1 - rps(shipway) / rps(shipway-off)``.

A realistic model beside iris (issue 23): a seeded gradient-boosted tree classifier
(sklearn ``GradientBoostingClassifier``, 100 trees of depth 3) on 20 numeric features,
served by ``gbt-mlflow`` (``mlflow models serve``), ``gbt-shipway`` (Shipway as deployed)
and ``gbt-ceiling`` (:mod:`benchmarks.ceiling_app`: the same estimator's ``predict`` on a
numpy array behind a bare ASGI app on the same uvicorn, the practical ceiling).
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import procs, wrk

MODEL = "iris-classifier"
VARIANTS = ("mlflow", "shipway", "shipway-min", "shipway-off")
GBT_MODEL = "bench-gbt20"
GBT_FEATURES = 20
GBT_VARIANTS = ("gbt-mlflow", "gbt-shipway", "gbt-ceiling")


@dataclass
class ServingPlan:
    """What to run: rounds, seconds per cell, rows and connection counts."""

    rounds: int = 3
    seconds: float = 10.0
    warmup_seconds: float = 2.0
    rows: tuple[int, ...] = (1, 100)
    connections: tuple[int, ...] = (8, 32)
    max_requests_per_thread: int = 100_000
    profile: bool = True
    gbt: bool = True


@dataclass
class ServingResults:
    """Raw samples per variant; RESULTS.md shows their medians."""

    load: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    cold_start_s: dict[str, list[float]] = field(default_factory=dict)
    rss_mb: dict[str, list[float]] = field(default_factory=dict)
    # Shipway only, from its own JSON log: seconds to "server process started" (interpreter +
    # imports), then to "model_loaded" (registry lookup, download, load, warm-up).
    cold_breakdown: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    spans_exported: int | None = None
    profiles: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_load(self, variant: str, rows: int, connections: int, result: wrk.LoadResult) -> None:
        cell = self.load.setdefault(variant, {}).setdefault(cell_key(rows, connections), [])
        cell.append({**asdict(result), "rps": result.rps})


def cell_key(rows: int, connections: int) -> str:
    """``"1r-c8"``: the key of one (rows, connections) cell."""
    return f"{rows}r-c{connections}"


def payload(rows: int) -> bytes:
    """An MLflow ``dataframe_split`` body with ``rows`` golden rows (cycled past the 45 there are)."""
    from shipway.example import load_data

    _, golden, _, _ = load_data()
    data = golden.to_numpy().tolist()
    body = {"dataframe_split": {"columns": list(golden.columns),
                                "data": [data[i % len(data)] for i in range(rows)]}}
    return json.dumps(body).encode()


def gbt_data(seed: int = 7) -> tuple[Any, Any]:
    """Seeded 20-feature binary classification data (``f00``..``f19``) and labels."""
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=4000, n_features=GBT_FEATURES, n_informative=12, n_redundant=4,
                               random_state=seed)
    return pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(GBT_FEATURES)]), y


def gbt_payload(rows: int) -> bytes:
    """A ``dataframe_split`` body of ``rows`` rows of the GBT data (cycled)."""
    x, _ = gbt_data()
    data = x.head(500).to_numpy().tolist()
    body = {"dataframe_split": {"columns": list(x.columns), "data": [data[i % len(data)] for i in range(rows)]}}
    return json.dumps(body).encode()


def register_gbt(tracking_uri: str, work: Path) -> int:
    """Train the seeded GBT, register it (skops, as the example model) and pickle the same
    estimator for the ceiling app; its version."""
    import pickle

    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.ensemble import GradientBoostingClassifier
    from skops.io import dumps, get_untrusted_types

    from shipway.registry import mlflow_uris

    x, y = gbt_data()
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=7).fit(x, y)
    (work / "gbt.pkl").write_bytes(pickle.dumps(model))
    with mlflow_uris(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        experiment_id = client.create_experiment("bench-gbt", artifact_location=f"file://{work / 'artifacts'}/gbt")
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(x, model.predict(x)),
                                            input_example=x.head(3),
                                            skops_trusted_types=get_untrusted_types(data=dumps(model)))
            mv = mlflow.register_model(info.model_uri, GBT_MODEL)
    return int(mv.version)


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


def cold_phases(log_text: str, wall_started: float) -> dict[str, float] | None:
    """Split a Shipway cold start using its JSON log: process start -> server started -> model loaded."""
    server_at = loaded_at = None
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if server_at is None and str(doc.get("message", "")).startswith("Started server process"):
            server_at = _ts(doc["ts"])
        if doc.get("event") == "model_loaded":
            loaded_at = _ts(doc["ts"])
            break
    if server_at is None or loaded_at is None:
        return None
    return {"to_server_started_s": server_at - wall_started, "to_model_loaded_s": loaded_at - wall_started}


def start_registry(work: Path, logs: Path) -> tuple[procs.Proc, str]:
    """An MLflow tracking server on 127.0.0.1, configured like the local stack's (sqlite + file
    artifacts, ``--no-serve-artifacts``), so both servers resolve the model over HTTP as deployed."""
    port = procs.free_port()
    argv = [str(procs.PYTHON), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
            "--default-artifact-root", f"file://{work / 'artifacts'}", "--no-serve-artifacts", "--workers", "1"]
    proc = procs.start(argv, logs / "mlflow-tracking.log", env=_mlflow_env(""), cwd=work)
    uri = f"http://127.0.0.1:{port}"
    procs.wait_for_200(proc, "GET", uri + "/health", timeout=180, interval=0.25)
    return proc, uri


def register_model(tracking_uri: str, work: Path) -> int:
    """Train + register the example model in the throwaway registry; its version."""
    from shipway.example import train_and_register

    return train_and_register(tracking_uri, variant="baseline", artifact_root=f"file://{work / 'artifacts'}").version


@dataclass
class _Env:
    work: Path
    tracking_uri: str
    version: int
    api_key: str
    otlp_port: int
    logs: Path
    gbt_version: int = 0


def _launch(variant: str, env: _Env, port: int) -> procs.Proc:
    log = env.logs / f"{variant}-{port}.log"
    gbt = variant.startswith("gbt-")
    model, version = (GBT_MODEL, env.gbt_version) if gbt else (MODEL, env.version)
    variant = variant.removeprefix("gbt-")
    if variant == "ceiling":
        return procs.start([str(procs.PYTHON), "-m", "benchmarks.ceiling_app", str(env.work / "gbt.pkl"), str(port)],
                           log, cwd=procs.ROOT)
    if variant == "mlflow":
        argv = [str(procs.ROOT / ".venv" / "bin" / "mlflow"), "models", "serve", "-m",
                f"models:/{model}/{version}", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        return procs.start(argv, log, env=_mlflow_env(env.tracking_uri))
    pin = env.work / f"pin-{model}.json"
    pin.write_text(json.dumps({"model_name": model, "model_version": version, "tracking_uri": env.tracking_uri}))
    argv = [str(procs.PYTHON), "-m", "shipway.serving", "--pin-file", str(pin), "--host", "127.0.0.1",
            "--port", str(port), "--api-key-file", str(env.work / "api-key"), "--environment", "bench"]
    if variant == "shipway":
        argv += ["--request-log", str(env.work / f"requests-{port}.jsonl"),
                 "--otlp-endpoint", f"http://127.0.0.1:{env.otlp_port}"]
    elif variant == "shipway-off":
        argv += ["--no-metrics", "--no-access-log"]
    return procs.start(argv, log, cwd=procs.ROOT)


def _mlflow_env(tracking_uri: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PULUMI_"))}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    # mlflow execs `uvicorn` by name: the venv's bin must come first on PATH.
    env["PATH"] = f"{procs.ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _headers(variant: str, api_key: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if variant.removeprefix("gbt-") not in ("mlflow", "ceiling"):
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _round(variant: str, env: _Env, plan: ServingPlan, bodies: dict[int, bytes], out: ServingResults,
           progress: Callable[[str], None]) -> None:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}/invocations"
    headers = _headers(variant, env.api_key)
    proc = _launch(variant, env, port)
    try:
        cold = procs.wait_for_200(proc, "POST", url, bodies[1], headers, timeout=180)
        out.cold_start_s.setdefault(variant, []).append(cold)
        progress(f"serving {variant}: cold start {cold:.2f}s")
        scripts = {}
        for rows, body in bodies.items():
            script = env.work / f"{variant}-{rows}.lua"
            script.write_text(wrk.lua_script(body, headers, plan.max_requests_per_thread))
            scripts[rows] = script
        wrk.run(url, scripts[1], connections=8, seconds=plan.warmup_seconds)
        for rows in plan.rows:
            for conns in plan.connections:
                result = wrk.run(url, scripts[rows], connections=conns, seconds=plan.seconds)
                out.add_load(variant, rows, conns, result)
                progress(f"serving {variant} {rows} rows c{conns}: {result.rps:.0f} rps "
                         f"p50 {result.p50_ms:.1f} ms p99 {result.p99_ms:.1f} ms errors {result.errors}")
        rss = procs.rss_mb(proc.pid)
        if rss is not None:
            out.rss_mb.setdefault(variant, []).append(rss)
        # Read after the load: the app flushes its log lines asynchronously.
        if variant.removeprefix("gbt-") not in ("mlflow", "ceiling"):
            phases = cold_phases(proc.log.read_text(errors="replace"), proc.wall_started)
            if phases:
                out.cold_breakdown.setdefault(variant, []).append(phases)
    finally:
        procs.stop(proc)


def _profile(env: _Env, bodies: dict[int, bytes], gbt_bodies: dict[int, bytes], out: ServingResults,
             progress: Callable[[str], None]) -> None:
    """cProfile of the request path and of a cold start, and import times (see benchmarks.profiles)."""
    from benchmarks import profiles

    progress("serving: profiling the request path and the cold start")
    pin = env.work / f"pin-{MODEL}.json"
    requests = profiles.safe(lambda: profiles.request_profile(pin, env.work / "api-key", env.otlp_port, bodies,
                                                              2000, env.work), out.notes, "requests")
    if requests:
        out.profiles["requests"] = {str(k): v for k, v in requests.items()}
    gbt_pin = env.work / f"pin-{GBT_MODEL}.json"
    if env.gbt_version and gbt_pin.exists():
        # The realistic model's request path (issue 23's ceiling goal), same harness.
        gbt = profiles.safe(lambda: profiles.request_profile(gbt_pin, env.work / "api-key", env.otlp_port,
                                                             gbt_bodies, 2000, env.work), out.notes, "requests_gbt")
        if gbt:
            out.profiles["requests_gbt"] = {str(k): v for k, v in gbt.items()}
        ceiling = profiles.safe(lambda: _ceiling_in_process(env.work / "gbt.pkl", gbt_bodies, 2000), out.notes,
                                "ceiling_gbt")
        if ceiling:
            out.profiles["ceiling_gbt_us"] = {str(k): v for k, v in ceiling.items()}
    out.profiles["startup"] = profiles.safe(lambda: profiles.startup_profile(pin), out.notes, "startup")
    out.profiles["imports"] = profiles.safe(profiles.import_profile, out.notes, "imports")


def _ceiling_in_process(model_pkl: Path, bodies: dict[int, bytes], n: int) -> dict[int, float]:
    """Per rows: the ceiling app's µs per request driven in-process like the Shipway profile."""
    import asyncio
    import pickle  # noqa: S403 - the estimator this benchmark pickled itself

    from benchmarks.ceiling_app import make_app
    from benchmarks.profiles import _drive

    app = make_app(pickle.loads(model_pkl.read_bytes()))  # noqa: S301 - see the import
    headers = [(b"content-type", b"application/json")]
    out: dict[int, float] = {}
    for rows, body in bodies.items():
        asyncio.run(_drive(app, body, headers, 50))  # warm
        t0 = time.perf_counter()
        asyncio.run(_drive(app, body, headers, n))
        out[rows] = (time.perf_counter() - t0) / n * 1e6
    return out


def run(plan: ServingPlan, progress: Callable[[str], None] = print) -> ServingResults:
    """Run every round of every variant; servers and the OTLP sink are stopped whatever happens."""
    out = ServingResults()
    with tempfile.TemporaryDirectory(prefix="shipway-bench-serving-") as tmp:
        work = Path(tmp)
        logs = procs.log_dir("serving")
        key = secrets.token_urlsafe(24)
        key_file = work / "api-key"
        key_file.write_text(key)
        key_file.chmod(0o600)
        bodies = {rows: payload(rows) for rows in sorted({1, *plan.rows})}
        gbt_bodies = {rows: gbt_payload(rows) for rows in sorted({1, *plan.rows})}
        sink_port = procs.free_port()
        registry: procs.Proc | None = None
        sink = procs.start([str(procs.PYTHON), "-m", "benchmarks.otlp_sink", str(sink_port)],
                           logs / "otlp-sink.log", cwd=procs.ROOT)
        try:
            progress("serving: starting a throwaway MLflow registry and registering the example model")
            registry, uri = start_registry(work, logs)
            env = _Env(work, uri, register_model(uri, work), key, sink_port, logs)
            if plan.gbt:
                env.gbt_version = register_gbt(uri, work)
            variants = VARIANTS + (GBT_VARIANTS if plan.gbt else ())
            for r in range(plan.rounds):
                for variant in variants:
                    progress(f"serving: round {r + 1}/{plan.rounds}, {variant}")
                    try:
                        _round(variant, env, plan, gbt_bodies if variant.startswith("gbt-") else bodies, out,
                               progress)
                    except (RuntimeError, ValueError, OSError) as exc:
                        out.notes.append(f"round {r + 1} {variant} failed: {exc}")
                        progress(f"serving {variant} failed: {exc}")
            time.sleep(0.5)
            status, body = procs.http("GET", f"http://127.0.0.1:{sink_port}/")
            out.spans_exported = int(body) if status == 200 else None
            if plan.profile:
                _profile(env, bodies, gbt_bodies, out, progress)
        finally:
            procs.stop(sink)
            procs.stop(registry)
    return out
