"""Promotion and rollback as a user runs them: the real ``shipway`` CLI, under paced load.

The throwaway project is built exactly like the integration tests' ``make_project`` (own
project dir, file backend, data dir and ports in a temp dir) with its stack named ``local``,
and every command runs as ``shipway --root <project> model promote|rollback ...`` in its own
process, so the figures include what a user waits for: CLI start-up, gates, the pin edit,
``pulumi up``, verification and the audit records.

command = the whole CLI invocation; pin to serving = from the stack file's change until the
endpoint's ``/version`` reports the new version; serving = from the command's start until then.
A paced load generator (separate process) sends requests across every promote and rollback; any
non-200 or connection error is a failure.

A rollback returns after its smoke probe; its full SLO probe runs in the background and appends a
verify record to the throwaway project's audit trail. The benchmark waits for those records at the
end and reports their outcomes and how long after the pending record each arrived.

    python -m benchmarks.promotion --rounds 3 --rate 120 --json-out /tmp/promotion.json
"""

from __future__ import annotations

import json
import os
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

    promote_serving_s: list[float] = field(default_factory=list)  # pin written -> /version reports it
    promote_up_s: list[float] = field(default_factory=list)  # the whole `shipway model promote` command
    rollback_serving_s: list[float] = field(default_factory=list)
    rollback_up_s: list[float] = field(default_factory=list)  # the whole `shipway model rollback` command
    first_up_s: float | None = None
    preview_s: list[float] = field(default_factory=list)
    noop_up_s: list[float] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    promote_timings: list[dict[str, float]] = field(default_factory=list)  # the command's own outcome.timings
    rollback_timings: list[dict[str, float]] = field(default_factory=list)
    rollback_status: list[str] = field(default_factory=list)  # "smoke-verified" when the full probe follows
    background_verify: list[dict[str, Any]] = field(default_factory=list)  # outcome, requests, seconds after pending
    loadavg: list[float] = field(default_factory=list)  # 1-min load average before and after the rounds
    # requests the command's own SLO probe sent before it returned (outcome.verification.checks.slo.requests)
    promote_probe_requests: list[int | None] = field(default_factory=list)
    rollback_probe_requests: list[int | None] = field(default_factory=list)


def _version(base: str) -> int | None:
    status, body = procs.http("GET", base + "/version", timeout=2.0)
    if status != 200:
        return None
    return int(json.loads(body)["model_version"])


def _timed_command(project: Any, base: str, version: int, argv: list[str]) -> tuple[float, float, dict[str, Any]]:
    """(pin-to-serving seconds, whole-command seconds, the command's JSON) for one `shipway` command
    that re-pins."""
    import subprocess

    pinned: list[float] = []
    seen: list[float] = []
    done = threading.Event()
    before = project.stack_file.read_text()

    def watch() -> None:
        while not done.is_set():
            if not pinned and project.stack_file.read_text() != before:
                pinned.append(time.perf_counter())
            if pinned and _version(base) == version:
                seen.append(time.perf_counter())
                return
            time.sleep(0.02)

    env = {**os.environ, **project.env, "SHIPWAY_ROOT": str(project.dir)}
    watcher = threading.Thread(target=watch, daemon=True)
    t0 = time.perf_counter()
    watcher.start()
    try:
        out = subprocess.run([str(procs.PYTHON), "-m", "shipway.cli", *argv, "--allow-dirty", "--output", "json"],
                             env=env, text=True, capture_output=True, timeout=600, check=False)
        command_s = time.perf_counter() - t0
        watcher.join(30)
    finally:
        done.set()
    if out.returncode != 0:
        raise RuntimeError(f"shipway {' '.join(argv)} failed ({out.returncode}):\n{out.stdout[-2000:]}"
                           f"\n{out.stderr[-2000:]}")
    if not seen:
        raise RuntimeError(f"/version never reported {version} after `shipway {' '.join(argv)}`")
    return seen[0] - pinned[0], command_s, json.loads(out.stdout)


def probe_requests(said: dict[str, Any]) -> int | None:
    """Requests the command's SLO probe sent before it returned, from its JSON outcome (None if absent)."""
    checks = (said.get("verification") or {}).get("checks") or {}
    requests = (checks.get("slo") or {}).get("requests")
    return int(requests) if isinstance(requests, int | float) else None


