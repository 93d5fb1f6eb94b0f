"""Promotion and rollback end to end: real registry + gates, fake engine + fake endpoint."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from shipway import stackfile
from shipway.audit import AuditLog
from shipway.promotion import (
    GateFailure,
    LockBusy,
    Promoter,
    PromoteRequest,
    PromotionError,
    RollbackRequest,
    Services,
    UnknownInput,
    env_lock,
)
from shipway.registry import RegistryError
from shipway.verify import probe_requests, verify_deployment
from shipway_core.config import SloSettings

from .conftest import ACTOR, MODEL, FakeEndpoint, FakeEngine, stack_text


@pytest.fixture(scope="module")
def pyfunc_models(iris_registry):
    """Offline models by version, so the fake endpoint serves real predictions."""
    import mlflow.pyfunc

    from shipway.registry import mlflow_uris

    cache: dict[int, object] = {}

    def get(version: int):
        if version not in cache:
            with mlflow_uris(iris_registry.uri):
                cache[version] = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
        return cache[version]

    return get


@pytest.fixture
def endpoint(engine: FakeEngine, repo: Path, pyfunc_models) -> FakeEndpoint:
    """Serves whatever the stack file pins after each `up`, like the real platform would."""
    ep = FakeEndpoint(version=None)
    ep.predict = lambda frame: pyfunc_models(ep.version).predict(frame).tolist()
    key_file = repo / "api-key"
    key_file.write_text("k-123\n")
    ep.api_key = "k-123"

    def deploy(env: str) -> None:
        ep.version = stackfile.read_pins(stackfile.stack_path(repo, env)).get(MODEL)

    engine.on_up = deploy
    for env in ("dev", "test"):
        engine.outputs[env] = {
            "cloud": "local", "environment": env,
            "trackingUri": "http://127.0.0.1:5000", "registryUri": "http://127.0.0.1:5000",
            "endpoints": {MODEL: {"url": "http://127.0.0.1:8101", "version": 1, "status": "http://127.0.0.1:8101",
                                  "apiKeyRef": str(key_file)}},
        }
    return ep


@pytest.fixture
def live(services: Services, endpoint: FakeEndpoint) -> Services:
    """Services whose verifier talks to the fake endpoint."""
    services.verifier = functools.partial(verify_deployment, client=endpoint.client())
    return services


def trail(repo: Path) -> list[dict]:
    return AuditLog(repo / ".shipway" / "audit" / "audit.jsonl").records()


def summary(records: list[dict]) -> list[tuple]:
    return [(r["action"], r["outcome"], r["from_version"], r["to_version"]) for r in records]


# -------------------------------------------------------------------------- promote


def test_promotion_pins_one_line_and_records_evidence(services, repo, registry, engine):
    before = stackfile.stack_path(repo, "dev").read_text()
    outcome = Promoter(services).promote(PromoteRequest(MODEL, "dev", version=4, reason="retrain"))
    after = stackfile.stack_path(repo, "dev").read_text()
    assert outcome.status == "pinned" and (outcome.from_version, outcome.to_version) == (1, 4)
    assert after == before.replace("version: 1 ", "version: 4 ")
    [rec] = trail(repo)
    assert (rec["action"], rec["outcome"], rec["actor"], rec["reason"], rec["env"]) == (
        "promote",
        "pinned",
        ACTOR,
        "retrain",
        "dev",
    )
    assert rec["gates"]["passed"] is True and set(rec["gates"]["gates"]) == {
        "metric-thresholds",
        "no-regression",
        "signature-compatibility",
        "data-consistency",
    }
    tags = registry.version(MODEL, 4).tags
    assert tags["shipway.gates.passed"] == "true" and tags["shipway.gates.no-regression"] == "pass"
    assert engine.up_calls == []


def test_failed_gates_change_nothing_but_are_recorded(services, repo, registry):
    before = stackfile.stack_path(repo, "dev").read_text()
    with pytest.raises(GateFailure) as err:
        Promoter(services).promote(PromoteRequest(MODEL, "dev", version=2))
    assert str(err.value) == (
        "gate 'metric-thresholds' failed: accuracy 0.7667 < required minimum 0.8000\n"
        "gate 'no-regression' failed: golden accuracy 0.7667 vs current 1.0000 (drop 0.2333 > allowed 0.0100)"
    )
    assert stackfile.stack_path(repo, "dev").read_text() == before
    assert summary(trail(repo)) == [("promote", "rejected", 1, 2)]
    assert registry.version(MODEL, 2).tags["shipway.gates.passed"] == "false"
    assert err.value.outcome["status"] == "rejected"


def test_signature_change_is_rejected(services, repo):
    with pytest.raises(GateFailure) as err:
        Promoter(services).promote(PromoteRequest(MODEL, "dev", version=3))
    assert (
        "gate 'signature-compatibility' failed: input 'petal width (cm)' (double) of version 1 is "
        "missing from version 3"
    ) in str(err.value).splitlines()


def test_default_version_is_the_previous_envs_pin_and_a_new_model_gets_a_block(services, repo):
    outcome = Promoter(services).promote(PromoteRequest(MODEL, "test"))
    assert (outcome.from_version, outcome.to_version) == (None, 1)
    assert stackfile.read_pins(stackfile.stack_path(repo, "test")) == {MODEL: 1}


@pytest.mark.parametrize(
    ("request_", "message", "param"),
    [
        (
            PromoteRequest(MODEL, "prod"),
            "model 'iris-classifier' is not pinned in 'test' (the environment before 'prod'); pass --version",
            "NAME",
        ),
        (
            PromoteRequest(MODEL, "local"),
            "'local' is the first environment, so there is no version to carry forward; pass --version",
            "--version",
        ),
        (
            PromoteRequest(MODEL, "dev", version=99),
            "version 99 of model 'iris-classifier' does not exist (latest is 4)",
            "--version",
        ),
    ],
)
def test_unknown_inputs_are_named(services, request_, message, param):
    with pytest.raises(UnknownInput) as err:
        Promoter(services).promote(request_)
    assert (str(err.value), err.value.param) == (message, param)


def test_unregistered_model_is_named(services, repo, iris_registry):
    stackfile.stack_path(repo, "dev").write_text(stack_text("dev", {MODEL: 1, "wine-classifier": 1}))
    with pytest.raises(UnknownInput) as err:
        Promoter(services).promote(PromoteRequest("wine-classifier", "dev", version=2))
    assert (
        str(err.value) == f"model 'wine-classifier' is not registered in the registry at {iris_registry.uri}"
    )


def test_same_version_is_a_no_op(services, repo):
    outcome = Promoter(services).promote(PromoteRequest(MODEL, "dev", version=1))
    assert outcome.status == "unchanged"
    assert trail(repo) == []


def test_missing_target_stack_file_is_an_error_naming_it(services, repo):
    stackfile.stack_path(repo, "prod").unlink()
    with pytest.raises(stackfile.StackFileError, match="Pulumi.prod.yaml not found"):
        Promoter(services).promote(PromoteRequest(MODEL, "prod", version=1))


def test_unreachable_registry_is_one_clear_error(services, repo):
    services.registry_factory = lambda uri: __import__("shipway.registry").registry.Registry(uri)
    services.tracking_uri = "http://127.0.0.1:9"  # discard port: nothing listens
    before = stackfile.stack_path(repo, "dev").read_text()
    with pytest.raises(RegistryError) as err:
        Promoter(services).promote(PromoteRequest(MODEL, "dev", version=4))
    assert str(err.value).startswith("MLflow registry at http://127.0.0.1:9 is unreachable: ")
    assert stackfile.stack_path(repo, "dev").read_text() == before


# ------------------------------------------------------------------ apply and verify


def test_apply_deploys_and_verifies(live, repo, engine, endpoint):
    outcome = Promoter(live).promote(PromoteRequest(MODEL, "dev", version=4, apply=True))
    assert outcome.status == "verified"
    assert engine.up_calls == [("dev", "promote iris-classifier to v4")]
    assert endpoint.version == 4
    assert summary(trail(repo)) == [
        ("promote", "pinned", 1, 4),
        ("apply", "succeeded", None, 4),
        ("verify", "ok", None, 4),
    ]
    assert trail(repo)[2]["verification"]["checks"]["smoke"]["rows"] == 20


def test_failed_verification_rolls_back_to_the_previous_pin(live, repo, engine, endpoint):
    endpoint.broken_versions = {4}
    with pytest.raises(PromotionError) as err:
        Promoter(live).promote(PromoteRequest(MODEL, "dev", version=4, apply=True))
    assert str(err.value).startswith(
        "deployment verification of 'iris-classifier' version 4 in 'dev' failed: smoke predictions failed: "
    )
    assert str(err.value).endswith("; rolled back to version 1")
    assert stackfile.read_pins(stackfile.stack_path(repo, "dev")) == {MODEL: 1}
    assert [c[1] for c in engine.up_calls] == [
        "promote iris-classifier to v4",
        "rollback iris-classifier to v1",
    ]
    assert summary(trail(repo)) == [
        ("promote", "pinned", 1, 4),
        ("apply", "succeeded", None, 4),
        ("verify", "failed", None, 4),
        ("rollback", "pinned", 4, 1),
        ("apply", "succeeded", None, 1),
        ("verify", "ok", None, 1),
    ]
    assert trail(repo)[3]["reason"].startswith("automatic rollback: verification of version 4 failed: ")
    assert err.value.outcome["status"] == "rolled-back"


def test_gates_download_only_the_evaluation_set_they_use(live, registry, monkeypatch):
    """The champion's set wins over the candidate's, so the candidate's is never fetched."""
    fetched: list[tuple[int, str]] = []
    plain = registry.download_version_file

    def spy(info, filename):
        fetched.append((info.version, filename))
        return plain(info, filename)

    monkeypatch.setattr(registry, "download_version_file", spy)
    outcome = Promoter(live).promote(PromoteRequest(MODEL, "dev", version=4))
    assert outcome.gates is not None and outcome.status == "pinned"
    assert [f for f in fetched if f[1] == "golden.csv"] == [(1, "golden.csv")]  # v1 is the champion in dev


