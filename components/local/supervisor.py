"""A tiny supervisor for one local platform process: restart on crash, with backoff.

Run by path (``python supervisor.py --status-file F --name N -- argv...``) so it needs
nothing but the standard library and works whatever the working directory is. The stack's
dynamic providers start *this* process detached, in its own session; it starts the real
server as its child (same process group, so stopping the group stops both) and:

- restarts the child whenever it exits without being asked to stop, waiting
  ``backoff`` seconds first (doubling up to ``max_backoff``; reset once the child has run
  ``stable_after`` seconds), so a crash loop never spins the CPU;
- forwards SIGHUP to the child (the serving app hot-swaps its model on it) and turns
  SIGTERM/SIGINT into an orderly stop of the child, then exits;
- counts restarts and writes them, with the child's pid and last exit code, to a JSON
  status file (0600, replaced atomically) that ``shipway env status`` reads, and logs
  each restart as one JSON line on stderr (the process log).

Why not systemd: no user systemd on these machines, and the stack must own the lifecycle
so `pulumi destroy` stops exactly what `pulumi up` started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STATUS_VERSION = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace the status file atomically with mode 0600 (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(status, sort_keys=True).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def next_backoff(current: float, ran_for: float, *, initial: float, maximum: float, stable_after: float) -> float:
    """Delay before the next restart: reset after a stable run, else double up to ``maximum``."""
    if ran_for >= stable_after:
        return initial
    return min(maximum, max(initial, current * 2))


def reap_group_except_self() -> list[int]:
    """SIGKILL every other process in this supervisor's process group (a dead child's leftovers)."""
    me, group = os.getpid(), os.getpgid(0)
    killed: list[int] = []
    if group != me:
        return killed  # not started in our own session: the group is someone else's, never touch it
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if os.getpgid(int(entry.name)) == group:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return killed


def _log(event: str, **fields: Any) -> None:
    print(json.dumps({"ts": _now(), "logger": "shipway.supervisor", "event": event, **fields}),
          file=sys.stderr, flush=True)


class Supervisor:
    """Keeps ``argv`` running until told to stop."""

    def __init__(self, name: str, argv: Sequence[str], status_file: Path, *, backoff: float = 0.5,
                 max_backoff: float = 30.0, stable_after: float = 60.0):
        self.name = name
        self.argv = list(argv)
        self.status_file = status_file
        self.initial_backoff = backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.restarts = 0
        self.last_exit: int | None = None
        self.last_restart: str | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()

    def status(self, state: str) -> dict[str, Any]:
        return {"version": STATUS_VERSION, "name": self.name, "state": state, "supervisor_pid": os.getpid(),
                "pid": self.child.pid if self.child else None, "restarts": self.restarts,
                "last_exit_code": self.last_exit, "last_restart_at": self.last_restart, "updated_at": _now()}

    def _publish(self, state: str) -> None:
        write_status(self.status_file, self.status(state))

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Inherit our environment (already the explicit minimal one the provider built),
        # our stdout/stderr (the process log) and our process group.
        return subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, close_fds=True)  # noqa: S603

    def on_signal(self, signum: int, _frame: Any) -> None:
        child = self.child
        if signum == signal.SIGHUP:
            if child and child.poll() is None:
                child.send_signal(signal.SIGHUP)
            return
        self.stopping.set()
        if child and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        backoff = self.initial_backoff
        while not self.stopping.is_set():
            started = time.monotonic()
            self.child = self._spawn()
            self._publish("running")
            code = self.child.wait()
            if self.stopping.is_set():
                break
            self.last_exit = code
            # Servers that fork workers (mlflow -> uvicorn) leave them holding the port when
            # the parent dies; they are in our process group, so clear it before restarting.
            reap_group_except_self()
            backoff = next_backoff(backoff, time.monotonic() - started, initial=self.initial_backoff,
                                   maximum=self.max_backoff, stable_after=self.stable_after)
            self._publish("restarting")
            _log("child_exited", name=self.name, pid=self.child.pid, exit_code=code, restart_in_s=backoff,
                 restarts=self.restarts)
            if self.stopping.wait(backoff):
                break
            self.restarts += 1
            self.last_restart = _now()
            _log("child_restarted", name=self.name, restarts=self.restarts)
        self._publish("stopped")
        return 0


def serve_metrics(sup: Supervisor, target_file: Path) -> None:
    """Expose ``shipway_process_restarts_total`` on an ephemeral loopback port, and tell
    Prometheus where (a file_sd target file it watches)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = (
                "# HELP shipway_process_restarts_total Automatic restarts of a local platform process.\n"
                "# TYPE shipway_process_restarts_total counter\n"
                f'shipway_process_restarts_total{{process="{sup.name}"}} {sup.restarts}\n'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass  # scrapes every few seconds would drown the process log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = target_file.with_name(f".{target_file.name}.tmp")
    tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"process": sup.name}}]))
    os.replace(tmp, target_file)


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--status-file", required=True, type=Path)
    parser.add_argument("--metrics-target-file", type=Path, default=None)
    parser.add_argument("--backoff", type=float, default=0.5)
    parser.add_argument("--max-backoff", type=float, default=30.0)
    parser.add_argument("--stable-after", type=float, default=60.0)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    if not argv:
        parser.error("argv: nothing to supervise; pass the command after --")
    sup = Supervisor(ns.name, argv, ns.status_file, backoff=ns.backoff, max_backoff=ns.max_backoff,
                     stable_after=ns.stable_after)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, sup.on_signal)
    if ns.metrics_target_file is not None:
        serve_metrics(sup, ns.metrics_target_file)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
