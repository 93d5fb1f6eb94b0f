"""``python -m benchmarks.run [--quick] [--only serving,drift,...]``: every benchmark -> RESULTS.md.

Writes ``benchmarks/RESULTS.md`` and the raw samples to ``benchmarks/results/raw.json``
(gitignored, with the server logs) so a report can be re-rendered with ``--render-only``.
Load only goes to 127.0.0.1, every load run is bounded in time and requests, and every
process started here is stopped by PID before the step returns.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import procs
from benchmarks.report import render

SECTIONS = ("serving", "cli", "drift", "promotion", "engine")
RESULTS_MD = procs.ROOT / "benchmarks" / "RESULTS.md"
RAW_JSON = procs.RESULTS_DIR / "raw.json"


def log(message: str) -> None:
    """Progress on stderr with a UTC timestamp (runs take minutes)."""
    sys.stderr.write(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def versions() -> dict[str, str]:
    """Versions of everything compared, read from the tools themselves."""
    from benchmarks.drift import EVIDENTLY_VENV

    py = str(procs.PYTHON)

    def mod(name: str, python: str = py) -> str:
        return procs.command_output([python, "-c", f"import {name}; print({name}.__version__)"])

    return {
        "python": procs.command_output([py, "--version"]).removeprefix("Python "),
        "pulumi CLI": procs.command_output([str(_pulumi()), "version"]),
        "pulumi (Python SDK)": procs.command_output(
            [py, "-c", "import importlib.metadata as m; print(m.version('pulumi'))"]),
        "mlflow": mod("mlflow"),
        "scikit-learn": mod("sklearn"),
        "pandas (project)": mod("pandas"),
        "numpy": mod("numpy"),
        "evidently": mod("evidently", str(EVIDENTLY_VENV / "bin" / "python")),
        "pandas (evidently venv)": mod("pandas", str(EVIDENTLY_VENV / "bin" / "python")),
        "uvicorn": mod("uvicorn"),
        "wrk": procs.command_output(["/usr/bin/wrk", "-v"]).split(" [")[0],
    }


def _pulumi() -> Path:
    from shipway import engine

    return engine.pulumi_binary(procs.ROOT)


def _run_section(name: str, quick: bool, reps: int, seconds: float) -> Any:
    if name == "serving":
        from benchmarks import serving

        plan = serving.ServingPlan(rounds=reps, seconds=seconds, warmup_seconds=1.0 if quick else 2.0)
        return serving.run(plan, log)
    if name == "cli":
        from benchmarks import cli_startup

        return cli_startup.run(max(reps, 3), log)
    if name == "drift":
        from benchmarks import drift

        return drift.run(20_000 if quick else 100_000, reps, log)
    if name == "promotion":
        from benchmarks import promotion

        return promotion.run(reps, rate=120.0, progress=log)
    from benchmarks import engine

    return engine.run(scales=(1, 10, 25, 50) if not quick else (1, 10), repetitions=reps,
                      prod_envs=3, prod_repetitions=1, suite=not quick, progress=log)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer, shorter runs (a smoke check of the harness)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--repetitions", type=int, help="runs per measurement (default 3, quick 1)")
    p.add_argument("--seconds", type=float, help="seconds per serving load cell (default 10, quick 4)")
    p.add_argument("--merge", action="store_true",
                   help="keep the other sections of results/raw.json (run sections one at a time, render all)")
    p.add_argument("--render-only", action="store_true", help="re-render RESULTS.md from results/raw.json")
    args = p.parse_args(argv)
    if args.render_only:
        RESULTS_MD.write_text(render(json.loads(RAW_JSON.read_text())))
        return 0
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        p.error(f"--only: {', '.join(unknown)} not valid; allowed: {', '.join(SECTIONS)}")
    reps = args.repetitions or (1 if args.quick else 3)
    procs.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    # Server logs hold a JSON line per request (hundreds of MB per run): keep only this run's.
    shutil.rmtree(procs.RESULTS_DIR / "logs", ignore_errors=True)
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    doc: dict[str, Any] = json.loads(RAW_JSON.read_text()) if args.merge and RAW_JSON.exists() else {}
    doc.update({"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
                "repetitions": reps, "machine": procs.machine()})
    started = time.perf_counter()
    for name in SECTIONS:
        if name not in only:
            continue
        log(f"== {name}")
        result = _run_section(name, args.quick, reps, seconds)
        doc[name] = asdict(result)
        doc[name]["machine_load_at_start"] = procs.machine().get("load_avg")
        if name == "serving":
            doc[name]["seconds"] = seconds
        RAW_JSON.write_text(json.dumps(doc, indent=1, default=str))
    doc["setup_times"] = json.loads((procs.ROOT / "benchmarks" / "setup_times.json").read_text())
    doc["versions"] = versions()
    doc["total_seconds"] = time.perf_counter() - started + (doc.get("total_seconds", 0) if args.merge else 0)
    RAW_JSON.write_text(json.dumps(doc, indent=1, default=str))
    RESULTS_MD.write_text(render(doc))
    log(f"wrote {RESULTS_MD} in {doc['total_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
