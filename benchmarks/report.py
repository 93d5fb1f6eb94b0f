"""RESULTS.md from the raw samples of one run (a plain dict, also saved as results/raw.json).

Pure: takes the dict, returns Markdown, so the goal arithmetic is unit-tested and a report
can be re-rendered from ``benchmarks/results/raw.json`` without re-running anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.drift import N_CATEGORICAL, N_NUMERIC
from benchmarks.stats import Goal, fmt, fmt_ratio, median, ratio, table, verdict

REFERENCE = "mlflow"
SHIPWAY = "shipway"
MINIMAL = "shipway-min"
OFF = "shipway-off"
GBT_REFERENCE, GBT_SHIPWAY, GBT_CEILING = "gbt-mlflow", "gbt-shipway", "gbt-ceiling"

GOALS = {
    "rps_1": Goal("serving rps at 1 row vs MLflow", 5.0, at_least=True),
    "p99_1": Goal("serving p99 at 1 row vs MLflow", 0.25, at_least=False),
    "rps_100": Goal("serving rps at 100 rows vs MLflow", 4.0, at_least=True),
    "cold": Goal("serving cold start to first 200", 2.5, at_least=False, unit="s"),
    "gbt_mlflow": Goal("GBT (20 features) serving rps vs MLflow, worst cell", 10.0, at_least=True),
    "gbt_ceiling": Goal("GBT serving rps vs the predict-only ceiling app, worst cell", 0.8, at_least=True),
    "drift_speed": Goal("drift compute speed-up vs Evidently", 30.0, at_least=True),
    "drift_memory": Goal("drift compute peak memory vs Evidently", 0.5, at_least=False),
    "promote": Goal("promote: whole `shipway model promote --apply` (gates + up + verification)", 8.0,
                    at_least=False, unit="s"),
    "promote_serving": Goal("promote: pin to serving", 4.0, at_least=False, unit="s"),
    "rollback": Goal("rollback: whole `shipway model rollback` (up + smoke verification)", 5.0,
                     at_least=False, unit="s"),
    "rollback_serving": Goal("rollback: pin to serving", 2.0, at_least=False, unit="s"),
    "failed": Goal("failed requests across promote + rollback", 0.0, at_least=False, unit="requests"),
}


def cell_median(samples: Sequence[Mapping[str, Any]] | None, key: str) -> float | None:
    """Median of one field over a cell's runs (None for a cell that never ran)."""
    return median(s.get(key) for s in samples or ())


def serving_cells(load: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]) -> list[str]:
    """Cell keys in display order: by rows, then connections (``1r-c8`` < ``1r-c32`` < ``100r-c8``)."""
    keys = {k for cells in load.values() for k in cells}

    def order(key: str) -> tuple[int, int]:
        rows, conns = key.split("r-c")
        return int(rows), int(conns)

    return sorted(keys, key=order)


def serving_ratios(load: Mapping[str, Any], cell: str, ours: str = SHIPWAY,
                   reference: str = REFERENCE) -> dict[str, float | None]:
    """rps ratio (ours/reference: higher is better) and p99 ratio (ours/reference: lower is better)."""
    ref, mine = load.get(reference, {}).get(cell), load.get(ours, {}).get(cell)
    return {"rps": ratio(cell_median(mine, "rps"), cell_median(ref, "rps")),
            "p99": ratio(cell_median(mine, "p99_ms"), cell_median(ref, "p99_ms"))}


