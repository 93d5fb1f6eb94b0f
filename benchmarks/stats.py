"""Pure helpers of the harness: medians, ratios, goal checks and Markdown tables.

Kept free of I/O so ``tests/unit/benchmarks`` can pin their behaviour (a wrong ratio or a
goal marked met by mistake would make RESULTS.md lie).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def median(values: Iterable[float | None]) -> float | None:
    """Median of the finite values; None when there is none (a run that produced nothing)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.median(finite) if finite else None


def ratio(ours: float | None, reference: float | None) -> float | None:
    """``ours / reference``; None when either side is missing or the reference is zero."""
    if ours is None or reference is None or reference == 0:
        return None
    return ours / reference


def fmt(value: Any, digits: int = 3) -> str:
    """Human-readable cell: ``-`` for missing, ints as ints, floats to ``digits`` significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if value == 0:
            return "0"
        if abs(value) >= 10 ** digits:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def fmt_ratio(value: float | None) -> str:
    """A ratio as ``4.2×`` (or ``-``)."""
    return "-" if value is None else f"{fmt(value)}×"


@dataclass(frozen=True)
class Goal:
    """One target of issue 11, e.g. "rps at 1 row ≥ 5× MLflow".

    ``at_least`` says which side of ``target`` passes: True for rps-like ratios (higher is
    better), False for latency/seconds/memory (lower is better).
    """

    name: str
    target: float
    at_least: bool
    unit: str = "×"

    def met(self, measured: float | None) -> bool | None:
        """True/False, or None when nothing was measured (never counted as met)."""
        if measured is None or not math.isfinite(measured):
            return None
        return measured >= self.target if self.at_least else measured <= self.target

    def describe(self) -> str:
        """``≥ 5×`` / ``≤ 2.5 s``."""
        op = "≥" if self.at_least else "≤"
        sep = "" if self.unit == "×" else " "
        return f"{op} {fmt(self.target)}{sep}{self.unit}"


def verdict(met: bool | None) -> str:
    """Table cell for a goal outcome."""
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells go through :func:`fmt` unless already strings."""
    def cell(value: Any) -> str:
        text = value if isinstance(value, str) else fmt(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {list(row)!r} has {len(row)} cells; the table has {len(headers)} columns")
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of raw samples; None for no samples."""
    if not 0 <= q <= 100:
        raise ValueError(f"q: {q!r} is not valid; use a percentile between 0 and 100")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
