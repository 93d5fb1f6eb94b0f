"""CLI behaviour: exit codes, error messages, `--output json` shapes, help examples."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from shipway.audit import AuditLog
from shipway.commands import audit as audit_cmd
from shipway.commands import env as env_cmd
from shipway.commands import model as model_cmd
from shipway.promotion import Services
from shipway_core.config import load_stack_file
from shipway_core.local import process_status_files

from .conftest import ACTOR, MODEL

root = typer.Typer()
root.add_typer(model_cmd.app, name="model")
root.add_typer(env_cmd.app, name="env")
root.add_typer(audit_cmd.app, name="audit")


@pytest.fixture
def invoke(services: Services):
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(root, list(args), obj=services, env={"COLUMNS": "200"})

    return run


def test_root_cli_registers_the_three_nouns():
    from shipway.cli import _NOUNS

    assert {k: v[0] for k, v in _NOUNS.items() if k in ("model", "env", "audit")} == {
        "model": "shipway.commands.model",
        "env": "shipway.commands.env",
        "audit": "shipway.commands.audit",
    }


def test_promote_help_has_an_example(invoke):
    result = invoke("model", "promote", "--help")
    assert result.exit_code == 0
    assert (
        'shipway model promote iris-classifier --to test --reason "weekly retrain" --apply' in result.stdout
    )


def test_unknown_env_is_a_bad_parameter(invoke):
    result = invoke("model", "promote", MODEL, "--to", "staging")
    assert result.exit_code == 2
    assert "'staging' is not an environment; allowed: local, dev, test, prod" in result.output


def test_invalid_model_name_is_a_bad_parameter(invoke):
    result = invoke("model", "promote", "Iris_Classifier", "--to", "dev")
    assert result.exit_code == 2
    assert "'Iris_Classifier' is not a valid model name" in result.output


def test_unknown_version_is_a_bad_parameter(invoke):
    result = invoke("model", "promote", MODEL, "--to", "dev", "--version", "99")
    assert result.exit_code == 2
    assert "version 99 of model 'iris-classifier' does not exist (latest is 4)" in result.output


def test_gate_failure_exits_1_with_the_reason_and_json_evidence(invoke, repo):
    result = invoke("model", "promote", MODEL, "--to", "dev", "--version", "2", "--output", "json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert (body["ok"], body["status"], body["gates"]["passed"]) == (False, "rejected", False)
    assert body["error"].splitlines()[1] == (
        "gate 'no-regression' failed: golden accuracy 0.7667 vs current 1.0000 (drop 0.2333 > allowed 0.0100)"
    )
    assert (
        "error: gate 'metric-thresholds' failed: accuracy 0.7667 < required minimum 0.8000" in result.stderr
    )


def test_successful_promotion_json(invoke, repo):
    result = invoke(
        "model", "promote", MODEL, "--to", "dev", "--version", "4", "--reason", "retrain", "--output", "json"
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["ok"], body["status"], body["from_version"], body["to_version"], body["stack_file"]) == (
        True,
        "pinned",
        1,
        4,
        "stacks/Pulumi.dev.yaml",
    )


def test_promotion_table_output_shows_each_gate(invoke):
    result = invoke("model", "promote", MODEL, "--to", "dev", "--version", "4")
    assert result.exit_code == 0, result.output
    assert "gate data-consistency" in result.stdout and "pinned" in result.stdout


def test_actor_option_is_recorded(invoke, repo):
    invoke("model", "promote", MODEL, "--to", "dev", "--version", "4", "--actor", "erin@example.com")
    assert AuditLog(repo / ".shipway/audit/audit.jsonl").records()[-1]["actor"] == "erin@example.com"


def test_rollback_no_apply_json(invoke):
    result = invoke("model", "rollback", MODEL, "--env", "dev", "--to", "4", "--no-apply", "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "pinned"


def test_rollback_without_known_good_is_a_bad_parameter(invoke):
    result = invoke("model", "rollback", MODEL, "--env", "dev")
    assert result.exit_code == 2
    assert "no known-good version of 'iris-classifier' in 'dev'" in result.output


def test_dirty_or_broken_stack_file_exits_1_naming_it(invoke, repo):
    (repo / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  shipway:models: [oops\n")
    result = invoke("model", "promote", MODEL, "--to", "dev", "--version", "4")
    assert result.exit_code == 1
    assert f"error: stack file {repo}/stacks/Pulumi.dev.yaml is not valid YAML" in result.stderr


def test_audit_list_filter_and_verify(invoke, repo):
    invoke("model", "promote", MODEL, "--to", "dev", "--version", "4")
    invoke("model", "promote", MODEL, "--to", "test", "--version", "1")
    listed = json.loads(invoke("audit", "--env", "test", "--output", "json").stdout)["records"]
    assert [(r["env"], r["to_version"], r["actor"]) for r in listed] == [("test", 1, ACTOR)]
    table = invoke("audit")
    assert table.exit_code == 0 and "promote" in table.stdout
    ok = invoke("audit", "verify", "--output", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout) == {
        "path": str(repo / ".shipway/audit/audit.jsonl"),
        "ok": True,
        "records": 2,
        "bad_seq": None,
        "reason": "",
    }


def test_audit_verify_exits_1_on_tamper(invoke, repo):
    invoke("model", "promote", MODEL, "--to", "dev", "--version", "4")
    invoke("model", "promote", MODEL, "--to", "test", "--version", "1")
    path = repo / ".shipway/audit/audit.jsonl"
    path.write_text(path.read_text().replace('"reason":""', '"reason":"approved by cab"', 1))
    result = invoke("audit", "verify")
    assert result.exit_code == 1
    assert "seq 1: hash does not match its content (record edited) (first bad seq 1)" in result.stderr


def test_env_status_works_with_partial_information(invoke, repo, engine, registry):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    engine.outputs["dev"] = {"cloud": "local", "environment": "dev", "trackingUri": "http://127.0.0.1:1",
                             "registryUri": "http://127.0.0.1:1",
                             "endpoints": {MODEL: {"url": url, "version": 1, "status": url}}}
    engine.outputs["local"] = {}  # a stack that exists but was never deployed
    # The supervisor of dev's endpoint restarted it twice (components/local/supervisor.py writes this).
    cfg = load_stack_file(repo / "stacks" / "Pulumi.dev.yaml")
    status = process_status_files(cfg, repo)[f"endpoint/{MODEL}"]
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text(json.dumps({"version": 1, "state": "running", "restarts": 2, "pid": 1}))
    registry.client.set_registered_model_alias(MODEL, "dev", "1")
    (repo / "stacks" / "Pulumi.prod.yaml").unlink()
    invoke("model", "promote", MODEL, "--to", "test", "--version", "1")
    result = invoke("env", "status", "--output", "json")
    assert result.exit_code == 0, result.output
    envs = {row["env"]: row for row in json.loads(result.stdout)["envs"]}
    dev = envs["dev"]["models"][0]
    assert dev["restarts"] == 2 and envs["dev"]["processes"]["mlflow"] == {"state": "unknown", "restarts": None}
    assert (dev["pinned"], dev["alias"], dev["health"], dev["serving_version"]) == (1, 1, "down", None)
    test = envs["test"]["models"][0]
    assert (test["health"], test["detail"]) == ("unknown", "no stack outputs (RuntimeError)")
    assert test["last_change"]["action"] == "promote" and test["last_change"]["to_version"] == 1
    assert envs["prod"]["error"].endswith("Pulumi.prod.yaml not found; create it (see docs/promotion.md)")
    assert envs["local"]["deployed"] is False and envs["local"]["models"][0]["health"] == "not deployed"
    table = invoke("env", "status")
    assert table.exit_code == 0 and "down" in table.stdout


def test_env_status_rejects_unknown_env(invoke):
    result = invoke("env", "status", "qa")
    assert result.exit_code == 2
    assert "'qa' is not an environment" in result.output


def test_audit_log_option_points_elsewhere(invoke, tmp_path: Path):
    other = tmp_path / "elsewhere" / "audit.jsonl"
    invoke("model", "promote", MODEL, "--to", "dev", "--version", "4", "--audit-log", str(other))
    assert len(AuditLog(other).records()) == 1
    assert (
        json.loads(invoke("audit", "--audit-log", str(other), "--output", "json").stdout)["records"][0][
            "to_version"
        ]
        == 4
    )


def test_env_status_reads_cloud_outputs_without_credentials(invoke, engine, monkeypatch):
    """A SageMaker endpoint's outputs (what crashed `env status` before the contract) go to the AWS
    adapter; with no credentials its DescribeEndpoint fails and that is a cell, not a traceback."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups off this host
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    engine.outputs["dev"] = {
        "cloud": "aws", "environment": "dev", "trackingUri": "arn:aws:sagemaker:eu-west-1:000000000000:mlflow/t",
        "registryUri": "arn:aws:sagemaker:eu-west-1:000000000000:mlflow/t",
        "endpoints": {MODEL: {"url": "https://runtime.example.invalid/endpoints/shipway-dev-iris/invocations",
                              "version": 1, "status": "sagemaker:eu-west-1:shipway-dev-iris",
                              "apiKeyRef": "arn:aws:secretsmanager:eu-west-1:000000000000:secret:k"}},
        "observability": {}, "target": {"region": "eu-west-1"},
    }
    result = invoke("env", "status", "dev", "--output", "json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["envs"]
    (model,) = row["models"]
    assert (row["deployed"], model["health"], model["serving_version"]) == (True, "unknown", None)
    assert model["detail"] == "DescribeEndpoint failed: Unable to locate credentials"
