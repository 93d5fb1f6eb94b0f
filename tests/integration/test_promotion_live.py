"""Promotion for real on a `local` stack: gates, `pulumi up`, verification, rollback, audit.

The issue's session, end to end against real MLflow, the real engine and the serving app,
with `wrk` (Debian) loading the endpoint from another process the whole time:
promote v2 (gates pass, applied), a worse v3 (refused, nothing changes), a slow v4 (passes
gates, fails verification, rolled back automatically), a manual rollback to the version the
first `up` recorded as known-good, and the audit chain verified, then tampered with. Then
models whose names sort before the existing one are added through promotion, each on its
first `promote --apply`, without moving or restarting any endpoint already there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shipway.audit import AuditLog
from shipway.example import train_and_register
from shipway.promotion import GateFailure, Promoter, PromoteRequest, PromotionError, RollbackRequest, Services
from tests.integration.conftest import Project, make_project

pytestmark = pytest.mark.integration

MODEL = "iris-classifier"


class ProjectEngine:
    """shipway.engine's API, bound to the throwaway project."""

    def __init__(self, project: Project):
        self.project = project

    def repo_root(self) -> Path:
        return self.project.dir

    def stack_outputs(self, env: str) -> dict[str, Any]:
        return self.project.outputs()

    def up(self, env: str, message: str) -> dict[str, Any]:
        out = self.project.pulumi("up", "--yes", "--message", message, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"pulumi up failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        return {"result": "succeeded", "resourceChanges": {}}


class Load:
    """tests/support/loadgen.py in its own process, from start() until stop(): bounded, 127.0.0.1 only."""

    def __init__(self, url: str, key_file: str, tmp: Path):
        self.url, self.key_file, self.tmp = url, key_file, tmp
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Load:
        self.stop_file = self.tmp / f"stop-{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.loadgen", self.url, "--key-file", self.key_file,
             "--concurrency", "8", "--max-seconds", "400", "--stop-file", str(self.stop_file)],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
        time.sleep(2)  # let it reach full speed before the change starts
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(1)
        self.stop_file.write_text("stop")
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=60)
        self.result = json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    project = make_project(tmp_path_factory.mktemp("promo"), stack="local")
    project.write_config(local={**project.config["local"], "alertSinkPort": project.ports["tracking"] + 11})
    store, artifacts = project.tracking_store
    versions = {v: train_and_register(store, variant=v, artifact_root=artifacts).version
                for v in ("baseline", "forest", "worse", "slow")}
    project.pin(MODEL, versions["baseline"])
    project.pulumi("up", "--yes")
    # What `shipway platform up` does after its first up: verify and record v1 as known-good.
    from shipway.commands.platform import record_first_deploys
    from shipway_core.config import load_stack_file

    lines = record_first_deploys(load_stack_file(project.stack_file), project.outputs(), project.dir,
                                 audit_path=project.dir / ".shipway" / "audit" / "audit.jsonl")
    assert lines == [f"known-good      : {MODEL} v{versions['baseline']} ok (audit seq 1)"], lines
    try:
        yield project, versions
    finally:
        project.pulumi("destroy", "--yes", check=False)


def served(project: Project) -> int:
    url = project.outputs()["endpoints"][MODEL]["url"]
    return httpx.get(url + "/version").json()["model_version"]


def pinned(project: Project) -> int:
    import yaml

    return yaml.safe_load(project.stack_file.read_text())["config"]["shipway:models"][MODEL]["version"]


