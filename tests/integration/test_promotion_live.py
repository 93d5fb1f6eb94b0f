"""Promotion for real on a `local` stack: gates, `pulumi up`, verification, rollback, audit.

The issue's session, end to end against real MLflow, the real engine and the serving app,
with `wrk` (Debian) loading the endpoint from another process the whole time:
promote v2 (gates pass, applied), a worse v3 (refused, nothing changes), a slow v4 (passes
gates, fails verification, rolled back automatically), a manual rollback, and the audit
chain verified, then tampered with.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipway.audit import AuditLog
from shipway.example import sample_request, train_and_register
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
    """wrk in its own process: bounded in time, 127.0.0.1 only."""

    def __init__(self, url: str, api_key: str, seconds: int, tmp: Path):
        script = tmp / "post.lua"
        body = json.dumps(sample_request(1))
        script.write_text(textwrap.dedent(f"""\
            wrk.method = "POST"
            wrk.body = '{body}'
            wrk.headers["Content-Type"] = "application/json"
            wrk.headers["Authorization"] = "Bearer {api_key}"
            """))
        wrk = shutil.which("wrk") or "/usr/bin/wrk"
        self.proc = subprocess.Popen([wrk, "-t2", "-c8", f"-d{seconds}s", "-s", str(script), url + "/invocations"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self) -> dict[str, float]:
        out, _ = self.proc.communicate(timeout=600)
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        amount, unit = re.search(r"requests in ([\d.]+)(ms|s|m|h)", out).groups()
        seconds = float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
        return {"requests": requests, "rps": requests / seconds, "errors": errors, "raw": out}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    project = make_project(tmp_path_factory.mktemp("promo"), stack="local")
    store, artifacts = project.tracking_store
    versions = {v: train_and_register(store, variant=v, artifact_root=artifacts).version
                for v in ("baseline", "forest", "worse", "slow")}
    project.pin(MODEL, versions["baseline"])
    project.pulumi("up", "--yes")
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
    url = project.outputs()["endpoints"][MODEL]["url"]
    load = Load(url, project.api_key, seconds=150, tmp=tmp_path)

    # 1. v2 passes the gates and is applied + verified.
    out = promoter.promote(PromoteRequest(MODEL, "local", version=v["forest"], apply=True, reason="better model",
                                          allow_dirty=True))
    assert out["status"] == "verified", out
    assert pinned(project) == served(project) == v["forest"]

    # 2. A worse v3 is refused by the gates: the stack file is byte-for-byte unchanged.
    before = project.stack_file.read_bytes()
    with pytest.raises(GateFailure) as refused:
        promoter.promote(PromoteRequest(MODEL, "local", version=v["worse"], apply=True, allow_dirty=True))
    assert "gate 'no-regression' failed" in str(refused.value)
    assert project.stack_file.read_bytes() == before
    assert served(project) == v["forest"]

    # 3. A slow v4 passes the gates, fails verification (latency) and is rolled back automatically.
    with pytest.raises(PromotionError) as rolled:
        promoter.promote(PromoteRequest(MODEL, "local", version=v["slow"], apply=True, allow_dirty=True))
    assert "rolled back" in str(rolled.value)
    assert pinned(project) == served(project) == v["forest"]

    # 4. Manual rollback. v1 was deployed before any promotion, so it is not in the audit trail
    #    as known-good: the default refuses and says so; naming the version works.
    with pytest.raises(PromotionError, match="no known-good version of 'iris-classifier' in 'local'"):
        promoter.rollback(RollbackRequest(MODEL, "local", reason="drill", allow_dirty=True))
    promoter.rollback(RollbackRequest(MODEL, "local", to_version=v["baseline"], reason="drill", allow_dirty=True))
    assert pinned(project) == served(project) == v["baseline"]

    traffic = load.result()
    print(f"\nload through promote/reject/auto-rollback/rollback: {traffic['requests']} requests, "
          f"{traffic['rps']:.0f} rps, {traffic['errors']} errors")
    assert traffic["errors"] == 0, traffic["raw"]
    assert traffic["requests"] > 1000

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
