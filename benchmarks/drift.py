"""Drift: Evidently's DataDriftPreset vs Shipway's ``compute_drift`` on the same synthetic data.

100k reference + 100k current rows x (20 numeric + 5 categorical) columns, seeded, with a
known set of drifted columns. Each tool runs in its own fresh process per repetition (so
peak memory is its own): Shipway in the project venv, Evidently in a separate venv under
``.shipway/bench-venvs/evidently`` that this module creates with pip (pinned), because
Evidently 0.7 does not run on the project's pandas 3.
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

N_NUMERIC = 20
N_CATEGORICAL = 5
# Drifted on purpose; every other column comes from the same distribution on both sides.
DRIFTED_NUMERIC = {"num_03": "mean +0.5 sd", "num_07": "sd x1.5", "num_12": "mean +1 sd",
                   "num_16": "lognormal sigma 0.5 -> 0.8"}
DRIFTED_CATEGORICAL = {"cat_1": "category mix shifted", "cat_3": "new category at 20%"}
# A null-rate jump: the values keep their distribution, 5% of them become missing.
DRIFTED_NULLS: dict[str, str] = {"num_18": "null rate 0% -> 5%"}
# Moved on purpose by amounts nobody would act on: flagging these is a false alarm.
NEGLIGIBLE_NUMERIC = {"num_05": "mean +0.03 sd", "num_10": "sd x1.03", "num_14": "mean +0.02 sd"}
NEGLIGIBLE_CATEGORICAL = {"cat_2": "one share +1 point", "cat_4": "one share +2 points"}
_SHARE_MOVE = {"cat_2": 0.01, "cat_4": 0.02}


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
    """Real shifts caught and negligible shifts flagged, against the generator's ground truth."""
    return {
        "real_caught": len(set(flagged) & set(real_shifts())),
        "real_total": len(real_shifts()),
        "negligible_flagged": len(set(flagged) & set(negligible_shifts())),
        "negligible_total": len(negligible_shifts()),
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
    if current and name == "num_03":
        values = values + 0.5 * sd
    if current and name == "num_12":
        values = values + 1.0 * sd
    if current and name == "num_07":
        values = mean + (values - mean) * 1.5
    if current and name == "num_05":
        values = values + 0.03 * sd
    if current and name == "num_14":
        values = values + 0.02 * sd
    if current and name == "num_10":
        values = mean + (values - mean) * 1.03
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
    values = rng.choice(levels, size=n, p=probs)
    if current and name == "cat_3":
        values[rng.random(n) < 0.2] = f"{name}_new"
    return values.astype("<U16")


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