def test_the_outcome_says_where_the_seconds_went_step_by_step(live, repo, engine, endpoint):
    deploy = engine.on_up

    def slow_up(env: str) -> None:
        time.sleep(0.3)  # the engine's part, which no other step may claim
        assert deploy is not None
        deploy(env)

    engine.on_up = slow_up
    start = time.perf_counter()
    outcome = Promoter(live).promote(PromoteRequest(MODEL, "dev", version=4, apply=True)).as_dict()
    wall = time.perf_counter() - start
    timings = outcome["timings"]
    assert set(timings) == {"stack outputs", "registry", "gates", "pin", "audit", "pulumi up", "verification"}
    assert timings["pulumi up"] >= 0.3
    assert sum(timings.values()) <= wall + 0.01  # exclusive steps: nothing counted twice


def test_verification_uses_the_outputs_up_returned_without_reading_the_stack_again(live, repo, engine, endpoint,
                                                                                    monkeypatch):
    """`up` may move the endpoint; its own outputs say where, so no second engine run reads them."""
    moved = {**engine.outputs["dev"], "endpoints": {MODEL: {**engine.outputs["dev"]["endpoints"][MODEL],
                                                            "url": "http://127.0.0.1:8102"}}}
    plain_up = engine.up
    monkeypatch.setattr(engine, "up", lambda env, message: {**plain_up(env, message), "outputs": moved})
    reads: list[str] = []
    plain_outputs = engine.stack_outputs
    monkeypatch.setattr(engine, "stack_outputs", lambda env: reads.append(env) or plain_outputs(env))
    outcome = Promoter(live).promote(PromoteRequest(MODEL, "dev", version=4, apply=True))
    assert outcome.status == "verified"
    assert outcome.verification is not None and outcome.verification["url"] == "http://127.0.0.1:8102"
    assert reads == ["dev"]  # once before the pin (registry, pre-flight), never after `up`


