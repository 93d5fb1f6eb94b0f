"""Drift: Evidently's DataDriftPreset vs Shipway's ``compute_drift`` on the same synthetic data.

N reference + N current rows x (30 numeric + 10 categorical) columns, seeded, with a known set
of real shifts (the smallest the issue says must be caught: 0.25 sd mean, 1.5x spread, 10-point
share, 5-point null rate, plus larger ones) and a known set of negligible shifts (0.02-0.04 sd,
1.03x spread, 1-2 point shares) that neither tool should flag. Each tool runs in its own fresh
process per repetition (so peak memory is its own): Shipway in the project venv, Evidently in a
separate venv under ``.shipway/bench-venvs/evidently`` that this module creates with pip
(pinned), because Evidently 0.7 does not run on the project's pandas 3.

``python -m benchmarks.drift --sizes 1000,10000,100000,1000000 --repetitions 2`` runs the size
ladder (both tools at every size, same run) and prints the table RESULTS.md records.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import procs

EVIDENTLY_VENV = procs.ROOT / ".shipway" / "bench-venvs" / "evidently"
# pandas 3 removed helpers Evidently 0.7.23 imports; 2.3.3 is the last 2.x.
EVIDENTLY_PINS = ("evidently==0.7.23", "pandas==2.3.3")
WORKER = Path(__file__).resolve().parent / "drift_worker.py"

N_NUMERIC = 30
N_CATEGORICAL = 10
# Drifted on purpose; every other column comes from the same distribution on both sides.
DRIFTED_NUMERIC = {"num_03": "mean +0.5 sd", "num_07": "sd x1.5", "num_12": "mean +1 sd",
                   "num_16": "lognormal sigma 0.5 -> 0.8", "num_21": "mean +0.25 sd"}
DRIFTED_CATEGORICAL = {"cat_1": "category mix shifted", "cat_3": "new category at 20%",
                       "cat_6": "one share +10 points"}
# A null-rate jump: the values keep their distribution, 5% of them become missing.
DRIFTED_NULLS: dict[str, str] = {"num_18": "null rate 0% -> 5%"}
# Moved on purpose by amounts nobody would act on: flagging these is a false alarm.
NEGLIGIBLE_NUMERIC = {"num_05": "mean +0.03 sd", "num_10": "sd x1.03", "num_14": "mean +0.02 sd",
                      "num_25": "mean +0.04 sd"}
NEGLIGIBLE_CATEGORICAL = {"cat_2": "one share +1 point", "cat_4": "one share +2 points",
                          "cat_8": "one share +1 point"}
# Points moved between the two largest categories (a share that stays a share).
_SHARE_MOVE = {"cat_2": 0.01, "cat_4": 0.02, "cat_8": 0.01}
# Points added to the largest category, every other share scaled down to make room.
_SHARE_GAIN = {"cat_6": 0.10}
_MEAN_SHIFT_SD = {"num_03": 0.5, "num_12": 1.0, "num_21": 0.25, "num_05": 0.03, "num_14": 0.02, "num_25": 0.04}
_SPREAD = {"num_07": 1.5, "num_10": 1.03}
LADDER = (1_000, 10_000, 100_000, 1_000_000)


def expected_drifted() -> list[str]:
    """The columns whose values the generator drifts."""
    return sorted({*DRIFTED_NUMERIC, *DRIFTED_CATEGORICAL})


def real_shifts() -> list[str]:
    """Every real change, the null-rate jump included: what both tools should flag."""
    return sorted({*expected_drifted(), *DRIFTED_NULLS})


def negligible_shifts() -> list[str]:
    """The columns moved by negligible amounts: what neither tool should flag."""
    return sorted({*NEGLIGIBLE_NUMERIC, *NEGLIGIBLE_CATEGORICAL})


def accuracy(flagged: list[str]) -> dict[str, int]:
    """Real shifts caught, negligible shifts flagged and unchanged columns flagged, against the
    generator's ground truth."""
    return {
        "real_caught": len(set(flagged) & set(real_shifts())),
        "real_total": len(real_shifts()),
        "negligible_flagged": len(set(flagged) & set(negligible_shifts())),
        "negligible_total": len(negligible_shifts()),
        "unchanged_flagged": len(set(flagged) - set(real_shifts()) - set(negligible_shifts())),
    }