def test_promotion_session_on_the_local_stack(stack, tmp_path):
    project, v = stack
    audit_path = project.dir / ".shipway" / "audit" / "audit.jsonl"
    services = Services(engine=ProjectEngine(project), audit_path=audit_path, actor="ci@shipway.invalid",
                        tracking_uri=project.tracking_uri, probe_seconds=2.0)
    promoter = Promoter(services)
    endpoint = project.outputs()["endpoints"][MODEL]
    url, key_file = endpoint["url"], endpoint["apiKeyRef"]
    traffic = {}

    # 1. v2 passes the gates and is applied + verified, under load: no request fails.
    with Load(url, key_file, tmp_path) as load:
        out = promoter.promote(PromoteRequest(MODEL, "local", version=v["forest"], apply=True,
                                              reason="better model", allow_dirty=True))
    traffic["promote"] = load.result
    assert out.status == "verified", out
    assert pinned(project) == served(project) == v["forest"]

    # 2. A worse v3 is refused by the gates: the stack file is byte-for-byte unchanged.
    before = project.stack_file.read_bytes()
    with pytest.raises(GateFailure) as refused:
        promoter.promote(PromoteRequest(MODEL, "local", version=v["worse"], apply=True, allow_dirty=True))
    assert "gate 'no-regression' failed" in str(refused.value)
    assert project.stack_file.read_bytes() == before
    assert served(project) == v["forest"]

    # 3. A slow v4 passes the gates, fails verification (p99 latency) and is rolled back automatically.
    with pytest.raises(PromotionError) as rolled:
        promoter.promote(PromoteRequest(MODEL, "local", version=v["slow"], apply=True, allow_dirty=True))
    assert "rolled back" in str(rolled.value)
    assert pinned(project) == served(project) == v["forest"]

    # 4. Manual rollback without --to, under load: v1 was recorded as known-good by the first
    #    up (known-good from day one), so it is the target.
    with Load(url, key_file, tmp_path) as load:
        promoter.rollback(RollbackRequest(MODEL, "local", reason="drill", allow_dirty=True))
    traffic["rollback"] = load.result
    assert pinned(project) == served(project) == v["baseline"]

    print(f"\nload during promote and rollback: {json.dumps(traffic)}")
    for phase, result in traffic.items():
        assert result["failed"] == 0, (phase, result)
        assert result["requests"] > 100, (phase, result)

    # 5. The audit chain verifies, and a tampered record is detected.
    log = AuditLog(audit_path)
    assert log.verify().ok
    lines = audit_path.read_text().splitlines()
    record = json.loads(lines[0])
    record["reason"] = "nobody will notice"
    lines[0] = json.dumps(record)
    audit_path.write_text("\n".join(lines) + "\n")
    check = log.verify()
    assert not check.ok
    assert check.bad_seq == record["seq"]


def _endpoint_process(project: Project, model: str) -> dict:
    resources = json.loads(project.pulumi("stack", "export").stdout)["deployment"]["resources"]
    return next(r["outputs"] for r in resources if r.get("custom") and (r.get("outputs") or {}).get(
        "shipwayKind") == "InferenceEndpoint" and r["outputs"].get("modelName") == model)


def _register_as(project: Project, name: str) -> int:
    """Register the example model under another name (a new model for this stack)."""
    _, artifacts = project.tracking_store
    return train_and_register(project.tracking_uri, name=name, artifact_root=artifacts).version


@pytest.mark.parametrize("added", [("fraud-scorer", "anomaly-model"), ("churn-model",)])
def test_models_sorting_first_are_added_on_the_first_apply_and_move_nobody(stack, tmp_path, added):
    """Two models, then a third, all sorting before iris-classifier: each `promote --apply`
    succeeds the first time, and every endpoint already there keeps its port and its process."""
    project, _ = stack
    # This test is about addresses, not latency: on a shared 2-core machine the new endpoint's
    # verification probe can exceed the 250 ms SLO while the load runs, so give it room.
    doc = yaml.safe_load(project.stack_file.read_text())
    doc["config"]["shipway:slo"]["latencyP99Ms"] = 5000
    project.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    services = Services(engine=ProjectEngine(project), audit_path=project.dir / ".shipway" / "audit" / "audit.jsonl",
                        actor="ci@shipway.invalid", tracking_uri=project.tracking_uri, probe_seconds=1.0)
    promoter = Promoter(services)
    for name in added:
        before = {m: (ep["url"], _endpoint_process(project, m)["pid"])
                  for m, ep in project.outputs()["endpoints"].items()}
        endpoint = project.outputs()["endpoints"][MODEL]
        version = _register_as(project, name)
        with Load(endpoint["url"], endpoint["apiKeyRef"], tmp_path) as load:
            out = promoter.promote(PromoteRequest(name, "local", version=version, apply=True,
                                                  reason=f"add {name}", allow_dirty=True))
        assert out.status == "verified", out
        assert load.result["failed"] == 0, load.result
        after = project.outputs()["endpoints"]
        for model, (url, pid) in before.items():
            assert after[model]["url"] == url, (model, "moved")
            assert _endpoint_process(project, model)["pid"] == pid, (model, "restarted")
        assert httpx.get(after[name]["url"] + "/version").json()["model_version"] == version
        pins = yaml.safe_load(project.stack_file.read_text())["config"]["shipway:models"]
        assert all("port" in spec for spec in pins.values()), pins