def test_rollback_target_comes_from_the_audit_trail(live, repo, engine, endpoint):
    """dev pins v4 (set by hand, never verified); v1 is the last version verified in dev."""
    stackfile.stack_path(repo, "dev").write_text(
        stack_text("dev", {MODEL: 4}).replace("maxRegression: 0.01", "maxRegression: 1.0\n    minMetrics: {}")
    )
    AuditLog(repo / ".shipway/audit/audit.jsonl").append(
        actor=ACTOR, action="verify", env="dev", model=MODEL, to_version=1, outcome="ok"
    )
    endpoint.broken_versions = {2}
    with pytest.raises(PromotionError, match="rolled back to version 1$"):
        Promoter(live).promote(PromoteRequest(MODEL, "dev", version=2, apply=True))
    assert stackfile.read_pins(stackfile.stack_path(repo, "dev")) == {MODEL: 1}


def test_failed_verification_of_a_new_model_restores_the_old_file(live, repo, endpoint):
    path = stackfile.stack_path(repo, "test")
    before = path.read_text()
    endpoint.broken_versions = {1}
    with pytest.raises(PromotionError, match=r"rolled back to the previous stack file \(model removed\)$"):
        Promoter(live).promote(PromoteRequest(MODEL, "test", version=1, apply=True))
    assert path.read_text() == before


