"""`shipway platform`: pre-flight of pins against a real (sqlite) registry, bad input."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from shipway.cli import app
from shipway.commands.platform import _pins_ready
from shipway.example import train_and_register
from shipway_core.config import parse_stack_config
from tests.support.mlflowdb import sqlite_uri


def flat(text: str) -> str:
    """CLI output without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def config(version: int):
    return parse_stack_config("local", {
        "cloud": "local", "environment": "local", "owner": "o", "costCenter": "c",
        "dataClassification": "internal", "models": {"iris-classifier": {"version": version}}})


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    with sqlite_uri(root) as uri:
        reg = train_and_register(uri, artifact_root=(root / "artifacts").as_uri())
        assert (reg.version, reg.created) == (1, True)
        again = train_and_register(uri, artifact_root=(root / "artifacts").as_uri())
        assert (again.version, again.created) == (1, False)  # same data, code, params: no duplicate
        yield uri


def test_pinned_ready_version_passes_preflight(registry):
    assert _pins_ready(config(1), registry) == []


def test_missing_version_is_named_with_the_registry_and_what_to_do(registry):
    assert _pins_ready(config(9), registry) == [
        f"version 9 of model 'iris-classifier' does not exist (latest is 1) (registry at {registry}); "
        "register it or pin an existing version in stacks/Pulumi.local.yaml"]


def test_unknown_variant_is_a_bad_parameter():
    result = CliRunner().invoke(app, ["platform", "train", "--variant", "magic"])
    assert result.exit_code == 2
    assert "'magic' is not a variant; allowed: baseline, forest, worse, slow" in flat(result.output)


def test_unknown_stack_is_a_bad_parameter():
    result = CliRunner().invoke(app, ["platform", "up", "--stack", "staging"])
    assert result.exit_code == 2
    text = flat(result.output)
    assert "no stack file stacks/Pulumi.staging.yaml; stacks: " in text
    listed = [name.strip() for name in text.split("stacks: ", 1)[1].split(",")]
    assert {"dev", "local", "prod", "test"} <= set(listed)


def test_first_up_records_each_served_model_as_known_good_once(tmp_path, monkeypatch):
    from shipway import audit
    from shipway.commands import platform

    checked = []

    def fake_check(cfg, model, version, endpoint):
        checked.append((model, version, endpoint["url"]))
        return audit.FirstVerification(True, {"checks": [{"name": "version", "ok": True}]})

    monkeypatch.setattr(platform, "_first_check", fake_check)
    outputs = {"endpoints": {"iris-classifier": {"url": "http://127.0.0.1:8100", "apiKeyRef": None}}}
    log_path = tmp_path / "audit" / "audit.jsonl"
    lines = platform.record_first_deploys(config(1), outputs, tmp_path, audit_path=log_path)
    assert lines == ["known-good      : iris-classifier v1 ok (audit seq 1)"]
    assert checked == [("iris-classifier", 1, "http://127.0.0.1:8100")]
    assert audit.AuditLog(log_path).known_good_versions("local", "iris-classifier") == [1]
    # A second `platform up` (or one after promotions) neither re-verifies nor records again.
    assert platform.record_first_deploys(config(1), outputs, tmp_path, audit_path=log_path) == []
    assert len(checked) == 1
