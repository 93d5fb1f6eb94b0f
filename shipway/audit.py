"""Append-only, keyed, hash-chained audit trail of promotions, rollbacks, applies and verifications.

Each line of ``.shipway/audit/audit.jsonl`` is one JSON record. A record's ``hash`` is the
SHA-256 of the canonical JSON of the record without ``hash``/``mac``, and it carries the
previous record's hash as ``prev_hash``; so editing a field, deleting or reordering records
breaks the chain at a precise ``seq``.

A plain hash chain can be recomputed by anyone who edits the file, so each record also
carries ``mac`` = HMAC-SHA256(audit key, hash). The key is a shared secret that is never in
git: ``SHIPWAY_AUDIT_KEY`` (CI and the team's secret store) or the 0600 file ``audit.key``
beside the log (gitignored, created on first append). Recomputing hashes without the key
fails ``verify``.

Cutting records off the *end* keeps a valid chain, so every append also rewrites a small
``audit.head`` (last seq + hash + mac). A rewritten head can be made consistent with a
truncated log, so heads are anchored outside the file too: the log and head are committed
to git, and ``verify`` checks that every head ever committed (``git log`` of the head
file) is still in the log with the same hash. Removing a committed record therefore needs
a history rewrite, which review and branch protection show.

The trail answers "who changed what, when, why, from which commit, on what evidence", so
the actor comes from git (or an explicit ``--actor``), never from ``$USER``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS_HASH = "0" * 64
DEFAULT_RELATIVE_PATH = Path(".shipway/audit/audit.jsonl")
ACTIONS = ("promote", "rollback", "apply", "prepare", "verify", "incident")

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
    "mac",
)

KEY_ENV = "SHIPWAY_AUDIT_KEY"
KEY_FILE_NAME = "audit.key"


class AuditError(RuntimeError):
    """The audit trail cannot be read or written."""


def canonical_json(record: Mapping[str, Any]) -> str:
    """One byte-stable serialisation, so the hash does not depend on key order or spacing."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the record without its own ``hash`` and ``mac``."""
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def record_mac(key: bytes, record_hash_hex: str) -> str:
    """HMAC-SHA256 of a record's hash: only holders of the audit key can produce it."""
    return hmac.new(key, record_hash_hex.encode("ascii"), hashlib.sha256).hexdigest()


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with mode 0600 (the trail names people and reasons)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def resolve_key(key_file: Path, *, create: bool, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The audit key: ``SHIPWAY_AUDIT_KEY`` if set, else ``key_file`` (created 0600 if ``create``)."""
    env = os.environ if environ is None else environ
    value = env.get(KEY_ENV, "").strip()
    if value:
        if len(value) < 32:
            raise AuditError(f"{KEY_ENV}: a {len(value)}-character key is too short; use at least 32 random "
                             "characters (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        return value.encode("utf-8")
    if key_file.exists():
        if key_file.stat().st_mode & 0o077:
            raise AuditError(f"{key_file}: the audit key is readable by other users; run `chmod 600 {key_file}`")
        return key_file.read_text().strip().encode("utf-8")
    if not create:
        return None
    _write_private(key_file, secrets.token_hex(32) + "\n")
    return key_file.read_text().strip().encode("utf-8")


@dataclass(frozen=True)
class Anchor:
    """A (seq, hash) pair recorded outside the log, e.g. a committed head; ``source`` says where."""

    seq: int
    hash: str
    source: str


def git_anchors(head_path: Path, limit: int = 200) -> list[Anchor]:
    """Every version of ``head_path`` committed to git (newest first, at most ``limit``)."""
    repo = head_path.parent
    if not repo.exists():
        return []
    top = _git(repo, "rev-parse", "--show-toplevel")
    if top is None:
        return []
    rel = os.path.relpath(head_path.resolve(), Path(top).resolve())
    commits = _git(Path(top), "log", f"-{limit}", "--format=%H", "--", rel)
    anchors = []
    for commit in (commits or "").split():
        text = _git(Path(top), "show", f"{commit}:{rel}")
        try:
            head = json.loads(text or "")
            anchors.append(Anchor(int(head["seq"]), str(head["hash"]), f"git commit {commit[:12]}"))
        except (ValueError, KeyError, TypeError):
            continue  # the head was deleted in that commit
    return anchors


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

    def __init__(self, path: Path, key: bytes | None = None):
        self.path = Path(path)
        self.head_path = self.path.with_suffix(".head")
        self.key_file = self.path.with_name(KEY_FILE_NAME)
        self._key = key

    def key(self, *, create: bool) -> bytes | None:
        """The audit key (explicit, ``SHIPWAY_AUDIT_KEY`` or ``audit.key``); created on first append."""
        if self._key is None:
            self._key = resolve_key(self.key_file, create=create)
        return self._key

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
        key = self.key(create=True)
        assert key is not None  # noqa: S101 - create=True always yields a key
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
            record["mac"] = record_mac(key, record["hash"])
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
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
        head = {"seq": record["seq"], "hash": record["hash"], "mac": record["mac"]}
        _write_private(self.head_path, canonical_json(head) + "\n")

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
    def verify(self, anchors: Iterable[Anchor] | None = None) -> VerifyResult:
        """Walk the chain; report the first record whose seq, link, hash or MAC is wrong, then
        check the head and every anchor (default: heads committed to git)."""
        try:
            key = self.key(create=False)
        except AuditError as exc:
            return VerifyResult(False, 0, 1, str(exc))
        result, hashes = self._verify_chain(key)
        if not result.ok:
            return result
        head = self._check_head(result.records, hashes[-1] if hashes else GENESIS_HASH)
        if not head.ok:
            return head
        for anchor in git_anchors(self.head_path) if anchors is None else anchors:
            if anchor.seq > len(hashes) or (anchor.seq >= 1 and hashes[anchor.seq - 1] != anchor.hash):
                found = "missing" if anchor.seq > len(hashes) else "different"
                return VerifyResult(False, result.records, min(anchor.seq, len(hashes) + 1),
                                    f"seq {anchor.seq}: anchored in {anchor.source} but {found} in the log "
                                    "(records removed or rewritten after they were committed)")
        return result

    def _verify_chain(self, key: bytes | None) -> tuple[VerifyResult, list[str]]:
        """The chain alone: seq, links, hashes and (with the key) MACs. Returns the hashes too."""
        if key is None and self._lines():
            return VerifyResult(False, 0, 1, f"no audit key: set {KEY_ENV} or put the key in {self.key_file}; "
                                             "without it the trail cannot be told from a rewritten one"), []
        hashes: list[str] = []
        lines = self._lines()
        prev_hash = GENESIS_HASH
        count = 0
        for expected_seq, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                return VerifyResult(False, count, expected_seq, f"seq {expected_seq}: line is not valid JSON"), hashes
            if not isinstance(record, dict):
                return VerifyResult(
                    False, count, expected_seq, f"seq {expected_seq}: line is not a JSON object"
                ), hashes
            seq = record.get("seq")
            if seq != expected_seq:
                return VerifyResult(
                    False,
                    count,
                    expected_seq,
                    f"seq {expected_seq}: found seq {seq!r} where seq {expected_seq} belongs "
                    "(records deleted or reordered)",
                ), hashes
            if record.get("prev_hash") != prev_hash:
                return VerifyResult(
                    False,
                    count,
                    expected_seq,
                    f"seq {expected_seq}: prev_hash does not match the hash of seq "
                    f"{expected_seq - 1} (records deleted or reordered)",
                ), hashes
            if record.get("hash") != record_hash(record):
                return VerifyResult(
                    False,
                    count,
                    expected_seq,
                    f"seq {expected_seq}: hash does not match its content (record edited)",
                ), hashes
            if key is not None and not hmac.compare_digest(str(record.get("mac") or ""),
                                                           record_mac(key, record["hash"])):
                reason = (f"seq {expected_seq}: MAC does not match (record rewritten without the audit key, "
                          "or written with another key)")
                return VerifyResult(False, count, expected_seq, reason), hashes
            prev_hash = record["hash"]
            hashes.append(prev_hash)
            count += 1
        return VerifyResult(True, count), hashes

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


@dataclass(frozen=True)
class FirstVerification:
    """What a first-deploy check found: ``ok`` and the evidence stored with the record."""

    ok: bool
    evidence: Mapping[str, Any]


def record_first_known_good(
    log: AuditLog,
    *,
    env: str,
    model: str,
    version: int,
    actor: str,
    commit: str | None,
    verify: Any,
    reason: str = "first deploy of this model in this environment",
) -> dict[str, Any] | None:
    """Verify and record ``version`` when ``env`` has no known-good version of ``model`` yet.

    The first `up` of a model (``make up`` / ``shipway platform up``) never went through
    ``promote --apply``, so without this nothing would be known-good and ``rollback``
    without ``--to`` would have no target. ``verify`` is a zero-argument callable returning
    a :class:`FirstVerification`; it is only called when needed. Returns the new record, or
    None when a known-good version was already recorded (nothing is appended then).
    """
    if log.known_good_versions(env, model):
        return None
    try:
        result: FirstVerification = verify()
    except Exception as exc:  # a check that cannot run is a failed verification, never a pass
        result = FirstVerification(False, {"error": f"{type(exc).__name__}: {exc}"})
    return log.append(actor=actor, action="verify", env=env, model=model, to_version=version,
                      outcome="ok" if result.ok else "failed", reason=reason, commit=commit,
                      verification=dict(result.evidence))