def test_failed_up_keeps_the_pin_as_desired_state_and_says_so(live, repo, engine):
    engine.up_error = RuntimeError("provider crashed")
    with pytest.raises(PromotionError) as err:
        Promoter(live).promote(PromoteRequest(MODEL, "dev", version=4, apply=True))
    assert str(err.value) == (
        "pulumi up on stack 'dev' failed (RuntimeError: provider crashed); stacks/Pulumi.dev.yaml keeps "
        "version 4 of 'iris-classifier' as the desired state: fix the cause and run `shipway model promote "
        "iris-classifier --to dev --version 4 --apply` again, or `shipway model rollback iris-classifier "
        "--env dev`"
    )
    assert stackfile.read_pins(stackfile.stack_path(repo, "dev")) == {MODEL: 4}
    assert summary(trail(repo))[-1] == ("apply", "failed", None, 4)


def test_preflight_stops_apply_before_anything_changes(live, repo, engine):
    path = stackfile.stack_path(repo, "dev")
    path.write_text(stack_text("dev", {MODEL: 1, "ghost-model": 7}))
    before = path.read_text()
    with pytest.raises(RegistryError, match="model 'ghost-model' is not registered"):
        Promoter(live).promote(PromoteRequest(MODEL, "dev", version=4, apply=True))
    assert path.read_text() == before
    assert engine.up_calls == []
    assert [r["outcome"] for r in trail(repo)] == []


# ------------------------------------------------------------------------- rollback


def test_rollback_goes_to_the_last_known_good_version(live, repo, engine, endpoint):
    Promoter(live).promote(PromoteRequest(MODEL, "dev", version=4, apply=True))  # v4 verified
    stackfile.stack_path(repo, "dev").write_text(stack_text("dev", {MODEL: 1}))  # someone re-pinned v1
    outcome = Promoter(live).rollback(RollbackRequest(MODEL, "dev", reason="p99 alert"))
    assert (outcome.status, outcome.from_version, outcome.to_version) == ("verified", 1, 4)
    assert summary(trail(repo))[-3:] == [
        ("rollback", "pinned", 1, 4),
        ("apply", "succeeded", None, 4),
        ("verify", "ok", None, 4),
    ]
    assert endpoint.version == 4


def test_rollback_without_apply_only_edits_the_pin(live, repo, engine):
    outcome = Promoter(live).rollback(RollbackRequest(MODEL, "dev", to_version=4, apply=False))
    assert outcome.status == "pinned"
    assert stackfile.read_pins(stackfile.stack_path(repo, "dev")) == {MODEL: 4}
    assert engine.up_calls == []


def test_rollback_without_a_known_good_version_asks_for_one(live):
    with pytest.raises(UnknownInput) as err:
        Promoter(live).rollback(RollbackRequest(MODEL, "dev"))
    assert str(err.value) == (
        "no known-good version of 'iris-classifier' in 'dev' in the audit trail "
        "(a version becomes known-good when deployment verification passes); pass --to N"
    )


def test_rollback_of_a_model_not_pinned_there(live):
    with pytest.raises(UnknownInput, match="model 'iris-classifier' is not pinned in 'test'"):
        Promoter(live).rollback(RollbackRequest(MODEL, "test", to_version=1))


# --------------------------------------------------------------------------- locking


def test_concurrent_promotion_is_refused_without_changes(services, repo):
    before = stackfile.stack_path(repo, "dev").read_text()
    with env_lock(repo, "dev"), pytest.raises(LockBusy) as err:
        Promoter(services).promote(PromoteRequest(MODEL, "dev", version=4))
    assert str(err.value).startswith(
        f"another promotion or rollback of 'dev' is in progress (pid {os.getpid()} "
    )
    assert str(err.value).endswith(f"remove {repo}/.shipway/locks/dev.lock if that process is gone")
    assert stackfile.stack_path(repo, "dev").read_text() == before