def _numeric_column(rng: np.random.Generator, j: int, n: int, current: bool) -> np.ndarray:
    name = f"num_{j:02d}"
    kind = j % 3
    if name == "num_16":
        return rng.lognormal(0.0, 0.8 if current else 0.5, n)
    if kind == 0:
        values = rng.normal(10.0 * j, 1.0 + j / 10, n)
    elif kind == 1:
        values = rng.uniform(-j, j + 1.0, n)
    else:
        values = rng.gamma(2.0 + j / 5, 1.5, n)
    sd = float(np.std(values)) or 1.0
    mean = float(np.mean(values))
    if current and name in _MEAN_SHIFT_SD:
        values = values + _MEAN_SHIFT_SD[name] * sd
    if current and name in _SPREAD:
        values = mean + (values - mean) * _SPREAD[name]
    if current and name in DRIFTED_NULLS:
        values = np.where(rng.random(n) < 0.05, np.nan, values)
    return values


def _categorical_column(rng: np.random.Generator, k: int, n: int, current: bool) -> np.ndarray:
    name = f"cat_{k}"
    levels = np.array([f"{name}_v{i}" for i in range(4 + 3 * k)])
    weights = np.linspace(1.0, 3.0, len(levels))
    if current and name == "cat_1":
        weights = weights[::-1] ** 2
    probs = weights / weights.sum()
    if current and name in _SHARE_MOVE:
        # Between the two largest categories: points moved off a 3% category would be a 30-60%
        # relative change, which is not negligible.
        probs = probs + _SHARE_MOVE[name] * (np.eye(len(levels))[-2] - np.eye(len(levels))[-1])
    if current and name in _SHARE_GAIN:
        gain = _SHARE_GAIN[name] / (1 - probs[-1])  # so the largest share grows by exactly that many points
        probs = probs * (1 - gain) + gain * np.eye(len(levels))[-1]
    values = rng.choice(levels, size=n, p=probs)
    if current and name == "cat_3":
        values[rng.random(n) < 0.2] = f"{name}_new"
    return values.astype("<U12")


def generate(path: Path, rows: int, seed: int = 11) -> Path:
    """Write the seeded reference/current data set to ``path`` (npz, no pickles)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, Any] = {
        "numeric_names": np.array([f"num_{j:02d}" for j in range(N_NUMERIC)]),
        "categorical_names": np.array([f"cat_{k}" for k in range(N_CATEGORICAL)]),
    }
    for side in ("ref", "cur"):
        current = side == "cur"
        arrays[f"{side}_num"] = np.column_stack([_numeric_column(rng, j, rows, current) for j in range(N_NUMERIC)])
        arrays[f"{side}_cat"] = np.column_stack(
            [_categorical_column(rng, k, rows, current) for k in range(N_CATEGORICAL)])
    np.savez(path, **arrays)
    return path


def ensure_evidently_venv(progress: Callable[[str], None]) -> Path:
    """The Evidently venv's python, creating/upgrading the venv with pinned pip installs if needed."""
    python = EVIDENTLY_VENV / "bin" / "python"
    check = [str(python), "-c", "import evidently, pandas; print(evidently.__version__, pandas.__version__)"]
    want = " ".join(p.split("==")[1] for p in EVIDENTLY_PINS)
    if python.exists() and procs.command_output(check) == want:
        return python
    progress(f"drift: creating {EVIDENTLY_VENV} with {' '.join(EVIDENTLY_PINS)}")
    EVIDENTLY_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)  # noqa: S603
    subprocess.run([str(python), "-m", "pip", "install", "-q", *EVIDENTLY_PINS], check=True)  # noqa: S603
    return python


@dataclass
class DriftResults:
    """Raw samples per tool; RESULTS.md shows medians."""

    rows: int = 0
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    traced: dict[str, dict[str, Any]] = field(default_factory=dict)
    expected: list[str] = field(default_factory=real_shifts)
    negligible: list[str] = field(default_factory=negligible_shifts)
    evidently_version: str = "unavailable"
    notes: list[str] = field(default_factory=list)