def _worst(values: Sequence[float | None], goal: Goal) -> float | None:
    """The value a goal is judged on across cells: the worst one (a goal must hold at every load)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present) if goal.at_least else max(present)


def goal_measurements(doc: Mapping[str, Any]) -> dict[str, float | None]:
    """Measured value per goal id (see GOALS); None where the benchmark did not run."""
    measured: dict[str, float | None] = dict.fromkeys(GOALS)
    serving = doc.get("serving") or {}
    load = serving.get("load") or {}
    cells = serving_cells(load)
    one = [c for c in cells if c.startswith("1r-")]
    hundred = [c for c in cells if c.startswith("100r-")]
    measured["rps_1"] = _worst([serving_ratios(load, c)["rps"] for c in one], GOALS["rps_1"])
    measured["p99_1"] = _worst([serving_ratios(load, c)["p99"] for c in one], GOALS["p99_1"])
    measured["rps_100"] = _worst([serving_ratios(load, c)["rps"] for c in hundred], GOALS["rps_100"])
    measured["cold"] = median((serving.get("cold_start_s") or {}).get(SHIPWAY, []))
    measured["gbt_mlflow"] = _worst([serving_ratios(load, c, GBT_SHIPWAY, GBT_REFERENCE)["rps"] for c in cells],
                                    GOALS["gbt_mlflow"])
    measured["gbt_ceiling"] = _worst([serving_ratios(load, c, GBT_SHIPWAY, GBT_CEILING)["rps"] for c in cells],
                                     GOALS["gbt_ceiling"])
    drift = doc.get("drift") or {}
    samples = drift.get("samples") or {}
    measured["drift_speed"] = ratio(cell_median(samples.get("evidently"), "seconds"),
                                    cell_median(samples.get("shipway"), "seconds"))
    traced = drift.get("traced") or {}
    measured["drift_memory"] = ratio((traced.get("shipway") or {}).get("traced_peak_mb"),
                                     (traced.get("evidently") or {}).get("traced_peak_mb"))
    promo = doc.get("promotion") or {}
    measured["promote"] = median(promo.get("promote_up_s") or [])
    measured["promote_serving"] = median(promo.get("promote_serving_s") or [])
    measured["rollback"] = median(promo.get("rollback_up_s") or [])
    measured["rollback_serving"] = median(promo.get("rollback_serving_s") or [])
    load_doc = promo.get("load") or {}
    measured["failed"] = float(load_doc["failed"]) if "failed" in load_doc else None
    return measured


def _goal_value(goal: Goal, value: float | None) -> str:
    if value is None:
        return "-"
    if goal.unit == "×":
        return fmt_ratio(value)
    return f"{fmt(value)} {goal.unit}"


# Goals judged on the median of several command runs, and the raw promotion field holding the runs.
RUN_GOALS = {"promote": "promote_up_s", "promote_serving": "promote_serving_s",
             "rollback": "rollback_up_s", "rollback_serving": "rollback_serving_s"}


def runs_of(promo: Mapping[str, Any], key: str) -> list[float]:
    """The finite samples of one promotion field, in run order."""
    return [float(v) for v in promo.get(key) or () if v is not None and math.isfinite(float(v))]


def run_spread(goal: Goal, samples: Sequence[float]) -> str:
    """``8.88 s (median of 5; 7.66–12.5)`` for a goal judged on the median of several runs."""
    value = median(samples)
    if value is None:
        return "-"
    if len(samples) == 1:
        return f"{_goal_value(goal, value)} (1 run)"
    return f"{_goal_value(goal, value)} (median of {len(samples)}; {fmt(min(samples))}–{fmt(max(samples))})"


def run_verdict(goal: Goal, samples: Sequence[float]) -> str:
    """The median's verdict, saying how many runs fell on the other side of the target."""
    outcome = goal.met(median(samples))
    target = f"{fmt(goal.target)} {goal.unit}"
    missed = sum(1 for s in samples if not goal.met(s))
    if outcome is True and missed:
        return f"met (median; {missed} of {len(samples)} runs over {target})"
    if outcome is False and missed < len(samples):
        return f"**not met** (median; {len(samples) - missed} of {len(samples)} runs ≤ {target})"
    return verdict(outcome)


def goals_table(doc: Mapping[str, Any]) -> str:
    """Goal, target, measured, verdict."""
    measured = goal_measurements(doc)
    promo = doc.get("promotion") or {}
    rows = []
    for k, g in GOALS.items():
        runs = runs_of(promo, RUN_GOALS[k]) if k in RUN_GOALS else []
        if runs:
            rows.append((g.name, g.describe(), run_spread(g, runs), run_verdict(g, runs)))
        else:
            rows.append((g.name, g.describe(), _goal_value(g, measured[k]), verdict(g.met(measured[k]))))
    return table(["goal", "target", "measured", "verdict"], rows)


