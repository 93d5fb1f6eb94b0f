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
    body = {k: v for k, v in records[0].items() if k not in ("hash", "mac")}
    expected = audit.hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert records[0]["hash"] == expected
    key = log.key_file.read_text().strip().encode()
    assert records[0]["mac"] == audit.hmac.new(key, expected.encode(), audit.hashlib.sha256).hexdigest()
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


def _rewrite_from(trail: AuditLog, index: int, change) -> None:
    """What an attacker without the key can do: edit a record and recompute every later hash
    and link, then rewrite the head to match (copying the old MACs is all they can do)."""
    records = [json.loads(x) for x in lines(trail)]
    change(records[index])
    prev = records[index - 1]["hash"] if index else audit.GENESIS_HASH
    for rec in records[index:]:
        rec["prev_hash"] = prev
        rec["hash"] = audit.record_hash(rec)
        prev = rec["hash"]
    write(trail, [audit.canonical_json(r) for r in records])
    trail.head_path.write_text(audit.canonical_json({"seq": records[-1]["seq"], "hash": prev,
                                                     "mac": records[-1]["mac"]}))


def test_edit_with_every_later_hash_recomputed_fails_the_mac_at_the_edited_seq(log: AuditLog):
    _rewrite_from(log, 1, lambda rec: rec.update(actor="mallory@example.com"))
    result = AuditLog(log.path).verify()
    assert (result.ok, result.bad_seq) == (False, 2)
    assert result.reason == ("seq 2: MAC does not match (record rewritten without the audit key, or written "
                             "with another key)")


def test_a_different_key_cannot_verify_the_trail(log: AuditLog):
    result = AuditLog(log.path, key=b"k" * 64).verify()
    assert (result.ok, result.bad_seq) == (False, 1)


def test_without_the_key_a_non_empty_trail_does_not_verify(log: AuditLog):
    log.key_file.unlink()
    result = AuditLog(log.path).verify()
    assert result.ok is False
    assert result.reason.startswith("no audit key: set SHIPWAY_AUDIT_KEY or put the key in ")


def test_key_from_the_environment_wins_and_a_short_one_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SHIPWAY_AUDIT_KEY", "x" * 40)
    trail = AuditLog(tmp_path / "a" / "audit.jsonl")
    trail.append(actor="a@b.c", action="promote", env="dev", model="m")
    assert not trail.key_file.exists()
    assert AuditLog(trail.path).verify().ok
    monkeypatch.setenv("SHIPWAY_AUDIT_KEY", "short")
    with pytest.raises(AuditError, match=r"^SHIPWAY_AUDIT_KEY: a 5-character key is too short"):
        AuditLog(tmp_path / "b" / "audit.jsonl").append(actor="a@b.c", action="promote", env="dev", model="m")


def test_log_head_and_key_are_private_files(log: AuditLog):
    for path in (log.path, log.head_path, log.key_file):
        assert oct(path.stat().st_mode & 0o777) == "0o600", path


def test_a_world_readable_key_is_refused(log: AuditLog):
    log.key_file.chmod(0o644)
    result = AuditLog(log.path).verify()
    assert result.ok is False and result.reason.endswith("run `chmod 600 " + str(log.key_file) + "`")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


def test_truncation_with_a_rewritten_head_is_caught_by_the_head_committed_to_git(log: AuditLog, tmp_path: Path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", str(log.path), str(log.head_path))
    _git(tmp_path, "commit", "-q", "-m", "audit")
    assert AuditLog(log.path).verify() == audit.VerifyResult(True, 4)
    # Delete the last record and rewrite the head to match what is left (the attack).
    content = lines(log)[:-1]
    write(log, content)
    last = json.loads(content[-1])
    log.head_path.write_text(audit.canonical_json({"seq": last["seq"], "hash": last["hash"], "mac": last["mac"]}))
    result = AuditLog(log.path).verify()
    assert (result.ok, result.bad_seq) == (False, 4)
    assert result.reason.startswith("seq 4: anchored in git commit ")
    assert result.reason.endswith("but missing in the log (records removed or rewritten after they were committed)")


def test_explicit_anchors_catch_a_rewritten_record(log: AuditLog):
    good = log.records()
    anchors = [audit.Anchor(3, good[2]["hash"], "MLflow tag on iris-classifier v3")]
    assert log.verify(anchors=anchors).ok
    result = log.verify(anchors=[audit.Anchor(3, "f" * 64, "MLflow tag on iris-classifier v3")])
    assert (result.ok, result.bad_seq) == (False, 3)
    assert "anchored in MLflow tag on iris-classifier v3 but different in the log" in result.reason


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
    assert str(err.value) == (
        "action: 'delete' is not valid; allowed: promote, rollback, apply, prepare, verify, incident")


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


def test_first_up_records_the_pinned_version_as_known_good_once(tmp_path: Path):
    trail = AuditLog(tmp_path / "audit.jsonl")
    calls = []

    def check():
        calls.append(1)
        return audit.FirstVerification(True, {"checks": [{"name": "version", "ok": True}]})

    record = audit.record_first_known_good(trail, env="local", model="iris", version=1, actor="a@b.c",
                                           commit=None, verify=check)
    assert (record["action"], record["outcome"], record["to_version"]) == ("verify", "ok", 1)
    assert trail.last_known_good("local", "iris", exclude=2) == 1  # rollback from v2 has a target
    assert audit.record_first_known_good(trail, env="local", model="iris", version=1, actor="a@b.c",
                                         commit=None, verify=check) is None
    assert calls == [1]  # already known-good: not verified or recorded again


def test_a_first_check_that_fails_or_crashes_is_recorded_failed_and_is_not_known_good(tmp_path: Path):
    trail = AuditLog(tmp_path / "audit.jsonl")

    def crash():
        raise ConnectionError("refused")

    record = audit.record_first_known_good(trail, env="local", model="iris", version=1, actor="a@b.c",
                                           commit=None, verify=crash)
    assert (record["outcome"], record["verification"]) == ("failed", {"error": "ConnectionError: refused"})
    assert trail.known_good_versions("local", "iris") == []


def test_gitignore_commits_the_log_and_head_but_never_the_key_or_lock():
    root = Path(__file__).resolve().parents[3]

    def ignored(rel: str) -> bool:
        return subprocess.run(["git", "-C", str(root), "check-ignore", "-q", rel], check=False).returncode == 0

    assert not ignored(".shipway/audit/audit.jsonl") and not ignored(".shipway/audit/audit.head")
    assert ignored(".shipway/audit/audit.key") and ignored(".shipway/audit/audit.lock")
    assert ignored(".shipway/state/x") and ignored(".shipway/local/local/mlflow/mlflow.db")