def _worker(python: Path, tool: str, data: Path, mode: str) -> dict[str, Any]:
    out = subprocess.run([str(python), str(WORKER), tool, str(data), mode], cwd=procs.ROOT,  # noqa: S603
                         capture_output=True, text=True, timeout=1800, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{tool} worker failed ({out.returncode}): {out.stderr[-1500:]}")
    return json.loads(lines[-1])


def run(rows: int, repetitions: int, progress: Callable[[str], None] = print) -> DriftResults:
    """``repetitions`` timed runs per tool (alternating) plus one tracemalloc run each."""
    results = DriftResults(rows=rows)
    evidently_python = ensure_evidently_venv(progress)
    results.evidently_version = procs.command_output(
        [str(evidently_python), "-c", "import evidently; print(evidently.__version__)"])
    data_dir = procs.RESULTS_DIR / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    data = generate(data_dir / f"drift-{rows}.npz", rows)
    pythons = {"shipway": procs.PYTHON, "evidently": evidently_python}
    for rep in range(repetitions):
        for tool, python in pythons.items():
            try:
                sample = _worker(python, tool, data, "time")
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                results.notes.append(f"repetition {rep + 1} {tool}: {exc}")
                continue
            results.samples.setdefault(tool, []).append(sample)
            sample["accuracy"] = accuracy(sample["flagged"])
            progress(f"drift {tool} rep {rep + 1}: {sample['seconds']:.2f}s, maxrss {sample['maxrss_mb']:.0f} MiB, "
                     f"flagged {sample['flagged']}, {sample['accuracy']}")
    for tool, python in pythons.items():
        try:
            results.traced[tool] = _worker(python, tool, data, "tracemalloc")
            progress(f"drift {tool} tracemalloc peak {results.traced[tool]['traced_peak_mb']:.0f} MiB")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            results.notes.append(f"tracemalloc {tool}: {exc}")
    return results


@dataclass
class LadderRow:
    """One tool at one size: medians over the repetitions that ran, and every sample."""

    rows: int
    tool: str
    seconds: float
    traced_peak_mb: float
    rss_growth_mb: float
    maxrss_mb: float
    real_caught: int
    real_total: int
    negligible_flagged: int
    negligible_total: int
    unchanged_flagged: int
    flagged: list[str]
    runs: int


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def ladder(sizes: tuple[int, ...] = LADDER, repetitions: int = 2,
           progress: Callable[[str], None] = print,
           repetitions_at: dict[int, int] | None = None) -> tuple[list[LadderRow], list[str]]:
    """Both tools at every size, same run: ``repetitions`` timed runs per tool (alternating;
    ``repetitions_at`` overrides it per size), then one tracemalloc run per tool. Memory: the
    tracemalloc peak of the compute (numpy and pandas buffers included, interpreter and input
    frames excluded), the peak RSS sampled every 2 ms during the compute minus the RSS before
    it, and the process's lifetime peak RSS (input frames included)."""
    rows_out: list[LadderRow] = []
    notes: list[str] = []
    evidently_python = ensure_evidently_venv(progress)
    pythons = {"shipway": procs.PYTHON, "evidently": evidently_python}
    data_dir = procs.RESULTS_DIR / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for rows in sizes:
        data = generate(data_dir / f"drift40-{rows}.npz", rows)
        samples: dict[str, list[dict[str, Any]]] = {tool: [] for tool in pythons}
        traced: dict[str, float] = {}
        for rep in range((repetitions_at or {}).get(rows, repetitions)):
            for tool, python in pythons.items():
                try:
                    sample = _worker(python, tool, data, "time")
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    notes.append(f"{rows} rows, repetition {rep + 1}, {tool}: {exc}")
                    progress(notes[-1])
                    continue
                sample["accuracy"] = accuracy(sample["flagged"])
                samples[tool].append(sample)
                progress(f"drift {rows} rows {tool} rep {rep + 1}: {sample['seconds']:.2f}s, "
                         f"RSS growth {sample['rss_peak_mb'] - sample['rss_before_mb']:.0f} MiB, "
                         f"maxrss {sample['maxrss_mb']:.0f} MiB, flagged {sample['flagged']}, {sample['accuracy']}")
        for tool, python in pythons.items():
            try:
                traced[tool] = float(_worker(python, tool, data, "tracemalloc")["traced_peak_mb"])
                progress(f"drift {rows} rows {tool} tracemalloc peak {traced[tool]:.0f} MiB")
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                notes.append(f"{rows} rows, tracemalloc, {tool}: {exc}")
        data.unlink()
        for tool, got in samples.items():
            if not got:
                continue
            last = got[-1]["accuracy"]
            if any(s["accuracy"] != last for s in got):
                notes.append(f"{rows} rows {tool}: repetitions flagged different columns")
            rows_out.append(LadderRow(
                rows=rows, tool=tool, seconds=_median([s["seconds"] for s in got]),
                traced_peak_mb=traced.get(tool, float("nan")),
                rss_growth_mb=_median([s["rss_peak_mb"] - s["rss_before_mb"] for s in got]),
                maxrss_mb=_median([s["maxrss_mb"] for s in got]),
                real_caught=last["real_caught"], real_total=last["real_total"],
                negligible_flagged=last["negligible_flagged"], negligible_total=last["negligible_total"],
                unchanged_flagged=last["unchanged_flagged"],
                flagged=got[-1]["flagged"], runs=len(got)))
    return rows_out, notes


def ladder_table(rows: list[LadderRow]) -> list[str]:
    """The markdown table RESULTS.md records: per size, both tools, and Shipway's ratios."""
    by_size: dict[int, dict[str, LadderRow]] = {}
    for row in rows:
        by_size.setdefault(row.rows, {})[row.tool] = row
    out = [f"| rows (ref + cur) x {N_NUMERIC + N_CATEGORICAL} cols | tool | runs | seconds (median) | speed-up "
           "| tracemalloc peak (MiB) | memory ratio | RSS growth in compute (MiB) | process peak RSS (MiB) "
           "| real shifts caught | negligible shifts flagged "
           "| unchanged columns flagged |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in sorted(by_size):
        tools = by_size[size]
        reference = tools.get("evidently")
        for tool in ("evidently", "shipway"):
            row = tools.get(tool)
            if row is None:
                out.append(f"| {size:,} + {size:,} | {tool} | 0 | failed | - | - | - | - | - | - | - | - |")
                continue
            speed = (f"{reference.seconds / row.seconds:.1f}x" if reference and row.seconds > 0 else "-")
            memory = (f"{row.traced_peak_mb / reference.traced_peak_mb:.2f}x"
                      if reference and reference.traced_peak_mb > 0 else "-")  # NaN compares False: "-"
            out.append(
                f"| {size:,} + {size:,} | {tool} | {row.runs} | {row.seconds:.3g} | {speed} "
                f"| {row.traced_peak_mb:,.1f} | {memory} | {row.rss_growth_mb:,.0f} "
                f"| {row.maxrss_mb:,.0f} | {row.real_caught} / {row.real_total} "
                f"| {row.negligible_flagged} / {row.negligible_total} "
                f"| {row.unchanged_flagged} / {N_NUMERIC + N_CATEGORICAL - row.real_total - row.negligible_total} |")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.drift [--sizes 1000,...] [--repetitions N]``: the ladder, table on stdout,
    raw rows in benchmarks/results/drift-ladder.json."""
    import argparse
    import dataclasses

    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=main.__doc__)
    parser.add_argument("--sizes", default=",".join(str(n) for n in LADDER),
                        help="comma-separated row counts per side (default: %(default)s)")
    parser.add_argument("--repetitions", type=int, default=2, help="timed runs per tool and size (default: 2)")
    parser.add_argument("--repetitions-at", default="", metavar="ROWS=N,...",
                        help="timed runs for particular sizes, e.g. 1000000=1 (default: none)")
    args = parser.parse_args(argv)
    try:
        sizes = tuple(int(n) for n in args.sizes.split(","))
    except ValueError:
        parser.error(f"--sizes: {args.sizes!r} is not valid; give row counts such as 1000,10000,100000")
    try:
        at = {int(k): int(v) for k, v in (item.split("=") for item in args.repetitions_at.split(",") if item)}
    except ValueError:
        parser.error(f"--repetitions-at: {args.repetitions_at!r} is not valid; give ROWS=N pairs such as 1000000=1")
    if any(n < 100 for n in sizes) or args.repetitions < 1 or any(n < 1 for n in at.values()):
        parser.error(f"--sizes {args.sizes} / --repetitions {args.repetitions}: use at least 100 rows "
                     "and 1 repetition")
    rows, notes = ladder(sizes, args.repetitions, lambda line: print(line, flush=True), at)
    procs.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (procs.RESULTS_DIR / "drift-ladder.json").write_text(json.dumps(
        {"rows": [dataclasses.asdict(r) for r in rows], "notes": notes,
         "real_shifts": real_shifts(), "negligible_shifts": negligible_shifts()}, indent=1))
    print("\n".join(ladder_table(rows)))
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