def _header(doc: Mapping[str, Any]) -> list[str]:
    m = doc.get("machine") or {}
    v = doc.get("versions") or {}
    load = m.get("load_avg")
    return [
        "# Benchmark results",
        "",
        f"Generated {doc.get('generated_at', '?')} by `python -m benchmarks.run"
        f"{' --quick' if doc.get('quick') else ''}` ({doc.get('repetitions', '?')} runs per measurement; "
        "medians shown). Every number below comes from this one run on this one machine; ratios compare "
        "tools measured side by side in it. See docs/benchmarks.md for method and caveats.",
        "",
        "## Machine",
        "",
        table(["cores", "RAM", "CPU", "kernel", "load average at start (1/5/15 min)"],
              [(m.get("cores"), f"{fmt(m.get('ram_gb'))} GiB", m.get("cpu", "?"), m.get("kernel", "?"),
                " / ".join(fmt(x) for x in load) if load else "-")]),
        "",
        "Load average (1/5/15 min) when each section started: " + (", ".join(
            f"{name} {' / '.join(fmt(x) for x in (doc.get(name) or {}).get('machine_load_at_start') or [])}"
            for name in ("serving", "cli", "drift", "promotion", "engine")
            if (doc.get(name) or {}).get("machine_load_at_start")) or "-") + ".",
        "",
        "## Versions",
        "",
        table(["component", "version"], sorted(v.items())),
        "",
        "## Goals (issues 11 and 23)",
        "",
        goals_table(doc),
        "",
    ]


def _serving(doc: Mapping[str, Any]) -> list[str]:
    serving = doc.get("serving")
    if not serving:
        return ["## Serving", "", "Not run.", ""]
    load = serving.get("load") or {}
    cells = serving_cells(load)
    rows = []
    for variant in (REFERENCE, SHIPWAY, MINIMAL, OFF):
        for cell in cells:
            s = load.get(variant, {}).get(cell)
            if not s:
                continue
            rows.append((variant, cell, len(s), cell_median(s, "rps"), cell_median(s, "p50_ms"),
                         cell_median(s, "p99_ms"), int(sum(x.get("errors", 0) for x in s))))
    ratio_rows = []
    for cell in cells:
        on, off = serving_ratios(load, cell), serving_ratios(load, cell, MINIMAL)
        shipway_rps = cell_median(load.get(SHIPWAY, {}).get(cell), "rps")
        cost = ratio(shipway_rps, cell_median(load.get(MINIMAL, {}).get(cell), "rps"))
        off_ratio = ratio(shipway_rps, cell_median(load.get(OFF, {}).get(cell), "rps"))
        overhead = "n/a" if off_ratio is None else f"{(1 - off_ratio) * 100:.1f} %"
        ratio_rows.append((cell, fmt_ratio(on["rps"]), fmt_ratio(on["p99"]), fmt_ratio(off["rps"]),
                           fmt_ratio(cost), overhead))
    cold, rss = serving.get("cold_start_s") or {}, serving.get("rss_mb") or {}
    start_rows = [(v, len(cold.get(v, [])), median(cold.get(v, [])), median(rss.get(v, [])))
                  for v in (REFERENCE, SHIPWAY, MINIMAL, OFF)]
    return [
        "## Serving: `mlflow models serve --env-manager local` vs Shipway",
        "",
        "Cells are `<rows per request>r-c<connections>`; wrk, 2 threads, 127.0.0.1, "
        f"{fmt(serving.get('seconds'))} s per cell. `shipway` is as deployed (API key, JSON log line per "
        "request, Prometheus metrics, spans exported over OTLP to a local sink, request log); "
        "`shipway-min` has no OTLP export and no request log; `shipway-off` has no instrumentation at all "
        "(also `--no-metrics --no-access-log`). Overhead is `1 - rps(shipway) / rps(shipway-off)` "
        "(budget: ≤ 15 %).",
        "",
        table(["server", "cell", "runs", "rps", "p50 ms", "p99 ms", "errors (all runs)"], rows),
        "",
        table(["cell", "rps vs MLflow", "p99 vs MLflow", "shipway-min rps vs MLflow",
               "shipway rps / shipway-min rps", "instrumentation overhead: 1 - shipway / shipway-off rps"],
              ratio_rows),
        "",
        table(["server", "starts", "cold start to first 200 (s)", "RSS after load (MiB)"], start_rows),
        "",
        f"Spans received by the OTLP sink over the run: {fmt(serving.get('spans_exported'))} export batches.",
        "",
    ] + _cold_breakdown(serving)