def _background_verifications(project: Any, wait_s: float = 60.0) -> list[dict[str, Any]]:
    """Each pending (smoke-only) verify record and the background record that follows it."""
    from datetime import datetime

    from shipway.audit import AuditLog

    log = AuditLog(project.dir / ".shipway" / "audit" / "audit.jsonl")
    deadline = time.monotonic() + wait_s
    while True:
        records = log.records()
        pending = [r for r in records if r["action"] == "verify" and r["outcome"] == "pending"]
        follow = {(r.get("details") or {}).get("follows"): r for r in records
                  if r["action"] == "verify" and (r.get("details") or {}).get("background")}
        if all(p["seq"] in follow for p in pending) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out = []
    for p in pending:
        f = follow.get(p["seq"])
        if f is None:
            out.append({"version": p["to_version"], "outcome": "none after 60 s", "requests": None, "after_s": None})
            continue
        probe = (f.get("verification") or {}).get("probe") or {}
        after = (datetime.fromisoformat(f["ts"]) - datetime.fromisoformat(p["ts"])).total_seconds()
        out.append({"version": p["to_version"], "outcome": f["outcome"], "requests": probe.get("requests"),
                    "p99_ms": probe.get("p99_ms"), "after_s": after})
    return out


def _shipway(project: Any, argv: list[str]) -> None:
    import subprocess

    env = {**os.environ, **project.env, "SHIPWAY_ROOT": str(project.dir)}
    out = subprocess.run([str(procs.PYTHON), "-m", "shipway.cli", *argv], env=env, text=True,
                         capture_output=True, timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"shipway {' '.join(argv)} failed ({out.returncode}):\n{out.stdout[-2000:]}"
                           f"\n{out.stderr[-2000:]}")


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
        project = make_project(Path(tmp), stack="local")
        loadgen: procs.Proc | None = None
        try:
            store, artifacts = project.tracking_store
            Path(store.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            v1 = train_and_register(store, variant="baseline", artifact_root=artifacts).version
            v2 = train_and_register(store, variant="forest", artifact_root=artifacts).version
            project.pin(MODEL, v1)
            progress("promotion: first pulumi up of the throwaway local stack")
            # `platform up` as a user runs it: the first up verifies v1 and records it as known-good.
            out.first_up_s = _timed(lambda: _shipway(project, ["platform", "up", "--stack", "local", "--no-train"]))
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
            env = {**os.environ, "BENCH_API_KEY": project.api_key}
            loadgen = procs.start([str(procs.PYTHON), "-m", "benchmarks.loadgen", base + "/invocations",
                                   str(body), str(result_file), "--rate", str(rate), "--concurrency", "8",
                                   "--max-seconds", "900"], logs / "loadgen.log", env=env, cwd=procs.ROOT)
            time.sleep(2)
            out.loadavg.append(os.getloadavg()[0])
            for i in range(rounds):
                serving_s, up_s, said = _timed_command(project, base, v2, [
                    "model", "promote", MODEL, "--to", "local", "--version", str(v2), "--apply"])
                out.promote_timings.append(dict(said.get("timings") or {}))
                out.promote_probe_requests.append(probe_requests(said))
                out.promote_serving_s.append(serving_s)
                out.promote_up_s.append(up_s)
                progress(f"promotion round {i + 1}: promote command {up_s:.1f}s (pin to serving {serving_s:.1f}s)")
                serving_s, up_s, said = _timed_command(project, base, v1,
                                                       ["model", "rollback", MODEL, "--env", "local"])
                out.rollback_serving_s.append(serving_s)
                out.rollback_up_s.append(up_s)
                out.rollback_status.append(str(said.get("status")))
                out.rollback_timings.append(dict(said.get("timings") or {}))
                out.rollback_probe_requests.append(probe_requests(said))
                progress(f"promotion round {i + 1}: rollback command {up_s:.1f}s (pin to serving {serving_s:.1f}s)")
            time.sleep(2)
            out.loadavg.append(os.getloadavg()[0])
            procs.stop(loadgen)
            loadgen = None
            out.background_verify = _background_verifications(project)
            progress(f"promotion: background verifications {out.background_verify}")
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


def main() -> None:
    import argparse
    import dataclasses

    p = argparse.ArgumentParser(prog="python -m benchmarks.promotion", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="promote + rollback pairs (default 3)")
    p.add_argument("--rate", type=float, default=120.0, help="paced load in requests/s (default 120)")
    p.add_argument("--json-out", type=Path, help="write the raw samples here")
    args = p.parse_args()
    res = run(args.rounds, args.rate, progress=lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True))
    raw = dataclasses.asdict(res)
    if args.json_out:
        args.json_out.write_text(json.dumps(raw, indent=2, default=str))
    print(json.dumps({k: v for k, v in raw.items() if k != "load"}, default=str))


if __name__ == "__main__":
    main()
