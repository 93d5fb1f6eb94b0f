"""Promotion and rollback on a throwaway ``local`` stack, under paced load; plus its engine timings.

The stack is built exactly like the integration tests' ``make_project`` (own project dir,
file backend, data dir and ports in a temp dir), so the developer's ``local`` stack, state
and processes are never touched. ``shipway model promote`` cannot target such a project
(its engine resolves the checkout's own ``stacks/`` and backend), so what is measured is the
mechanism it drives: the pin edit in the stack file + ``pulumi up`` with the real CLI.

pin-to-serving = from the pin edit until ``/version`` on the endpoint reports the new version;
up = until ``pulumi up`` returned. A paced load generator (separate process) sends
requests across every promote and rollback; any non-200 or connection error is a failure.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import procs

MODEL = "iris-classifier"


@dataclass
class PromotionResults:
    """Raw samples; RESULTS.md shows medians."""

    promote_serving_s: list[float] = field(default_factory=list)
    promote_up_s: list[float] = field(default_factory=list)
    rollback_serving_s: list[float] = field(default_factory=list)
    rollback_up_s: list[float] = field(default_factory=list)
    first_up_s: float | None = None
    preview_s: list[float] = field(default_factory=list)
    noop_up_s: list[float] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _version(base: str) -> int | None:
    status, body = procs.http("GET", base + "/version", timeout=2.0)
    if status != 200:
        return None
    return int(json.loads(body)["model_version"])


def _timed_pin_change(project: Any, base: str, version: int) -> tuple[float, float]:
    """(pin-to-serving seconds, pin-to-up-returned seconds) for one pin change."""
    seen: list[float] = []
    done = threading.Event()

    def watch(t0: float) -> None:
        while not done.is_set():
            if _version(base) == version:
                seen.append(time.perf_counter() - t0)
                return
            time.sleep(0.05)

    t0 = time.perf_counter()
    project.pin(MODEL, version)
    watcher = threading.Thread(target=watch, args=(t0,), daemon=True)
    watcher.start()
    try:
        project.pulumi("up", "--yes", "--skip-preview")
        up_s = time.perf_counter() - t0
        watcher.join(30)
    finally:
        done.set()
    if not seen:
        raise RuntimeError(f"/version never reported {version} after pulumi up")
    return seen[0], up_s


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(rounds: int, rate: float, progress: Callable[[str], None] = print) -> PromotionResults:
    """Set up a throwaway stack, then ``rounds`` x (promote v1->v2, roll back v2->v1) under load."""
    from shipway.example import train_and_register
    from tests.integration.conftest import make_project

    out = PromotionResults()
    logs = procs.log_dir("promotion")
    with tempfile.TemporaryDirectory(prefix="shipway-bench-promotion-") as tmp:
        project = make_project(Path(tmp), stack="t-bench")
        loadgen: procs.Proc | None = None
        try:
            store, artifacts = project.tracking_store
            Path(store.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            v1 = train_and_register(store, variant="baseline", artifact_root=artifacts).version
            v2 = train_and_register(store, variant="forest", artifact_root=artifacts).version
            project.pin(MODEL, v1)
            progress("promotion: first pulumi up of the throwaway local stack")
            out.first_up_s = _timed(lambda: project.pulumi("up", "--yes", "--skip-preview"))
            progress(f"promotion: first up {out.first_up_s:.1f}s")
            base = project.outputs()["endpoints"][MODEL]["url"]
            for _ in range(rounds):
                out.preview_s.append(_timed(lambda: project.pulumi("preview", "--expect-no-changes")))
                out.noop_up_s.append(_timed(lambda: project.pulumi("up", "--yes", "--skip-preview")))
                progress(f"engine: preview {out.preview_s[-1]:.1f}s, no-change up {out.noop_up_s[-1]:.1f}s")
            body = Path(tmp) / "body.json"
            from benchmarks.serving import payload

            body.write_bytes(payload(1))
            result_file = Path(tmp) / "load.json"
            env = {**__import__("os").environ, "BENCH_API_KEY": project.api_key}
            loadgen = procs.start([str(procs.PYTHON), "-m", "benchmarks.loadgen", base + "/invocations",
                                   str(body), str(result_file), "--rate", str(rate), "--concurrency", "8",
                                   "--max-seconds", "900"], logs / "loadgen.log", env=env, cwd=procs.ROOT)
            time.sleep(2)
            for i in range(rounds):
                serving_s, up_s = _timed_pin_change(project, base, v2)
                out.promote_serving_s.append(serving_s)
                out.promote_up_s.append(up_s)
                progress(f"promotion round {i + 1}: promote serving {serving_s:.1f}s (up returned {up_s:.1f}s)")
                serving_s, up_s = _timed_pin_change(project, base, v1)
                out.rollback_serving_s.append(serving_s)
                out.rollback_up_s.append(up_s)
                progress(f"promotion round {i + 1}: rollback serving {serving_s:.1f}s (up returned {up_s:.1f}s)")
            time.sleep(2)
            procs.stop(loadgen)
            loadgen = None
            out.load = json.loads(result_file.read_text()) if result_file.exists() else {}
            progress(f"promotion load: {out.load.get('requests')} requests, {out.load.get('failed')} failed, "
                     f"{out.load.get('rps', 0):.0f} rps")
        except Exception as exc:  # noqa: BLE001 - recorded in RESULTS.md; the stack is still destroyed
            out.notes.append(f"{type(exc).__name__}: {str(exc)[:2000]}")
            progress(f"promotion failed: {exc}")
        finally:
            procs.stop(loadgen)
            project.pulumi("destroy", "--yes", check=False)
            (logs / "stack-data-logs.txt").write_text("\n".join(
                str(p) for p in (project.data_dir).rglob("*.log")) if project.data_dir.exists() else "")
    return out