def _cold_breakdown(serving: Mapping[str, Any]) -> list[str]:
    phases = serving.get("cold_breakdown") or {}
    rows = [(v, len(p), median(x["to_server_started_s"] for x in p), median(x["to_model_loaded_s"] for x in p))
            for v, p in sorted(phases.items()) if p]
    if not rows:
        return []
    return ["Shipway cold start, split with its own JSON log (seconds after launch):", "",
            table(["server", "starts", "interpreter + imports done (server started)", "model loaded and warm"], rows),
            ""]


def _gbt(doc: Mapping[str, Any]) -> list[str]:
    serving = doc.get("serving") or {}
    load = serving.get("load") or {}
    variants = (GBT_REFERENCE, GBT_SHIPWAY, GBT_CEILING)
    if not any(load.get(v) for v in variants):
        return []
    cells = serving_cells({v: load.get(v, {}) for v in variants})
    rows = [(v, c, len(s), cell_median(s, "rps"), cell_median(s, "p50_ms"), cell_median(s, "p99_ms"),
             int(sum(x.get("errors", 0) for x in s)))
            for v in variants for c in cells if (s := load.get(v, {}).get(c))]
    ratio_rows = []
    for cell in cells:
        vs_mlflow = serving_ratios(load, cell, GBT_SHIPWAY, GBT_REFERENCE)
        vs_ceiling = serving_ratios(load, cell, GBT_SHIPWAY, GBT_CEILING)
        ratio_rows.append((cell, fmt_ratio(vs_mlflow["rps"]), fmt_ratio(vs_mlflow["p99"]),
                           fmt_ratio(vs_ceiling["rps"]), fmt_ratio(vs_ceiling["p99"])))
    cold = serving.get("cold_start_s") or {}
    return [
        "## Serving a realistic model: gradient-boosted trees on 20 features",
        "",
        "sklearn `GradientBoostingClassifier` (100 trees, depth 3, seeded) on 20 numeric features, registered "
        "in the same throwaway MLflow registry. `gbt-mlflow` = `mlflow models serve --env-manager local`; "
        "`gbt-shipway` = Shipway as deployed (API key, JSON logs, metrics, OTLP spans, request log); "
        "`gbt-ceiling` = `benchmarks/ceiling_app.py`: the same estimator's `predict` on a numpy array behind a "
        "bare ASGI callable on the same uvicorn (httptools + uvloop), no validation, auth, logs, metrics or "
        "traces: the practical ceiling of a Python model server here. Same wrk cells as above, interleaved "
        "in the same rounds.",
        "",
        table(["server", "cell", "runs", "rps", "p50 ms", "p99 ms", "errors (all runs)"], rows),
        "",
        table(["cell", "shipway rps vs MLflow", "shipway p99 vs MLflow", "shipway rps vs ceiling",
               "shipway p99 vs ceiling"], ratio_rows),
        "",
        table(["server", "starts", "cold start to first 200 (s)"],
              [(v, len(cold.get(v, [])), median(cold.get(v, []))) for v in variants]),
        "",
    ]


def _cli(doc: Mapping[str, Any]) -> list[str]:
    cli = doc.get("cli")
    if not cli:
        return []
    seconds = cli.get("seconds") or {}
    ref = median(seconds.get("mlflow --help") or [])
    rows = [(name, len(s), median(s), fmt_ratio(ratio(median(s), ref))) for name, s in seconds.items()]
    return [
        "## CLI start-up",
        "",
        "Wall time of a fresh process printing help (interleaved runs after one unmeasured warm-up round). "
        "The root help lists the nouns without importing them; a noun imports its own module when it runs. "
        f"`python -X importtime -m shipway.cli --help`: {fmt(cli.get('import_ms'))} ms of top-level imports.",
        "",
        table(["command", "runs", "seconds (median)", "vs `mlflow --help` (lower is faster)"], rows),
        "",
    ]


