"""Engine costs: the unit suite's wall time and recording-mock previews as the program grows.

The local stack's real ``pulumi preview``/``up`` times are measured by
:mod:`benchmarks.promotion` on its throwaway stack (one stack set up once serves both).
Mock previews run in a fresh process per point (see :mod:`benchmarks.engine_mock`).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks import procs

CLOUDS = ("aws", "kubernetes")


@dataclass
class EngineResults:
    """Raw samples; RESULTS.md shows medians."""

    unit_suite_s: list[float] = field(default_factory=list)
    unit_suite_summary: str = ""
    # cloud -> "models x envs" -> samples of {"seconds", "resources"}
    mock: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


_SUMMARY = re.compile(r"=+ (.*(?:passed|failed|error).*) in [0-9.]+s")


def pytest_summary(output: str) -> str:
    """``"812 passed, 3 skipped"`` from pytest's last line (empty if there is none)."""
    for line in reversed(output.splitlines()):
        match = _SUMMARY.search(line)
        if match:
            return match.group(1)
        stripped = line.strip()
        if re.match(r"^\d+ (passed|failed)", stripped):
            return re.sub(r" in [0-9.]+s.*$", "", stripped)
    return ""


def unit_suite(out: EngineResults, progress: Callable[[str], None]) -> None:
    """Wall time of ``pytest tests -m "not integration"`` (the suite as a developer runs it)."""
    t0 = time.perf_counter()
    run = subprocess.run([str(procs.PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m",  # noqa: S603
                          "not integration", "tests"], cwd=procs.ROOT, capture_output=True, text=True,
                         timeout=3600, check=False)
    out.unit_suite_s.append(time.perf_counter() - t0)
    out.unit_suite_summary = pytest_summary(run.stdout) or f"exit code {run.returncode}"
    progress(f"engine: unit suite {out.unit_suite_s[-1]:.0f}s ({out.unit_suite_summary})")


def mock_point(cloud: str, models: int, envs: int) -> dict[str, Any]:
    """One recording-mock preview point in a fresh process."""
    run = subprocess.run([str(procs.PYTHON), "-m", "benchmarks.engine_mock", cloud, str(models), str(envs)],  # noqa: S603
                         cwd=procs.ROOT, capture_output=True, text=True, timeout=1800, check=False)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode != 0 or not lines:
        raise RuntimeError(f"engine_mock {cloud} {models}x{envs} failed: {run.stderr[-1500:]}")
    return json.loads(lines[-1])


def point_key(models: int, envs: int) -> str:
    """``"50x3"``: models per environment x environments."""
    return f"{models}x{envs}"


def run(scales: Sequence[int], repetitions: int, prod_envs: int, prod_repetitions: int,
        suite: bool, progress: Callable[[str], None] = print) -> EngineResults:
    """Unit suite once (if ``suite``), mock previews at each scale, then the prod-sized point."""
    out = EngineResults()
    if suite:
        try:
            unit_suite(out, progress)
        except subprocess.TimeoutExpired:
            out.notes.append("unit suite did not finish within an hour")
    points = [(n, 1, repetitions) for n in scales] + [(max(scales), prod_envs, prod_repetitions)]
    for rep in range(max(repetitions, prod_repetitions)):
        for cloud in CLOUDS:
            for models, envs, reps in points:
                if rep >= reps:
                    continue
                try:
                    sample = mock_point(cloud, models, envs)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    out.notes.append(str(exc))
                    continue
                out.mock.setdefault(cloud, {}).setdefault(point_key(models, envs), []).append(sample)
                progress(f"engine mock {cloud} {models} models x {envs} envs: {sample['seconds']:.1f}s, "
                         f"{sample['resources']} resources")
    return out
