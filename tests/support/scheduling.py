"""How ``make unit`` spreads the suite over pytest-xdist workers (``--dist loadgroup``).

A module is one unit of work, so its module-scoped fixtures and cached recordings are built once,
on one worker, not once on every worker that happened to get one of its tests. Modules that read
one per-process cache form one unit (``SHARED_WORKER``). Units start slowest first, by each module's
time in the previous run (``DURATIONS``, written by the controller at the end of a run; the test
count orders modules not seen yet), so no long module starts last while the other worker idles.

pytest-xdist's own ``loadgroup`` groups by ``xdist_group`` marks by rewriting node ids, which
pytest 9 no longer reads; this scheduler replaces it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DURATIONS = ROOT / ".shipway" / "unit-durations.json"

# Modules reading ``option_set_run`` (tests/unit/test_conformance.py), recorded once per process.
SHARED_WORKER = {
    "tests/unit/test_conformance.py": "option-set-runs",
    "tests/policies/test_coverage.py": "option-set-runs",
    "tests/unit/targets/test_env_status_targets.py": "option-set-runs",
}


def scope_of(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return SHARED_WORKER.get(module, module)


def load_durations(path: Path = DURATIONS) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items()} if isinstance(data, dict) else {}


class DurationLog:
    """A controller plugin: seconds per unit from the test reports, saved after a passing run."""

    def __init__(self, path: Path = DURATIONS):
        self.path, self.seconds = path, Counter[str]()

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.seconds[scope_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        if exitstatus == 0 and self.seconds:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({k: round(v, 2) for k, v in self.seconds.most_common()}, indent=0))


def make_scheduler(config: Any, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    known = load_durations()

    class SlowestModuleFirst(LoadScopeScheduling):  # type: ignore[misc]
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            if not self.ordered:  # once, before the first unit leaves
                self.ordered = True
                units = sorted(self.workqueue.items(), key=lambda unit: (-known.get(unit[0], 0.0), -len(unit[1])))
                self.workqueue.clear()
                self.workqueue.update(units)
            super()._assign_work_unit(node)

    return SlowestModuleFirst(config, log)