def _setup(doc: Mapping[str, Any]) -> list[str]:
    setup = doc.get("setup_times")
    if not setup:
        return []
    return ["## Setup and test times", "", str(setup.get("note", "")), "",
            table(["what", "measured", "where / when"], [(r["what"], r["value"], r["source"])
                                                         for r in setup.get("rows", [])]), ""]


def _drift(doc: Mapping[str, Any]) -> list[str]:
    drift = doc.get("drift")
    if not drift:
        return ["## Drift", "", "Not run.", ""]
    samples, traced = drift.get("samples") or {}, drift.get("traced") or {}
    rows = []
    for tool in ("evidently", "shipway"):
        s = samples.get(tool) or []
        flagged = s[0]["flagged"] if s else []
        delta = median(x.get("rss_peak_mb", x["maxrss_mb"]) - x["rss_before_mb"] for x in s)
        rows.append((tool, len(s), median(x["seconds"] for x in s),
                     (traced.get(tool) or {}).get("traced_peak_mb"), delta, median(x["maxrss_mb"] for x in s),
                     ", ".join(flagged)))
    expected = drift.get("expected") or []
    same = [sorted(x["flagged"]) for t in ("evidently", "shipway") for x in samples.get(t) or []]
    agreement = "all runs of both tools flagged exactly the drifted columns" if same and all(
        f == sorted(expected) for f in same) else f"**disagreement**: expected {expected}, got {same}"
    return [
        f"## Drift: Evidently {drift.get('evidently_version', '?')} DataDriftPreset vs `shipway.drift.compute_drift`",
        "",
        f"{fmt(drift.get('rows'))} reference + {fmt(drift.get('rows'))} current rows x ({N_NUMERIC} numeric + "
        f"{N_CATEGORICAL} categorical) columns, seeded; each tool in a fresh process per run. "
        "Peak memory of the compute = tracemalloc peak during the call (numpy/pandas buffers included; "
        "one extra run); RSS growth = peak RSS "
        "sampled every 2 ms during the call minus RSS before it (includes allocator and thread-arena effects); "
        "process peak RSS includes the interpreter, imports and the input frames both tools share. Both tools "
        "do a 2000-row warm-up call first so lazy imports are not billed to either.",
        "",
        table(["tool", "runs", "seconds", "compute peak (tracemalloc, MiB)", "RSS growth during compute "
               "(MiB)", "process peak RSS (MiB)", "columns flagged"], rows),
        "",
        f"Known drifted columns: {', '.join(expected)}. Result: {agreement}.",
        "",
    ]


# Steps of a promote/rollback's own `timings`, in the order the command runs them; others follow.
PROMOTION_STEPS = ("stack outputs", "registry", "gates", "pin", "pulumi up", "verification", "audit")
_STEP_LABELS = {"pulumi up": "`pulumi up`"}


def step_medians(timings: Sequence[Mapping[str, float]]) -> dict[str, float | None]:
    """Median seconds per step over a command's runs (a step a run did not report is not counted as 0)."""
    steps = [s for s in PROMOTION_STEPS if any(s in t for t in timings)]
    steps += sorted({s for t in timings for s in t} - set(steps))
    return {step: median(t.get(step) for t in timings) for step in steps}


def rest_of_command(timings: Sequence[Mapping[str, float]], whole: Sequence[float]) -> float | None:
    """Median over runs of whole command minus its timed steps: process start, imports, output."""
    return median(w - sum(t.values()) for t, w in zip(timings, whole, strict=False) if t)


def _runs_text(samples: Sequence[float]) -> str:
    if not samples:
        return "-"
    return f"{fmt(median(samples))} [{', '.join(fmt(x) for x in samples)}]"