def test_stale_lock_of_a_dead_process_is_taken_over(services, repo):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = repo / ".shipway" / "locks" / "dev.lock"
    lock.parent.mkdir(parents=True)
    import socket

    lock.write_text(f'{{"pid": {dead.pid}, "host": "{socket.gethostname()}", "since": "earlier"}}')
    Promoter(services).promote(PromoteRequest(MODEL, "dev", version=4))
    assert not lock.exists()


def test_lock_from_another_host_is_never_assumed_stale(repo):
    lock = repo / ".shipway" / "locks" / "dev.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text('{"pid": 999999, "host": "other-host", "since": "earlier"}')
    with pytest.raises(LockBusy, match=r"pid 999999 on other-host"), env_lock(repo, "dev"):
        pass


def test_empty_lock_is_stale_only_after_the_grace_period(repo):
    lock = repo / ".shipway" / "locks" / "dev.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    with pytest.raises(LockBusy, match=r"pid None"), env_lock(repo, "dev"):
        pass
    old = lock.stat().st_mtime - 120
    os.utime(lock, (old, old))
    with env_lock(repo, "dev") as path:
        assert f'"pid": {os.getpid()}' in path.read_text()
    assert not lock.exists()


def test_rollback_probes_the_known_good_version_with_its_rows_and_loads_no_model(live, repo, endpoint, monkeypatch):
    Promoter(live).promote(PromoteRequest(MODEL, "dev", version=4, apply=True))  # v4 verified, rows kept
    rows = repo / ".shipway" / "cache" / "probe-rows" / MODEL / "4.csv"
    assert rows.is_file() and len(pd.read_csv(rows)) == 20
    stackfile.stack_path(repo, "dev").write_text(stack_text("dev", {MODEL: 1}))

    def no_model_load(*_a, **_k):
        raise AssertionError("the rollback fast path must not load the model offline")

    monkeypatch.setattr("shipway.lazymodel.LazyModel.predict", no_model_load)
    endpoint.requests.clear()
    live.probe_seconds = 120.0  # only a cap: the probe stops at its statistical size
    outcome = Promoter(live).rollback(RollbackRequest(MODEL, "dev", reason="p99 alert"))
    assert (outcome.status, outcome.to_version) == ("verified", 4)
    checks = outcome.verification["checks"]
    assert checks["smoke"]["message"].startswith("skipped: version 4 was verified here before (known-good)")
    assert checks["slo"]["requests"] == probe_requests(SloSettings()) == 300
    assert endpoint.requests.count(("POST", "/invocations")) == 300


def _rollback_in_the_background(live, repo, endpoint, monkeypatch):
    """v4 verified, v1 pinned by hand; the CLI's rollback (background verification) back to v4.
    Returns the outcome and the argv of the process it started (captured, not run)."""
    Promoter(live).promote(PromoteRequest(MODEL, "dev", version=4, apply=True))
    stackfile.stack_path(repo, "dev").write_text(stack_text("dev", {MODEL: 1}))
    started: list[list[str]] = []

    def start(argv, **_kw):
        started.append(list(argv))
        return 4242

    monkeypatch.setattr("shipway.promotion.start_detached", start)
    endpoint.requests.clear()
    live.background_verification = True
    live.probe_seconds = 120.0  # only a cap: the probes stop at their sizes
    outcome = Promoter(live).rollback(RollbackRequest(MODEL, "dev", reason="p99 alert"))
    return outcome, started


def test_cli_rollback_returns_after_a_smoke_probe_recorded_as_pending(live, repo, endpoint, monkeypatch):
    outcome, started = _rollback_in_the_background(live, repo, endpoint, monkeypatch)
    assert (outcome.status, outcome.to_version) == ("smoke-verified", 4)
    assert endpoint.requests.count(("POST", "/invocations")) == 10  # not the 300 of the full probe
    pending = trail(repo)[-1]
    assert (pending["action"], pending["outcome"], pending["to_version"]) == ("verify", "pending", 4)
    assert pending["verification"]["checks"]["slo"]["requests"] == 10
    assert outcome.verification["pending"]["follows_audit_seq"] == pending["seq"]
    assert outcome.verification["pending"]["requests"] == 300
    assert f"following audit seq {pending['seq']}" in (outcome.message or "")
    [argv] = started
    assert argv[1:3] == ["-m", "shipway.verify"] and argv[3].endswith(f"iris-classifier-v4-seq{pending['seq']}.json")
    # a pending record is not known-good evidence on its own (v4 is known-good from its promotion)
    assert AuditLog(repo / ".shipway" / "audit" / "audit.jsonl").known_good_versions("dev", MODEL) == [4]


