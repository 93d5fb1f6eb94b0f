"""Supervising local processes from dynamic providers: start detached, check, stop by PID.

Each server runs under a small supervisor (supervisor.py) that restarts it after a crash;
the PID the stack records is the supervisor's, and the two share a process group.

A local resource's physical identity is a process we started. It must outlive the
short-lived provider process (so it runs in its own session), be recognisable later (its
PID *and* its command line, so a recycled PID is never mistaken for ours), and be stopped
only by that PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from shipway_core import vendor_telemetry


class ProcessError(RuntimeError):
    """A supervised process did not start, become healthy, or stop."""


# The only variables a platform process inherits from whoever runs `pulumi up`. Everything
# else (PULUMI_CONFIG_PASSPHRASE, cloud credentials, tokens) stays out; what a process
# needs beyond this is passed explicitly by its provider.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
SUPERVISOR = Path(__file__).with_name("supervisor.py")


def child_env(extra: Mapping[str, str] | None = None, source: Mapping[str, str] | None = None) -> dict[str, str]:
    """An explicit, minimal environment: a few harmless variables + ``extra``; never PULUMI_*."""
    source = os.environ if source is None else source
    env = {k: source[k] for k in INHERITED_ENV if k in source}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(vendor_telemetry.OFF)  # MLflow's usage reports would leave 127.0.0.1
    env.update(extra or {})
    leaked = sorted(k for k in env if k.startswith("PULUMI_"))
    if leaked:
        raise ValueError(f"extra: {', '.join(leaked)} must not reach a platform process; pass what it needs "
                         "under another name")
    return env


def supervised(argv: Sequence[str], name: str, status_file: Path, metrics_target_file: Path | None = None,
               python: str = sys.executable) -> list[str]:
    """``argv`` wrapped in the restart-with-backoff supervisor (see supervisor.py)."""
    wrapper = [python, str(SUPERVISOR), "--name", name, "--status-file", str(status_file)]
    if metrics_target_file is not None:
        wrapper += ["--metrics-target-file", str(metrics_target_file)]
    return [*wrapper, "--", *argv]


def open_private_log(log_file: Path) -> int:
    """Open ``log_file`` for appending with mode 0600 (logs can carry request data)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # an older file may have been created world-readable
    return fd


def start(argv: Sequence[str], log_file: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached from the caller; stdout/stderr go to ``log_file`` (0600).

    ``env`` defaults to :func:`child_env` (never the caller's full environment).
    """
    fd = open_private_log(log_file)
    try:
        proc = subprocess.Popen(  # noqa: S603 - argv built by our providers, never a shell
            list(argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
            start_new_session=True, env=dict(env) if env is not None else child_env(), cwd=cwd, close_fds=True,
        )
    finally:
        os.close(fd)
    return proc


def read_status(status_file: Path) -> dict[str, object] | None:
    """The supervisor's status (restarts, child pid, state), or None if there is none yet."""
    try:
        data = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stop_leftovers(pgid: int | None, marker: str, timeout: float = 10.0) -> None:
    """SIGKILL processes left in group ``pgid`` whose command line carries ``marker``.

    When a supervisor was killed with SIGKILL its child keeps running (and holding the
    port); only processes that are provably ours (group *and* command line) are stopped.
    """
    if not pgid:
        return
    killed: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) != pgid:
                continue
        except ProcessLookupError:
            continue
        if is_ours(pid, marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    # SIGKILL is asynchronous: wait until they are gone, or the port is still taken for the
    # process about to replace them.
    deadline = time.monotonic() + timeout
    while killed and time.monotonic() < deadline:
        killed = [pid for pid in killed if is_ours(pid, marker)]
        time.sleep(0.05)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int | None, marker: str) -> bool:
    """True if ``pid`` is alive, not a zombie, and its command line contains ``marker``."""
    if not pid or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3 is the state; a zombie (Z) has exited already.
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return any(marker in part for part in cmdline(pid))


def stop(pid: int | None, marker: str, timeout: float = 15.0) -> None:
    """SIGTERM (then SIGKILL after ``timeout``) the process ``pid`` if it is still ours."""
    if not is_ours(pid, marker):
        return
    assert pid is not None  # noqa: S101 - narrowed by is_ours
    # Started with start_new_session, so the process leads its own group: signal the
    # group, or servers that fork workers (mlflow -> uvicorn) leave orphans listening.
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_ours(pid, marker):
            _signal_group(pid, signal.SIGKILL, leader_gone_ok=True)
            return
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and is_ours(pid, marker):
        time.sleep(0.1)


def stop_started(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a process this provider call just started (no PID-reuse question: we hold it)."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(5)
    _signal_group(proc.pid, signal.SIGKILL, leader_gone_ok=True)  # leftovers in its group


def _signal_group(pid: int, sig: int, leader_gone_ok: bool = False) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except ProcessLookupError:
        if leader_gone_ok:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)  # leftover children still in the group
        return
    os.kill(pid, sig)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """GET ``url`` (127.0.0.1 only) and report whether it answered 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URLs we built
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log_file: Path, timeout: float = 120.0) -> None:
    """Wait until ``url`` answers 2xx; fail early (with the log tail) if the process dies.

    While the starter is still the parent, ``poll()`` is the authoritative exit check.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(url):
            return
        code = proc.poll()
        if code is not None:
            time.sleep(0.2)  # let the last log lines land
            program = Path(str(list(proc.args)[0])).name if isinstance(proc.args, list) else str(proc.args)
            raise ProcessError(f"process {program} (pid {proc.pid}) exited with code {code} before {url} "
                               f"was healthy; last log lines:\n{tail(log_file)}")
        time.sleep(0.25)
    raise ProcessError(f"{url} not healthy after {timeout:.0f}s; last log lines:\n{tail(log_file)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_holders(port: int) -> list[str]:
    """Who listens on ``port`` ("pid N pgid G: cmdline"), for an error a person can act on."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    holders = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not inodes:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        links = set()
        for fd in fds:
            with contextlib.suppress(OSError):  # an fd may close while we look
                links.add(os.readlink(fd))
        if any(f"socket:[{inode}]" in links for inode in inodes):
            with contextlib.suppress(OSError):
                holders.append(f"pid {entry.name} pgid {os.getpgid(int(entry.name))}: "
                               f"{' '.join(cmdline(int(entry.name)))[:200]}")
    return holders


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
