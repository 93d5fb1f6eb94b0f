"""Processes the benchmarks start: launched in their own session, stopped by PID, always.

Every helper that starts something returns a :class:`Proc`; callers stop it in a ``finally``.
Stopping signals the process group whose id is the PID we started (``start_new_session``), so
a server's own workers (``mlflow models serve`` runs uvicorn as a child) go too, and nothing
else on this shared machine is touched.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
RESULTS_DIR = ROOT / "benchmarks" / "results"  # gitignored: logs of the last run, raw JSON


def log_dir(name: str) -> Path:
    """``benchmarks/results/logs/<name>``: kept after the run so a failed server can be diagnosed."""
    path = RESULTS_DIR / "logs" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Proc:
    """A started process and the log file its output goes to."""

    popen: subprocess.Popen[bytes]
    log: Path
    started: float
    wall_started: float  # time.time() at launch, to line up with the timestamps in its log

    @property
    def pid(self) -> int:
        return self.popen.pid


def start(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    """Start ``argv`` in a new session with stdout+stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[bytes]
    with open(log, "ab") as handle:
        popen = subprocess.Popen(  # noqa: S603 - argv built by the harness, never a shell
            list(argv), stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
        )
    return Proc(popen, log, time.perf_counter(), time.time())


def stop(proc: Proc | None, grace: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it after ``grace`` seconds."""
    if proc is None or proc.popen.poll() is not None:
        _reap_group(proc)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.popen.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.popen.wait(5)
    _reap_group(proc)


def _reap_group(proc: Proc | None) -> None:
    """Children left in our group after the leader exited (uvicorn workers) get SIGKILL."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
         timeout: float = 5.0) -> tuple[int, bytes]:
    """One request to a loopback URL; (status, body), status 0 when the connection failed."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"url: {url!r} is not valid; benchmarks only send traffic to http://127.0.0.1")
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only, checked above
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_for_200(proc: Proc, method: str, url: str, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = 120.0,
                 interval: float = 0.02) -> float:
    """Seconds from the process start to the first 200 from ``url``; raises if it died or timed out."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.popen.returncode}; see {proc.log}")
        status, _ = http(method, url, body, headers, timeout=2.0)
        if status == 200:
            return time.perf_counter() - proc.started
        time.sleep(interval)
    raise RuntimeError(f"no 200 from {url} within {timeout:.0f}s; see {proc.log}")


def descendants(pid: int) -> list[int]:
    """``pid`` and every live descendant (read from /proc, Linux only)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` and its descendants, in MiB (None if it is gone)."""
    total = 0
    seen = False
    for p in descendants(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    seen = True
        except OSError:
            continue
    return total / 1024 if seen else None


def machine() -> dict[str, Any]:
    """Cores, RAM, CPU model and load: the context every number in RESULTS.md needs."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gb = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {"cores": os.cpu_count(), "ram_gb": ram_gb, "cpu": cpu, "kernel": platform.release(),
            "load_avg": os.getloadavg()}


def command_output(argv: Sequence[str], timeout: float = 60.0) -> str:
    """First line of a command's output, or ``unavailable`` (for version strings)."""
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"
