"""The hash-chained audit trail: append, verify, and every kind of tampering caught by seq."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shipway import audit
from shipway.audit import AuditError, AuditLog


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    trail = AuditLog(tmp_path / ".shipway" / "audit" / "audit.jsonl")
    for seq, (action, outcome) in enumerate(
        [("promote", "pinned"), ("apply", "succeeded"), ("verify", "ok"), ("promote", "pinned")], start=1
    ):
        trail.append(
            actor="alice@example.com",
            action=action,
            env="dev",
            model="iris-classifier",
            from_version=1,
            to_version=seq,
            outcome=outcome,
            reason=f"step {seq}",
            commit=None,
            ts=f"2026-11-26T06:0{seq}:00+00:00",
        )
    return trail


def lines(trail: AuditLog) -> list[str]:
    return trail.path.read_text().splitlines()


def write(trail: AuditLog, new_lines: list[str]) -> None:
    trail.path.write_text("".join(line + "\n" for line in new_lines))


def test_records_are_chained_and_hashed_over_canonical_json(log: AuditLog):
    records = log.records()
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert records[0]["prev_hash"] == audit.GENESIS_HASH
    for prev, rec in zip(records, records[1:], strict=False):
        assert rec["prev_hash"] == prev["hash"]
    body = {k: v for k, v in records[0].items() if k != "hash"}
    expected = audit.hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert records[0]["hash"] == expected
    assert set(records[0]) == set(audit.RECORD_FIELDS)
    assert log.verify() == audit.VerifyResult(True, 4)


def test_each_line_is_canonical_json(log: AuditLog):
    first = lines(log)[0]
    assert first == audit.canonical_json(json.loads(first))


def test_timestamps_default_to_utc_iso():
    assert audit.utc_now().endswith("+00:00")


def test_edited_field_is_caught_at_its_seq(log: AuditLog):
    content = lines(log)
    rec = json.loads(content[1])
    rec["to_version"] = 99
    content[1] = audit.canonical_json(rec)
    write(log, content)
    result = log.verify()
    assert (result.ok, result.bad_seq) == (False, 2)
    assert result.reason == "seq 2: hash does not match its content (record edited)"


def test_edit_with_recomputed_hash_is_caught_at_the_next_link(log: AuditLog):
    content = lines(log)
    rec = json.loads(content[1])
    rec["actor"] = "mallory@example.com"
    rec["hash"] = audit.record_hash(rec)
    content[1] = audit.canonical_json(rec)
    write(log, content)
    result = log.verify()
    assert (result.bad_seq, result.reason) == (
        3,
        "seq 3: prev_hash does not match the hash of seq 2 (records deleted or reordered)",
    )


def test_deleted_record_is_caught(log: AuditLog):
    content = lines(log)
    del content[1]
    write(log, content)
    result = log.verify()
    assert (result.bad_seq, result.reason) == (
        2,
        "seq 2: found seq 3 where seq 2 belongs (records deleted or reordered)",
    )


def test_reordered_records_are_caught(log: AuditLog):
    content = lines(log)
    content[1], content[2] = content[2], content[1]
    write(log, content)
    assert log.verify().bad_seq == 2


def test_truncated_chain_is_caught_by_the_head(log: AuditLog):
    write(log, lines(log)[:2])
    result = log.verify()
    assert (result.ok, result.bad_seq) == (False, 3)
    assert result.reason == "seq 3: chain truncated; the log ends at seq 2 but the head records seq 4"


def test_partially_written_last_line_is_caught(log: AuditLog):
    content = lines(log)
    content[-1] = content[-1][:40]
    write(log, content)
    assert (log.verify().bad_seq, log.verify().reason) == (4, "seq 4: line is not valid JSON")
    with pytest.raises(AuditError, match="line 4 is not valid JSON"):
        log.records()


def test_removed_head_file_is_reported(log: AuditLog):
    log.head_path.unlink()
    result = log.verify()
    assert (result.ok, result.bad_seq) == (False, 5)


def test_empty_trail_verifies(tmp_path: Path):
    assert AuditLog(tmp_path / "audit.jsonl").verify() == audit.VerifyResult(True, 0)


def test_appending_continues_the_chain_after_reload(log: AuditLog):
    again = AuditLog(log.path)
    rec = again.append(
        actor="bob@example.com",
        action="rollback",
        env="dev",
        model="iris-classifier",
        from_version=4,
        to_version=3,
        outcome="pinned",
    )
    assert rec["seq"] == 5 and rec["prev_hash"] == log.records()[3]["hash"]
    assert again.verify().ok


def test_unknown_action_is_rejected(tmp_path: Path):
    with pytest.raises(ValueError) as err:
        AuditLog(tmp_path / "a.jsonl").append(actor="a", action="delete", env="dev", model="m")
    assert str(err.value) == "action: 'delete' is not valid; allowed: promote, rollback, apply, verify"


def test_last_known_good_is_the_newest_verified_version(tmp_path: Path):
    trail = AuditLog(tmp_path / "a.jsonl")
    for version, outcome in [(1, "ok"), (2, "ok"), (3, "failed")]:
        trail.append(actor="a", action="verify", env="dev", model="m", to_version=version, outcome=outcome)
    trail.append(actor="a", action="verify", env="prod", model="m", to_version=7, outcome="ok")
    assert trail.known_good_versions("dev", "m") == [2, 1]
    assert trail.last_known_good("dev", "m", exclude=3) == 2
    assert trail.last_known_good("dev", "m", exclude=2) == 1
    assert trail.last_known_good("test", "m") is None


def test_actor_comes_from_git_or_the_option_never_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("USER", "root")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "empty-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    assert audit.resolve_actor(tmp_path, "carol@example.com") == "carol@example.com"
    with pytest.raises(AuditError) as err:
        audit.resolve_actor(tmp_path, None)
    assert str(err.value) == "cannot determine who is acting: set `git config user.email` or pass --actor"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "config", "user.email", "dave@example.com"], check=True)
    assert audit.resolve_actor(tmp_path, None) == "dave@example.com"
    assert audit.git_commit(tmp_path) is None  # no commit yet