def _command_rows(promo: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    rows = []
    for command, label in (("promote", "promote (v1 -> v2)"), ("rollback", "rollback (v2 -> v1)")):
        whole_goal, serving_goal = GOALS[command], GOALS[f"{command}_serving"]
        whole, serving = runs_of(promo, f"{command}_up_s"), runs_of(promo, f"{command}_serving_s")
        rows.append((f"{label}, goal {whole_goal.describe()} / {serving_goal.describe()}", len(whole),
                     _runs_text(whole), _runs_text(serving),
                     f"whole {run_verdict(whole_goal, whole)}; pin to serving {run_verdict(serving_goal, serving)}"))
    return rows


def _step_lines(promo: Mapping[str, Any]) -> list[str]:
    promote_t = [t for t in promo.get("promote_timings") or () if t]
    rollback_t = [t for t in promo.get("rollback_timings") or () if t]
    if not promote_t and not rollback_t:
        return ["Seconds per step: not run (no `promote_timings` / `rollback_timings` in results/raw.json).", ""]
    promote_m, rollback_m = step_medians(promote_t), step_medians(rollback_t)
    probes = {"promote": median(promo.get("promote_probe_requests") or ()),
              "rollback": median(promo.get("rollback_probe_requests") or ())}

    def cell(command: str, step: str, medians: Mapping[str, float | None]) -> str:
        value = medians.get(step)
        if value is None:
            return "-"
        if step == "verification" and probes[command] is not None:
            return f"{fmt(value)} ({fmt(probes[command])} requests)"
        return fmt(value)

    steps = list(promote_m) + [s for s in rollback_m if s not in promote_m]
    rows: list[tuple[Any, ...]] = [(_STEP_LABELS.get(s, s), cell("promote", s, promote_m),
                                    cell("rollback", s, rollback_m)) for s in steps]
    promote_whole, rollback_whole = runs_of(promo, "promote_up_s"), runs_of(promo, "rollback_up_s")
    rows.append(("rest: process start, imports, output (whole command - steps)",
                 rest_of_command(promote_t, promote_whole), rest_of_command(rollback_t, rollback_whole)))
    rows.append(("whole command (wall clock)", median(promote_whole), median(rollback_whole)))
    return [f"Seconds per step, median of {len(promote_t)} promote and {len(rollback_t)} rollback runs, from each "
            "command's own `timings`:", "",
            table(["step", "promote median (s)", "rollback median (s)"], rows), ""]


def _span(values: Sequence[float], unit: str) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{fmt(low)} {unit}" if low == high else f"{fmt(low)}–{fmt(high)} {unit}"


def _rollback_lines(promo: Mapping[str, Any]) -> list[str]:
    statuses = [str(s) for s in promo.get("rollback_status") or ()]
    if not statuses:
        out = ["Rollback status: not run (no `rollback_status` in results/raw.json).", ""]
    elif len(set(statuses)) == 1:
        out = [f"Each rollback returned `{statuses[0]}` ({len(statuses)} of {len(statuses)} runs).", ""]
    else:
        out = ["Rollback status per run: " + ", ".join(f"`{s}`" for s in statuses) + ".", ""]
    checks = promo.get("background_verify")
    if checks is None:
        return out + ["Background full verifications: not run (no `background_verify` in results/raw.json).", ""]
    if not checks:
        return out + ["Background full verifications: none (no rollback left a pending verify record).", ""]
    ok = sum(1 for c in checks if c.get("outcome") == "ok")
    requests = [float(c["requests"]) for c in checks if c.get("requests") is not None]
    after = [float(c["after_s"]) for c in checks if c.get("after_s") is not None]
    p99 = [float(c["p99_ms"]) for c in checks if c.get("p99_ms") is not None]
    rows = [(i, c.get("version"), c.get("outcome"), c.get("requests"), c.get("p99_ms"), c.get("after_s"))
            for i, c in enumerate(checks, 1)]
    return out + [
        f"Background full verifications (the SLO probe a `smoke-verified` rollback leaves running; its verify "
        f"record in the audit trail): {ok} of {len(checks)} recorded `ok`, {_span(requests, 'requests')} each, "
        f"{_span(after, 's')} after the pending record, p99 {_span(p99, 'ms')}.",
        "",
        table(["rollback", "version", "outcome", "requests", "p99 ms", "seconds after the pending record"], rows),
        "",
    ]


def _load_lines(promo: Mapping[str, Any]) -> list[str]:
    load = promo.get("load") or {}
    if not load:
        return ["Load across promotions and rollbacks: not run (no `load` in results/raw.json).", ""]
    loadavg = [float(x) for x in promo.get("loadavg") or ()]
    rows: list[tuple[Any, ...]] = [
        ("requests", load.get("requests")), ("failed (non-200 or connection error)", load.get("failed")),
        ("achieved rate (rps)", load.get("rps")), ("p50 ms", load.get("p50_ms")), ("p99 ms", load.get("p99_ms")),
        ("outcomes", ", ".join(f"{k}: {v}" for k, v in (load.get("outcomes") or {}).items()) or "-"),
        ("load average (1 min) before the rounds / after them",
         " / ".join(fmt(x) for x in loadavg) if len(loadavg) == 2 else "-"),
    ]
    return [table(["load across all promotions and rollbacks", "value"], rows), ""]


def _promotion(doc: Mapping[str, Any]) -> list[str]:
    promo = doc.get("promotion")
    if not promo:
        return ["## Promotion", "", "Not run.", ""]
    return [
        "## Promotion and rollback on a throwaway `local` stack, through the `shipway` CLI",
        "",
        "Measured: `shipway --root <throwaway project> model promote iris-classifier --to local --version 2 "
        "--apply` and `shipway ... model rollback iris-classifier --env local`, each a separate process, as a "
        "user runs them, under paced load. Pin to serving: from the stack file's change until `/version` reports "
        "the new version.",
        "",
        table(["command", "runs", "whole command (s), median [runs]", "pin to serving (s), median [runs]",
               "verdict"], _command_rows(promo)),
        "",
    ] + _rollback_lines(promo) + _step_lines(promo) + _load_lines(promo)


def _engine(doc: Mapping[str, Any]) -> list[str]:
    engine, promo = doc.get("engine") or {}, doc.get("promotion") or {}
    rows = [
        ("local stack: first `pulumi up` (creates MLflow, endpoint, Prometheus...)",
         1 if promo.get("first_up_s") else 0, promo.get("first_up_s")),
        ("local stack: `pulumi preview` (no changes)", len(promo.get("preview_s") or []),
         median(promo.get("preview_s") or [])),
        ("local stack: `pulumi up` (no changes)", len(promo.get("noop_up_s") or []),
         median(promo.get("noop_up_s") or [])),
        (f"unit suite `pytest tests -m \"not integration\"` ({engine.get('unit_suite_summary') or '-'})",
         len(engine.get("unit_suite_s") or []), median(engine.get("unit_suite_s") or [])),
    ]
    mock_rows = []
    for cloud, points in sorted((engine.get("mock") or {}).items()):
        base = None
        for key in sorted(points, key=lambda k: tuple(int(x) for x in k.split("x"))):
            s = points[key]
            seconds = median(x["seconds"] for x in s)
            resources = median(x["resources"] for x in s)
            per_resource = ratio(seconds, resources)
            if key.endswith("x1") and base is None:
                base = per_resource
            models, envs = key.split("x")
            mock_rows.append((cloud, models, envs, len(s), resources, seconds,
                              None if per_resource is None else per_resource * 1000))
    return [
        "## Engine",
        "",
        table(["what", "runs", "seconds (median)"], rows),
        "",
        "Recording-mock preview (`tests/support/recording.py` `record()` over `build_platform`, StackConfig from "
        "`shipway_core.config.parse_stack_config`), a fresh process per point; seconds exclude imports.",
        "",
        table(["cloud", "models per env", "envs", "runs", "resources", "seconds", "ms per resource"], mock_rows),
        "",
    ]


def render(doc: Mapping[str, Any]) -> str:
    """The whole RESULTS.md."""
    notes = [f"- {n}" for section in ("serving", "cli", "drift", "promotion", "engine")
             for n in ((doc.get(section) or {}).get("notes") or [])]
    parts = (_header(doc) + _serving(doc) + _gbt(doc) + _cli(doc) + _drift(doc) + _promotion(doc) + _engine(doc)
             + _setup(doc) + profiles_section(doc))
    parts += ["## Notes", ""] + (notes or ["- none: every step ran."]) + [""]
    return "\n".join(parts)


def not_met(doc: Mapping[str, Any]) -> list[str]:
    """Ids of the goals measured and missed in this run."""
    measured = goal_measurements(doc)
    return [k for k, g in GOALS.items() if g.met(measured[k]) is False]


def _request_profile_lines(serving: Mapping[str, Any], rows: str) -> list[str]:
    prof = ((serving.get("profiles") or {}).get("requests") or {}).get(rows)
    if not prof:
        return [f"No request profile was captured for {rows}-row requests.", ""]
    load = (serving.get("load") or {}).get(SHIPWAY, {})
    http_rps = cell_median(load.get(f"{rows}r-c8"), "rps")
    http_us = None if not http_rps else 1e6 / http_rps
    return [
        f"**{rows}-row requests.** The app alone (ASGI called in-process, as deployed, cProfile off) takes "
        f"{fmt(prof['us_per_request'])} µs per request, a single-core ceiling of "
        f"{fmt(1e6 / prof['us_per_request'])} rps; over HTTP at 8 connections the server delivered one response "
        f"every {fmt(http_us)} µs. The rest is uvicorn/httptools, the event loop, the kernel and wrk sharing "
        "the same 2 busy cores. Inside the app (cProfile, 2000 requests, cumulative):",
        "",
        "```",
        prof["top"],
        "```",
        "",
    ]


def _cold_profile_lines(profiles: Mapping[str, Any]) -> list[str]:
    startup = profiles.get("startup")
    lines = ["**Cold start.** The server answers probes ~0.25 s after launch; the rest is loading the model in "
             "the background. Phases, timed one after another in a fresh process (no profiler except the last):",
             ""]
    if isinstance(startup, Mapping):
        lines += [table(["phase", "seconds"], startup.get("phases") or []), "",
                  "cProfile of the model load once its imports are paid (cumulative):", "", "```",
                  startup.get("top", ""), "```", ""]
    else:
        lines += ["(startup phases not captured)", ""]
    lines += ["Top-level imports of a cold start (`-X importtime`, no profiler):", "",
              profiles.get("imports") or "(not captured)", ""]
    return lines


def _promotion_profile_lines(promo: Mapping[str, Any], missed: Sequence[str]) -> list[str]:
    lines = []
    for command in ("promote", "rollback"):
        timings = [t for t in promo.get(f"{command}_timings") or () if t]
        if command not in missed or not timings:
            continue
        steps = {**step_medians(timings),
                 "rest (process start, imports, output)": rest_of_command(timings, runs_of(promo, f"{command}_up_s"))}
        ranked = sorted(((s, v) for s, v in steps.items() if v is not None), key=lambda sv: -sv[1])
        lines.append(f"`{command}` ({fmt(median(runs_of(promo, f'{command}_up_s')))} s median): "
                     + ", ".join(f"{_STEP_LABELS.get(s, s)} {fmt(v)} s" for s, v in ranked) + ".")
    text = ("**Promotion.** Median seconds per step of each command over its goal, largest first (the command's "
            "own `timings`): " + " ".join(lines) if lines else
            "**Promotion.** No per-step timings in this run (`promotion.promote_timings` / `rollback_timings`).")
    text += (" Pin-to-serving is bounded by `pulumi up` (serving switches before `up` returns); failed requests "
             "are listed in results/raw.json (`promotion.load.first_failures`).")
    return [text, ""]


def profiles_section(doc: Mapping[str, Any]) -> list[str]:
    """Profiles of the biggest remaining cost for each goal not met (serving and cold start)."""
    missed = not_met(doc)
    serving = doc.get("serving") or {}
    out: list[str] = []
    if {"rps_1", "p99_1"} & set(missed):
        out += _request_profile_lines(serving, "1")
    if "rps_100" in missed:
        out += _request_profile_lines(serving, "100")
    profiles = serving.get("profiles") or {}
    if "cold" in missed:
        out += _cold_profile_lines(profiles)
    if {"drift_speed", "drift_memory"} & set(missed):
        out += ["**Drift.** No profile captured by the harness; run `python benchmarks/drift_worker.py shipway "
                "benchmarks/results/data/drift-100000.npz time` under `python -m cProfile`.", ""]
    if {"promote", "rollback", "failed"} & set(missed):
        out += _promotion_profile_lines(doc.get("promotion") or {}, missed)
    if not out:
        return []
    return ["## Profiles: the biggest remaining cost of each goal not met", ""] + out