def test_the_background_probe_appends_the_slo_verdict_after_the_pending_record(live, repo, endpoint, monkeypatch):
    import shipway.verify as verify_mod

    _outcome, [argv] = _rollback_in_the_background(live, repo, endpoint, monkeypatch)
    monkeypatch.setattr(verify_mod, "verify_deployment", functools.partial(verify_deployment, client=endpoint.client()))
    endpoint.requests.clear()
    done = verify_mod.follow_up(Path(argv[3]))
    last = trail(repo)[-1]
    assert (done["outcome"], last["action"], last["outcome"], last["to_version"]) == ("ok", "verify", "ok", 4)
    assert last["details"] == {"follows": trail(repo)[-2]["seq"], "background": True}
    assert last["verification"]["checks"]["slo"]["requests"] == 300
    assert endpoint.requests.count(("POST", "/invocations")) == 300


def test_the_rollback_note_names_a_command_that_lists_the_pending_record(live, repo, endpoint, monkeypatch):
    """The smoke-verified rollback tells the on-call engineer where the full probe's verdict will
    appear; that command must exist (it once said `shipway audit list`, which does not)."""
    import json
    import re
    import shlex

    from typer.testing import CliRunner

    from shipway.cli import app

    outcome, _argv = _rollback_in_the_background(live, repo, endpoint, monkeypatch)
    (command,) = re.findall(r"`(shipway [^`]+)`", outcome.message)
    audit_log = repo / ".shipway" / "audit" / "audit.jsonl"  # the default under a real checkout's root
    result = CliRunner().invoke(app, [*shlex.split(command)[1:], "--audit-log", str(audit_log), "--output", "json"])
    assert result.exit_code == 0, result.output
    seq = int(re.search(r"audit seq (\d+)", outcome.message).group(1))
    listed = json.loads(result.stdout)
    records = listed["records"] if isinstance(listed, dict) else listed
    assert seq in [r["seq"] for r in records]


def test_a_background_probe_of_a_version_no_longer_pinned_is_superseded_not_failed(live, repo, endpoint, monkeypatch):
    import shipway.verify as verify_mod

    _outcome, [argv] = _rollback_in_the_background(live, repo, endpoint, monkeypatch)
    monkeypatch.setattr(verify_mod, "verify_deployment", functools.partial(verify_deployment, client=endpoint.client()))
    stackfile.stack_path(repo, "dev").write_text(stack_text("dev", {MODEL: 1}))  # promoted again meanwhile
    endpoint.version = 1
    assert verify_mod.follow_up(Path(argv[3]))["outcome"] == "superseded"
    assert trail(repo)[-1]["outcome"] == "superseded"
    endpoint.version, endpoint.broken_versions = 4, {4}  # still pinned, now failing: a real failure
    stackfile.stack_path(repo, "dev").write_text(stack_text("dev", {MODEL: 4}))
    assert verify_mod.follow_up(Path(argv[3]))["outcome"] == "failed"


@pytest.mark.parametrize(("max_error_rate", "expected"), [(0.01, 300), (0.05, 300), (0.001, 2995), (0.0001, 29956)])
def test_probe_size_bounds_the_error_rate_with_95_percent_confidence(max_error_rate, expected):
    n = probe_requests(SloSettings(max_error_rate=max_error_rate))
    assert n == expected
    # zero failures in n requests: the chance of that at the objective's rate is at most 5 %
    assert (1 - max_error_rate) ** n <= 0.05 or n == 300


def test_the_no_regression_gate_scores_both_versions_on_the_champions_set(services, registry):
    """Honest gates: with a champion pinned, candidate and champion are scored on the champion's
    golden set (the candidate cannot bring an easy one), and which set is evidence."""
    outcome = Promoter(services).promote(PromoteRequest(MODEL, "dev", version=4, reason="retrain"))
    evidence = outcome.gates["gates"]["no-regression"]
    assert evidence["golden_owner"] == "champion"
    assert evidence["golden"] == "golden.csv of version 1"
    assert len(evidence["golden_sha256"]) == 64


def test_a_first_promotion_scores_the_candidate_on_its_own_set(services, registry):
    outcome = Promoter(services).promote(PromoteRequest(MODEL, "test", version=1))
    assert outcome.gates["gates"]["no-regression"]["golden_owner"] == "candidate"
