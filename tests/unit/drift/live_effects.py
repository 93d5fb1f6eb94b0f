"""``drift_effects`` log lines as the serving app writes them, from real traffic through the real
``DriftMonitor``: the input the AWS and Azure drift alert tests evaluate their alerts on.

The training baseline: 20,000 rows of a normal numeric feature ``x`` and a categorical ``c``
(shares 40/30/20/10 %). Each scenario draws a live window from it with one known change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipway.drift.profile import build_profile
from shipway.serving.drift import DriftMonitor, emit_effects, parse_profile

LEVELS = np.array(["a", "b", "c", "d"])
SHARES = np.array([0.4, 0.3, 0.2, 0.1])

# scenario -> what moved; the thresholds: 0.25 sd, 1.5x spread, 10 points of a share and
# 5 points of nulls must fire; below 0.05 sd and 1-2 points must not.
REAL = {
    "mean +0.25 sd": "wasserstein",
    "spread x1.5": "wasserstein",
    "share +10 points": "jensen_shannon",
    "nulls +5 points": "null_rate",
}
NEGLIGIBLE = ("unchanged", "mean +0.03 sd", "spread x1.03", "share +1 point", "share +2 points", "nulls +1 point")


def _frame(rng: np.random.Generator, n: int, scenario: str) -> pd.DataFrame:
    x = rng.normal(0.0, 1.0, n)
    shares = SHARES.copy()
    if scenario.startswith("mean"):
        x = x + float(scenario.split("+")[1].split()[0])
    if scenario.startswith("spread"):
        x = x * float(scenario.split("x")[1])
    if scenario.startswith("share"):
        points = float(scenario.split("+")[1].split()[0]) / 100
        shares = shares + points * np.array([1.0, -1.0, 0.0, 0.0])
    if scenario.startswith("nulls"):
        x = np.where(rng.random(n) < float(scenario.split("+")[1].split()[0]) / 100, np.nan, x)
    return pd.DataFrame({"x": x, "c": rng.choice(LEVELS, n, p=shares)})


_PROFILE = build_profile(_frame(np.random.default_rng(7), 20_000, "unchanged"))


def drift_effects_line(scenario: str, rows: int = 5_000, seed: int = 11) -> dict[str, Any]:
    """The ``drift_effects`` line the app writes after observing ``rows`` live rows of ``scenario``."""
    monitor = DriftMonitor(parse_profile(_PROFILE), {"x", "c"}, window=10**9)
    live = _frame(np.random.default_rng(seed), rows, scenario)
    monitor.observe({"x": [None if v != v else v for v in live["x"].tolist()], "c": live["c"].tolist()}, rows)
    lines: list[dict[str, Any]] = []
    emit_effects(lambda level, event, **fields: lines.append({"level": level, "event": event, **fields}),
                 monitor.effects(), monitor.samples, "churn", 3)
    (line,) = lines
    return line
