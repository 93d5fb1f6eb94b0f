"""Delivery figures from a real (keyed, hash-chained) audit trail: frequency, lead time, change
failure rate, time to restore; the CLI's table, JSON and Prometheus outputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipway.audit import AuditLog
from shipway.cli import app
from shipway.delivery import delivery_report, prometheus_text

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEY = b"k" * 40


def at(**delta: float) -> str:
    return (T0 + timedelta(**delta)).isoformat()


def trail(tmp_path: Path) -> AuditLog:
    """dev: v1 deployed cleanly; v2 fails verification, is rolled back and restored 10 min later.
    prod: v1 deployed a day after dev. A rejected promotion is not a deployment."""
    log = AuditLog(tmp_path / "audit.jsonl", key=KEY)

    def add(action: str, env: str, outcome: str, ts: str, to: int | None, frm: int | None = None) -> None:
        log.append(actor="ci@example.org", action=action, env=env, model="iris", from_version=frm,
                   to_version=to, outcome=outcome, ts=ts)

    add("promote", "dev", "pinned", at(hours=0), 1)
    add("apply", "dev", "succeeded", at(minutes=2), 1)
    add("verify", "dev", "ok", at(minutes=3), 1)
    add("promote", "prod", "pinned", at(hours=24), 1)
    add("apply", "prod", "succeeded", at(hours=24, minutes=2), 1)
    add("verify", "prod", "ok", at(hours=24, minutes=3), 1)
    add("promote", "dev", "rejected", at(hours=30), 3, 1)
    add("promote", "dev", "pinned", at(hours=48), 2, 1)
    add("apply", "dev", "succeeded", at(hours=48, minutes=5), 2)
    add("verify", "dev", "failed", at(hours=48, minutes=10), 2)
    add("rollback", "dev", "pinned", at(hours=48, minutes=11), 1, 2)
    add("apply", "dev", "succeeded", at(hours=48, minutes=15), 1)
    add("verify", "dev", "ok", at(hours=48, minutes=20), 1)
    return log


REGISTERED = {1: T0 - timedelta(hours=2), 2: T0 + timedelta(hours=47)}


def test_the_four_figures_per_model_and_environment(tmp_path: Path) -> None:
    rows = delivery_report(trail(tmp_path).records(), now=T0 + timedelta(days=4),
                           registered_at=lambda m, v: REGISTERED.get(v))
    by_env = {r.env: r for r in rows}
    dev, prod = by_env["dev"], by_env["prod"]
    assert (dev.deployments, dev.versions, dev.deployments_per_day) == (2, [1, 2], 0.5)
    assert dev.lead_time_hours_median == 1.5  # v1: 2 h, v2: 1 h
    assert (dev.change_failures, dev.change_failure_rate) == (1, 0.5)
    assert dev.time_to_restore_minutes_median == 10.0  # failed verify 48h10 -> verify ok 48h20
    assert dev.unrestored_failures == 0
    assert (prod.deployments, prod.lead_time_hours_median, prod.change_failure_rate) == (1, 26.0, 0.0)
    assert prod.time_to_restore_minutes_median is None
    assert {r.lead_time_basis for r in rows} == {"registry"}


def test_env_and_since_filter_and_lead_time_falls_back_to_the_trail(tmp_path: Path) -> None:
    records = trail(tmp_path).records()
    [row] = delivery_report(records, now=T0 + timedelta(days=4), env="dev", since=T0 + timedelta(hours=40))
    assert (row.env, row.deployments, row.versions) == ("dev", 1, [2])
    assert row.deployments_per_day == 0.4286  # 1 deploy in the 56 h from --since to now
    assert row.lead_time_basis == "first_audit_record"
    # Without registration times v2's clock starts at its first record: its own promotion.
    assert row.lead_time_hours_median == 0.0
    assert delivery_report(records, now=T0 + timedelta(days=4), env="test") == []


def test_a_failure_without_a_passing_verification_is_unrestored(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    log.append(actor="a@x", action="promote", env="prod", model="m", to_version=4, outcome="pinned", ts=at())
    log.append(actor="a@x", action="apply", env="prod", model="m", to_version=4, outcome="failed",
               ts=at(minutes=1))
    [row] = delivery_report(log.records(), now=T0 + timedelta(days=1))
    assert (row.change_failures, row.unrestored_failures, row.time_to_restore_minutes_median) == (1, 1, None)


def test_closed_incidents_are_counted_with_their_duration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = trail(tmp_path)
    for i, (minutes, env) in enumerate(((42.0, "prod"), (18.0, "prod"), (5.0, "dev"))):
        log.append(actor="oncall@example.org", action="incident", env=env, model="iris", outcome="closed",
                   ts=at(hours=60 + i), details={"duration_minutes": minutes})
    rows = delivery_report(log.records(), now=T0 + timedelta(days=4))
    by_env = {r.env: r for r in rows}
    assert (by_env["prod"].incidents, by_env["prod"].incident_minutes_median) == (2, 30.0)
    assert (by_env["dev"].incidents, by_env["dev"].incident_minutes_median) == (1, 5.0)
    assert by_env["prod"].deployments == 1  # incidents are not deployments
    assert 'shipway_delivery_incidents{model="iris",env="prod"} 2' in prometheus_text(rows)


def test_prometheus_export_leaves_out_figures_that_do_not_exist(tmp_path: Path) -> None:
    rows = delivery_report(trail(tmp_path).records(), now=T0 + timedelta(days=4),
                           registered_at=lambda m, v: REGISTERED.get(v))
    text = prometheus_text(rows)
    assert 'shipway_delivery_deployments{model="iris",env="dev"} 2' in text
    assert 'shipway_delivery_change_failure_ratio{model="iris",env="dev"} 0.5' in text
    assert 'shipway_delivery_time_to_restore_minutes{model="iris",env="dev"} 10' in text
    assert 'shipway_delivery_time_to_restore_minutes{model="iris",env="prod"}' not in text
    assert "# TYPE shipway_delivery_lead_time_hours gauge" in text


def test_cli_json_and_bad_input(tmp_path: Path) -> None:
    trail(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["report", "delivery", "--audit-log", str(tmp_path / "audit.jsonl"),
                                 "--env", "prod", "--output", "json"], env={"SHIPWAY_AUDIT_KEY": ""})
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    assert [(r["env"], r["deployments"]) for r in doc["rows"]] == [("prod", 1)]
    bad = runner.invoke(app, ["report", "delivery", "--audit-log", str(tmp_path / "audit.jsonl"),
                              "--since", "last tuesday"])
    assert bad.exit_code == 2
    assert "'last tuesday' is not a date; use YYYY-MM-DD" in bad.output
    wrong_env = runner.invoke(app, ["report", "delivery", "--env", "staging"])
    assert wrong_env.exit_code == 2 and "'staging' is not an environment" in wrong_env.output


@pytest.mark.parametrize("fmt", ["table", "prometheus"])
def test_cli_table_and_prometheus(tmp_path: Path, fmt: str) -> None:
    trail(tmp_path)
    result = CliRunner().invoke(app, ["report", "delivery", "--audit-log", str(tmp_path / "audit.jsonl"),
                                      "--output", fmt])
    assert result.exit_code == 0, result.output
    assert ("Shipway delivery report" if fmt == "table" else 'shipway_delivery_deployments{model="iris"') \
        in result.stdout
