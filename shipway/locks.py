"""One promotion or rollback per environment at a time: an O_EXCL lock file holding its owner.

``.shipway/locks/<env>.lock`` is created with O_EXCL and holds the owner's pid and host; a lock
whose pid is dead on this host (or an empty lock older than a minute) is stale and taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from shipway.audit import utc_now

# An empty lock file older than this was left by a process that died while taking it.
EMPTY_LOCK_GRACE_S = 60.0


class LockBusy(RuntimeError):
    """Another promotion or rollback holds the environment's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def env_lock(root: Path, env: str) -> Iterator[Path]:
    """Exclusive per-env lock file (O_EXCL + pid); a dead owner's lock is taken over."""
    path = Path(root) / ".shipway" / "locks" / f"{env}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()})
    for attempt in (1, 2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            holder = _read_lock(path)
            if attempt == 1 and _is_stale(holder, path):
                path.unlink(missing_ok=True)
                continue
            raise LockBusy(
                f"another promotion or rollback of '{env}' is in progress (pid {holder.get('pid')} "
                f"on {holder.get('host')} since {holder.get('since')}); wait for it, or remove "
                f"{path} if that process is gone"
            ) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
        break
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _read_lock(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _is_stale(holder: Mapping[str, Any], path: Path) -> bool:
    """Stale only when we can prove it: same host and the pid no longer exists, or an owner
    died between creating the file and writing its pid (empty file older than a minute)."""
    if not holder:
        try:
            return time.time() - path.stat().st_mtime > EMPTY_LOCK_GRACE_S
        except OSError:
            return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return False
    return not _pid_alive(pid)
