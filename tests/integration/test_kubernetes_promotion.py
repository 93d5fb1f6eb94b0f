"""`shipway env status` -> `model promote --apply` -> verification -> `model rollback` on the
Kubernetes target, end to end, through the user's CLI.

Real parts: the `shipway` CLI, the pulumi CLI + pulumi-kubernetes provider running the real
program (`infra/`) on the committed k8s stack, the control plane of tests/support/kubecluster.py
(the Deployment rolls out through the real controllers), a real MLflow registry with two trained
versions, and real serving processes. The serving pods themselves run as local processes
(tests/support/podruntime.py: kwok has no kubelet): the adapter's verification traffic goes
exactly where it goes on a real cluster — to the API server's Service proxy
(`/api/v1/namespaces/<ns>/services/serve-<model>:http/proxy/invocations`) — and the API server's
egress hands the connection to the pod's process over a Unix socket. Nothing dials off 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_kubernetes_target import DEPLOYMENT, MODEL, PROJECT_STACK, ROOT, K8sProject
from tests.support.kubecluster import KubeCluster, running_cluster
from tests.support.mlflowserver import mlflow_server
from tests.support.podruntime import PodRuntime

pytestmark = [pytest.mark.integration, pytest.mark.kubernetes]

SHIPWAY = ROOT / ".venv" / "bin" / "shipway"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with running_cluster(tmp_path_factory.mktemp("kube")) as running:
        yield running


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, int]]]:
    """A real MLflow server on 127.0.0.1 with the example model trained twice (baseline, forest)."""
    from shipway.example import train_and_register

    root = tmp_path_factory.mktemp("registry")
    with mlflow_server(root) as uri:
        versions = {v: train_and_register(uri, variant=v).version for v in ("baseline", "forest")}
        yield uri, versions


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, cluster: KubeCluster,
             registry: tuple[str, dict[str, int]]) -> Iterator[tuple[K8sProject, PodRuntime, dict[str, int]]]:
    uri, versions = registry
    project = K8sProject(tmp_path_factory.mktemp("k8s-promo"), cluster, uri)
    project.pin(versions["baseline"])
    namespace = yaml.safe_load(project.stack_file.read_text())["config"]["shipway:kubernetes"]["namespace"]
    with PodRuntime(cluster, namespace) as runtime:
        try:
            project.pulumi("up", "--yes", "--skip-preview")
            yield project, runtime, versions
        finally:
            project.pulumi("destroy", "--yes", check=False)
            for path, tail in runtime.logs():
                print(f"--- {path}\n{tail}")


def shipway(project: K8sProject, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    cmd = [str(SHIPWAY), "--root", str(project.dir), *args]
    started = time.monotonic()
    out = subprocess.run(cmd, cwd=project.dir, env=project.env, text=True, capture_output=True,
                         timeout=timeout, check=False)
    print(f"$ shipway {' '.join(args)}  -> exit {out.returncode} in {time.monotonic() - started:.1f}s")
    return out


def last_json(text: str) -> Any:
    start = min(i for i in (text.find("{"), text.find("[")) if i >= 0)
    return json.loads(text[start:])


def deployment(cluster: KubeCluster, namespace: str) -> dict[str, Any]:
    return cluster.get_json(f"/apis/apps/v1/namespaces/{namespace}/deployments/{DEPLOYMENT}")


def template_version(dep: dict[str, Any]) -> int:
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    return int(env["SHIPWAY_MODEL_VERSION"])


def verification_requests(project: K8sProject, cluster: KubeCluster, namespace: str) -> dict[str, float]:
    """Requests per route label, from the serving pods' own counters, read through the API server's
    Service proxy (platform traffic is counted as ``/invocations:<class>``)."""
    text = cluster.get(f"/api/v1/namespaces/{namespace}/services/{DEPLOYMENT}:http/proxy/metrics").text
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'shipway_requests_total\{(.*)\} ([0-9.e+]+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            out[labels["route"]] = out.get(labels["route"], 0.0) + float(m.group(2))
    return out


def audit_records(project: K8sProject) -> list[dict[str, Any]]:
    path = project.dir / ".shipway" / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_status_promote_verify_rollback_through_the_api_server(deployed: tuple[K8sProject, PodRuntime,
                                                                                 dict[str, int]],
                                                                 cluster: KubeCluster) -> None:
    project, runtime, v = deployed
    ns = runtime.namespace
    v1, v2 = v["baseline"], v["forest"]

    # 1. env status: the adapter reads the Deployment through the API server.
    out = shipway(project, "env", "status", PROJECT_STACK, "--output", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    status = json.dumps(last_json(out.stdout))
    assert f'"served_version": {v1}' in status or f'"serving_version": {v1}' in status, status

    # 2. promote --apply: gates, stack edit, `pulumi up`, rollout, verification via the Service proxy.
    out = shipway(project, "model", "promote", MODEL, "--to", PROJECT_STACK, "--version", str(v2), "--apply",
                  "--reason", "k8s e2e", "--allow-dirty", "--actor", "ci@shipway.invalid", "--output", "json")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert yaml.safe_load(project.stack_file.read_text())["config"]["shipway:models"][MODEL]["version"] == v2
    dep = deployment(cluster, ns)
    assert template_version(dep) == v2
    # The verification reached the new pods' process through the API server's egress.
    served = runtime.versions()
    assert served and set(served.values()) == {str(v2)}, served
    assert any(status == 200 for _addr, status in runtime.connects), runtime.connects
    verify = [r for r in audit_records(project) if r.get("action") == "verify" and r.get("to_version") == v2]
    assert verify and verify[-1]["outcome"] == "ok", verify
    checks = verify[-1]["verification"]["checks"]
    print("verification:", verify[-1]["verification"]["probe"],
          {k: (c["ok"], c["message"]) for k, c in checks.items()})
    assert {"version", "smoke", "slo"} <= set(checks) and all(c["ok"] for c in checks.values()), checks
    assert not checks["smoke"]["message"].startswith("skipped"), checks["smoke"]
    assert verify[-1]["verification"]["probe"]["requests"] > 0, verify[-1]["verification"]
    assert "kubernetes:" in verify[-1]["verification"]["url"]
    counts = verification_requests(project, cluster, ns)
    print("pod request counters after promote:", counts)
    assert counts.get("/invocations:verification", 0) > 0, counts
    assert counts.get("/invocations", 0) == 0, counts  # the platform's own traffic is not user traffic

    # 3. rollback to v1: pin, `pulumi up`, smoke verification of v1 through the same path.
    out = shipway(project, "model", "rollback", MODEL, "--env", PROJECT_STACK, "--to", str(v1),
                  "--reason", "drill", "--allow-dirty", "--actor", "ci@shipway.invalid", "--output", "json")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert template_version(deployment(cluster, ns)) == v1
    assert set(runtime.versions().values()) == {str(v1)}, runtime.versions()
    verify = [r for r in audit_records(project) if r.get("action") == "verify" and r.get("to_version") == v1]
    assert verify and verify[-1]["outcome"] == "ok", verify
    checks = verify[-1]["verification"]["checks"]
    print("rollback verification:", {k: (c["ok"], c["message"]) for k, c in checks.items()})
    assert checks["version"]["ok"] and checks["smoke"]["ok"], checks

    # 4. status again, then a version that does not exist: refused before anything changes.
    out = shipway(project, "env", "status", PROJECT_STACK, "--output", "json")
    assert out.returncode == 0 and (f'"served_version": {v1}' in out.stdout or
                                    f'"serving_version": {v1}' in out.stdout), out.stdout
    before = project.stack_file.read_bytes()
    out = shipway(project, "model", "promote", MODEL, "--to", PROJECT_STACK, "--version", "99", "--apply",
                  "--allow-dirty", "--actor", "ci@shipway.invalid")
    assert out.returncode != 0
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out.stdout + out.stderr).split())
    assert "version 99 of model 'iris-classifier' does not exist (latest is 2)" in said, said
    assert project.stack_file.read_bytes() == before


def test_api_server_egress_never_reaches_an_unknown_address(deployed: tuple[K8sProject, PodRuntime,
                                                                                 dict[str, int]],
                                                                cluster: KubeCluster) -> None:
    """A Service whose endpoints are not a serving pod is answered 502 by the runtime, through the
    API server: the egress is the only way out, and it only leads to the pods' local processes."""
    _project, runtime, _v = deployed
    ns = runtime.namespace
    resp = cluster.get(f"/api/v1/namespaces/{ns}/services/{DEPLOYMENT}:http/proxy/ready")
    assert resp.status_code == 200, resp.text
    # A pod that is not a serving pod (the tracking server's, the database's...): the API server dials
    # its address through the egress, and the runtime refuses it.
    from tests.support.podruntime import serving_container

    pods = cluster.get_json(f"/api/v1/namespaces/{ns}/pods")["items"]
    other = next(p for p in pods if serving_container(p) is None and p["status"].get("podIP"))
    address = f"{other['status']['podIP']}:{other['spec']['containers'][0]['ports'][0]['containerPort']}"
    resp = cluster.get(f"/api/v1/namespaces/{ns}/pods/{other['metadata']['name']}:"
                       f"{address.rsplit(':', 1)[1]}/proxy/")
    print("proxy to", other["metadata"]["name"], address, "->", resp.status_code, resp.text[:200])
    assert resp.status_code >= 500, resp.text
    assert (address, 502) in runtime.connects, runtime.connects
    assert Path(cluster.egress_socket).exists()
