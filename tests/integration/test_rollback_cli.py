"""`shipway model promote --apply` then `shipway model rollback` as a user runs them: the real CLI in
its own process on a throwaway `local` stack (real pulumi, MLflow and serving app).

Pins what the fast rollback promises: it returns after a smoke verification recorded as
``pending``, the endpoint already serves the known-good version, and the full SLO probe's verdict
arrives in the audit trail afterwards, linked to the pending record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipway.audit import AuditLog
from shipway.example import train_and_register
from tests.integration.conftest import Project, make_project

pytestmark = pytest.mark.integration

MODEL = "iris-classifier"


def shipway(project: Project, *argv: str) -> dict[str, Any]:
    env = {**os.environ, **project.env, "SHIPWAY_ROOT": str(project.dir)}
    out = subprocess.run([sys.executable, "-m", "shipway.cli", *argv], env=env, text=True, capture_output=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout) if "--output" in argv else {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    project = make_project(tmp_path_factory.mktemp("rollback-cli"), stack="local")
    store, artifacts = project.tracking_store
    Path(store.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    v1 = train_and_register(store, variant="baseline", artifact_root=artifacts).version
    v2 = train_and_register(store, variant="forest", artifact_root=artifacts).version
    project.pin(MODEL, v1)
    try:
        shipway(project, "platform", "up", "--stack", "local", "--no-train")  # v1 verified: known-good
        yield project, v1, v2
    finally:
        project.pulumi("destroy", "--yes", check=False)


def test_cli_rollback_returns_after_its_smoke_probe_and_the_full_verdict_follows(stack) -> None:
    project, v1, v2 = stack
    url = project.outputs()["endpoints"][MODEL]["url"]
    promoted = shipway(project, "model", "promote", MODEL, "--to", "local", "--version", str(v2), "--apply",
                       "--allow-dirty", "--output", "json")
    assert promoted["status"] == "verified", promoted
    assert promoted["verification"]["probe"]["requests"] == 300
    assert {"gates", "pulumi up", "verification"} <= set(promoted["timings"]), promoted["timings"]

    back = shipway(project, "model", "rollback", MODEL, "--env", "local", "--allow-dirty", "--output", "json")
    assert (back["status"], back["to_version"]) == ("smoke-verified", v1), back
    assert httpx.get(url + "/version").json()["model_version"] == v1  # serving before the command returned
    assert back["verification"]["probe"]["requests"] == 10
    trail = AuditLog(project.dir / ".shipway" / "audit" / "audit.jsonl")
    pending = trail.records()[-1]
    assert (pending["action"], pending["outcome"], pending["to_version"]) == ("verify", "pending", v1)
    assert back["verification"]["pending"]["follows_audit_seq"] == pending["seq"]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        follow = [r for r in trail.records() if (r.get("details") or {}).get("follows") == pending["seq"]]
        if follow:
            break
        time.sleep(0.5)
    log = project.dir / back["verification"]["pending"]["log"]
    assert follow, f"no background verdict after 60 s; its log:\n{log.read_text() if log.exists() else '(none)'}"
    [verdict] = follow
    assert (verdict["action"], verdict["outcome"], verdict["to_version"]) == ("verify", "ok", v1), verdict
    assert verdict["verification"]["probe"]["requests"] == 300
    assert verdict["details"]["background"] is True
    assert trail.verify(anchors=[]).ok
