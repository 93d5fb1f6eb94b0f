"""Append-only, hash-chained audit trail of promotions, rollbacks, applies and verifications.

Each line of ``.shipway/audit/audit.jsonl`` is one JSON record. A record's ``hash`` is the
SHA-256 of the canonical JSON of the record without ``hash``, and it carries the previous
record's hash as ``prev_hash``; so editing a field, deleting or reordering records breaks
the chain at a precise ``seq``. Cutting records off the *end* keeps a valid chain, so every
append also rewrites a small ``audit.head`` file (last seq + hash) next to the log; a log
that ends before its head is a truncated chain.

The trail answers "who changed what, when, why, from which commit, on what evidence", so
the actor comes from git (or an explicit ``--actor``), never from ``$USER``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS_HASH = "0" * 64
DEFAULT_RELATIVE_PATH = Path(".shipway/audit/audit.jsonl")
ACTIONS = ("promote", "rollback", "apply", "verify")

# Fields every record carries, in display order (hash-chain fields last).
RECORD_FIELDS = (
    "seq",
    "ts",
    "actor",
    "action",
    "env",
    "model",
    "from_version",
    "to_version",
    "outcome",
    "reason",
    "commit",
    "gates",
    "verification",
    "details",
    "prev_hash",
    "hash",
)


class AuditError(RuntimeError):
    """The audit trail cannot be read or written."""


def canonical_json(record: Mapping[str, Any]) -> str:
    """One byte-stable serialisation, so the hash does not depend on key order or spacing."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the record without its own ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def utc_now() -> str:
    """UTC ISO timestamp with an explicit offset: audit times must not depend on the host's zone."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip()
    return value if out.returncode == 0 and value else None


def git_actor(repo: Path) -> str | None:
    """The committer identity (``git config user.email``), the one name a reviewer can trace."""
    return _git(repo, "config", "user.email")


def git_commit(repo: Path) -> str | None:
    """``git rev-parse HEAD`` or None outside a repo / before the first commit."""
    return _git(repo, "rev-parse", "--verify", "--quiet", "HEAD")


def resolve_actor(repo: Path, explicit: str | None) -> str:
    """``--actor`` wins; else git's user.email; never the login name from the environment."""
    if explicit:
        return explicit
    actor = git_actor(repo)
    if not actor:
        raise AuditError("cannot determine who is acting: set `git config user.email` or pass --actor")
    return actor


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`AuditLog.verify`; ``bad_seq`` is the first record that breaks the chain."""

    ok: bool
    records: int
    bad_seq: int | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "bad_seq": self.bad_seq, "reason": self.reason}


class AuditLog:
    """The audit trail at ``path`` (``audit.jsonl``) with its head file beside it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.head_path = self.path.with_suffix(".head")

    # ------------------------------------------------------------------ writing
    def append(
        self,
        *,
        actor: str,
        action: str,
        env: str,
        model: str,
        from_version: int | None = None,
        to_version: int | None = None,
        outcome: str = "",
        reason: str = "",
        commit: str | None = None,
        gates: Mapping[str, Any] | None = None,
        verification: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
        ts: str | None = None,
    ) -> dict[str, Any]:
        """Append one record under an exclusive file lock and return it (with seq and hash)."""
        if action not in ACTIONS:
            raise ValueError(f"action: {action!r} is not valid; allowed: {', '.join(ACTIONS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            last = self._last_record()
            record: dict[str, Any] = {
                "seq": (last["seq"] + 1) if last else 1,
                "ts": ts or utc_now(),
                "actor": actor,
                "action": action,
                "env": env,
                "model": model,
                "from_version": from_version,
                "to_version": to_version,
                "outcome": outcome,
                "reason": reason,
                "commit": commit,
                "gates": dict(gates) if gates is not None else None,
                "verification": dict(verification) if verification is not None else None,
                "details": dict(details) if details is not None else None,
                "prev_hash": last["hash"] if last else GENESIS_HASH,
            }
            record["hash"] = record_hash(record)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(canonical_json(record) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._write_head(record)
        return record

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise appenders: two promotions must never get the same seq."""
        lock_path = self.path.with_suffix(".lock")
        with lock_path.open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _write_head(self, record: Mapping[str, Any]) -> None:
        tmp = self.head_path.with_suffix(".head.tmp")
        tmp.write_text(canonical_json({"seq": record["seq"], "hash": record["hash"]}) + "\n")
        os.replace(tmp, self.head_path)

    def _last_record(self) -> dict[str, Any] | None:
        records = self.records()
        return records[-1] if records else None

    # ------------------------------------------------------------------ reading
    def _lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first. A line that is not JSON is an error (run ``audit verify``)."""
        out = []
        for n, line in enumerate(self._lines(), start=1):
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise AuditError(
                    f"{self.path}: line {n} is not valid JSON; run `shipway audit verify`"
                ) from exc
        return out

    def query(self, *, env: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
        """Records filtered by env and/or model, oldest first."""
        return [
            r
            for r in self.records()
            if (env is None or r.get("env") == env) and (model is None or r.get("model") == model)
        ]

    def last_change(self, env: str, model: str | None = None) -> dict[str, Any] | None:
        """The newest record for an env (and model), for `env status`."""
        matches = self.query(env=env, model=model)
        return matches[-1] if matches else None

    def known_good_versions(self, env: str, model: str) -> list[int]:
        """Versions that passed deployment verification in ``env``, newest first, no repeats."""
        seen: list[int] = []
        for r in reversed(self.query(env=env, model=model)):
            v = r.get("to_version")
            if (
                r.get("action") == "verify"
                and r.get("outcome") == "ok"
                and isinstance(v, int)
                and v not in seen
            ):
                seen.append(v)
        return seen

    def last_known_good(self, env: str, model: str, *, exclude: int | None = None) -> int | None:
        """The most recently verified version other than ``exclude`` (the one being replaced)."""
        for v in self.known_good_versions(env, model):
            if v != exclude:
                return v
        return None

    # ---------------------------------------------------------------- verifying
    def verify(self) -> VerifyResult:
        """Walk the chain; report the first record whose seq, link or hash is wrong."""
        lines = self._lines()
        prev_hash = GENESIS_HASH
        count = 0
        for expected_seq, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                return VerifyResult(False, count, expected_seq, f"seq {expected_seq}: line is not valid JSON")
            if not isinstance(record, dict):
                return VerifyResult(
                    False, count, expected_seq, f"seq {expected_seq}: line is not a JSON object"
                )
            seq = record.get("seq")
            if seq != expected_seq:
                return VerifyResult(
                    False,
                    count,
                    expected_seq,
                    f"seq {expected_seq}: found seq {seq!r} where seq {expected_seq} belongs "
                    "(records deleted or reordered)",
                )
            if record.get("prev_hash") != prev_hash:
                return VerifyResult(
                    False,
                    count,
                    expected_seq,
                    f"seq {expected_seq}: prev_hash does not match the hash of seq "
                    f"{expected_seq - 1} (records deleted or reordered)",
                )
            if record.get("hash") != record_hash(record):
                return VerifyResult(
                    False,
                    count,
                    expected_seq,
                    f"seq {expected_seq}: hash does not match its content (record edited)",
                )
            prev_hash = record["hash"]
            count += 1
        return self._check_head(count, prev_hash)

    def _check_head(self, count: int, last_hash: str) -> VerifyResult:
        """Catch a chain cut off at the end, which the links alone cannot show."""
        if not self.head_path.exists():
            if count == 0:
                return VerifyResult(True, 0)
            return VerifyResult(
                False,
                count,
                count + 1,
                f"head file {self.head_path} is missing; cannot rule out a truncated chain",
            )
        try:
            head = json.loads(self.head_path.read_text())
            head_seq, head_hash = int(head["seq"]), str(head["hash"])
        except (ValueError, KeyError, TypeError):
            return VerifyResult(False, count, count + 1, f"head file {self.head_path} is unreadable")
        if head_seq > count:
            return VerifyResult(
                False,
                count,
                count + 1,
                f"seq {count + 1}: chain truncated; the log ends at seq {count} "
                f"but the head records seq {head_seq}",
            )
        if head_seq < count or head_hash != last_hash:
            return VerifyResult(
                False, count, head_seq, f"seq {head_seq}: the head file does not match the log's last record"
            )
        return VerifyResult(True, count)
