"""CLI start-up: ``shipway --help`` and noun help vs ``mlflow --help``, wall time of a fresh process.

Runs are interleaved (one of each command per round) so a burst of load on the shared
machine hits every command alike; ``-X importtime`` of ``shipway --help`` gives the
import cost split (the sum of the top-level modules' cumulative microseconds).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks import procs

COMMANDS: dict[str, list[str]] = {
    "shipway --help": [str(procs.PYTHON), "-m", "shipway.cli", "--help"],
    "shipway audit --help": [str(procs.PYTHON), "-m", "shipway.cli", "audit", "--help"],
    "shipway model --help": [str(procs.PYTHON), "-m", "shipway.cli", "model", "--help"],
    "mlflow --help": [str(procs.ROOT / ".venv" / "bin" / "mlflow"), "--help"],
}
REFERENCE = "mlflow --help"


@dataclass
class CliResults:
    """Seconds per command per run, and the top-level import time of ``shipway --help``."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    import_ms: float | None = None
    notes: list[str] = field(default_factory=list)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SHIPWAY_"))}
    env["COLUMNS"] = "100"
    return env


def top_level_import_ms(stderr: str) -> float:
    """Sum of the cumulative times of top-level imports (nesting depth 0) in ``-X importtime`` output."""
    total = 0
    for line in stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and line.startswith("import time:") and not parts[2].startswith("  "):
            try:
                total += int(parts[1])
            except ValueError:
                continue
    return total / 1000


def run(repetitions: int, progress: Callable[[str], None] = print) -> CliResults:
    """``repetitions`` interleaved rounds (+1 unmeasured warm-up round for the page cache)."""
    out = CliResults()
    env = _env()
    for r in range(repetitions + 1):
        for name, argv in COMMANDS.items():
            started = time.perf_counter()
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                out.notes.append(f"{name} exited {done.returncode}: {done.stderr.strip()[-300:]}")
                continue
            if r:
                out.seconds.setdefault(name, []).append(elapsed)
    done = subprocess.run([str(procs.PYTHON), "-X", "importtime", "-m", "shipway.cli", "--help"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    out.import_ms = top_level_import_ms(done.stderr)
    progress("cli: " + ", ".join(f"{k} {min(v):.2f}s" for k, v in out.seconds.items() if v))
    return out
