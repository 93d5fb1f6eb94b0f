"""The Kubernetes target deployed for real: the committed `k8s` stack, through `infra/` (the
real program) and the real pulumi CLI with the pulumi-kubernetes provider, against a real API
server (tests/support/kubecluster.py: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok), with the policy pack judging every preview.

The tests run in order on one cluster and one stack (module scope): preview -> up -> pin 1->2 ->
rollback -> no-change up -> pre-flight refusal -> destroy. Pods never run a container (kwok
simulates the node), so what is proven is everything up to the kubelet: admission (RBAC,
Pod Security `restricted`, CRD schemas), the controllers' rollout, and Pulumi's await logic.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipway import engine
from tests.support.kubecluster import CONTEXT, KubeCluster, collection_path, running_cluster
from tests.support.mlflowserver import mlflow_server, register_stub_versions

pytestmark = [pytest.mark.integration, pytest.mark.kubernetes]

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policies"
STACK = "k8s"  # the committed stack file
# In the throwaway project the stack is named after its environment, as the CLI expects
# (`shipway env status dev`): the committed k8s stack file becomes stacks/Pulumi.dev.yaml there.
PROJECT_STACK = "dev"
MODEL = "iris-classifier"
DEPLOYMENT = f"serve-{MODEL}"


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with running_cluster(tmp_path_factory.mktemp("kube")) as running:
        yield running


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow server on 127.0.0.1 with two versions of the model registered."""
    root = tmp_path_factory.mktemp("registry")
    with mlflow_server(root) as uri:
        register_stub_versions(uri, MODEL, 2, root)
        yield uri


class K8sProject:
    """A throwaway project whose only stack file is a copy of the committed stacks/Pulumi.k8s.yaml."""

    def __init__(self, base: Path, cluster: KubeCluster, registry: str) -> None:
        self.dir = base / "project"
        (self.dir / "infra").mkdir(parents=True)
        (self.dir / "stacks").mkdir()
        (self.dir / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
            name: shipway
            main: infra/
            stackConfigDir: stacks
            runtime:
              name: python
              options:
                toolchain: pip
                virtualenv: {ROOT / '.venv'}
            """))
        shutil.copy(ROOT / "infra" / "__main__.py", self.dir / "infra" / "__main__.py")
        self.stack_file = self.dir / "stacks" / f"Pulumi.{PROJECT_STACK}.yaml"
        shutil.copy(ROOT / "stacks" / f"Pulumi.{STACK}.yaml", self.stack_file)
        self.env = engine.pulumi_env(PROJECT_STACK, ROOT)
        (base / "state").mkdir()
        self.env.update({"PULUMI_BACKEND_URL": f"file://{base / 'state'}", "KUBECONFIG": str(cluster.kubeconfig),
                         "PULUMI_CONFIG_PASSPHRASE": "k8s-target-test"})
        self.set_config("shipway:registryUri", registry)
        self.pulumi("stack", "init")
        self.pulumi("config", "set", "--secret", "shipway:endpointApiKey", secrets.token_hex(24))
        self.pulumi("config", "set", "--secret", "shipway:trackingDbPassword", secrets.token_hex(24))

    def set_config(self, key: str, value: Any) -> None:
        doc = yaml.safe_load(self.stack_file.read_text())
        doc["config"][key] = value
        self.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def pin(self, version: int) -> None:
        doc = yaml.safe_load(self.stack_file.read_text())
        doc["config"]["shipway:models"][MODEL]["version"] = version
        self.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def pulumi(self, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        cmd = [str(engine.pulumi_binary(ROOT)), *args, "--stack", PROJECT_STACK, "--non-interactive"]
        out = subprocess.run(cmd, cwd=self.dir, env=self.env, text=True, capture_output=True, timeout=timeout,
                             check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def with_policies(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.pulumi(*args, "--policy-pack", str(PACK),
                           "--policy-pack-config", str(PACK / "config" / "dev.json"), **kw)

    def preview_steps(self) -> list[dict[str, Any]]:
        """The engine's planned steps (`pulumi preview --json`), without the stack and no-ops."""
        out = self.pulumi("preview", "--json")
        steps: list[dict[str, Any]] = json.loads(out.stdout).get("steps", [])
        return [s for s in steps if s["op"] != "same" and s.get("type") != "pulumi:pulumi:Stack"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: KubeCluster, registry: str) -> Iterator[K8sProject]:
    proj = K8sProject(tmp_path_factory.mktemp("k8s-project"), cluster, registry)
    yield proj
    proj.pulumi("destroy", "--yes", check=False)


def namespace(_cluster: KubeCluster) -> str:
    """The namespace the committed stack file names."""
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{STACK}.yaml").read_text())
    return str(doc["config"]["shipway:kubernetes"]["namespace"])


def deployment(cluster: KubeCluster) -> dict[str, Any]:
    return cluster.get_json(f"/apis/apps/v1/namespaces/{namespace(cluster)}/deployments/{DEPLOYMENT}")


def served_version(dep: dict[str, Any]) -> str:
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    return str(env.get("SHIPWAY_MODEL_VERSION"))


def rolled_out(dep: dict[str, Any]) -> bool:
    status, want = dep.get("status", {}), dep["spec"]["replicas"]
    return (status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
            and status.get("updatedReplicas") == want and status.get("readyReplicas") == want
            and status.get("availableReplicas") == want and not status.get("unavailableReplicas"))


# --- the tests, in order -------------------------------------------------------------------------

def test_preview_with_policy_pack_judges_real_engine_input(project: K8sProject) -> None:
    out = project.with_policies("preview")
    text = out.stdout + out.stderr
    print("\n".join(line for line in text.splitlines() if "olic" in line or "to create" in line))
    assert "shipway-policies" in text or "Policies:" in text, text[-3000:]
    assert "mandatory" not in text.lower(), text[-3000:]
    planned = project.preview_steps()
    types = {s["newState"]["type"] for s in planned if s["op"] == "create"}
    assert {"kubernetes:core/v1:Namespace", "kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet",
            "kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
            "kubernetes:monitoring.coreos.com/v1:PrometheusRule"} <= types, sorted(types)


def test_up_every_object_admitted_and_rolled_out(project: K8sProject, cluster: KubeCluster) -> None:
    out = project.with_policies("up", "--yes", "--skip-preview")
    assert "error" not in out.stderr.lower(), out.stderr[-3000:]
    ns = cluster.get_json(f"/api/v1/namespaces/{namespace(cluster)}")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    dep = deployment(cluster)
    assert rolled_out(dep), dep.get("status")
    assert served_version(dep) == "1"
    pods = cluster.get_json(f"/api/v1/namespaces/{namespace(cluster)}/pods",
                            labelSelector=",".join(f"{k}={v}" for k, v in
                                                   dep["spec"]["selector"]["matchLabels"].items()))["items"]
    assert len(pods) == dep["spec"]["replicas"] == 2
    assert all(p["spec"]["nodeName"] == "kwok-node-0" and p["status"]["phase"] == "Running" for p in pods)
    # Every Kubernetes object in the stack's state exists in the cluster, as Pulumi recorded it.
    state = json.loads(project.pulumi("stack", "export").stdout)
    k8s = [r for r in state["deployment"]["resources"]
           if r["type"].startswith("kubernetes:") and not r["type"].startswith("pulumi:providers")]
    assert len(k8s) >= 20
    for res in k8s:
        outputs = res["outputs"]
        meta = outputs["metadata"]
        api, kind = outputs["apiVersion"], outputs["kind"]
        path = collection_path({"apiVersion": api, "kind": kind, "metadata": meta})
        live = cluster.get(f"{path}/{meta['name']}")
        assert live.ok, f"{kind} {meta['name']}: {live.status_code} {live.text[:300]}"
        assert live.json()["metadata"]["uid"] == meta["uid"]


def test_crd_backed_objects_accepted_by_their_schemas(project: K8sProject, cluster: KubeCluster) -> None:
    ns = namespace(cluster)
    monitors = cluster.get_json(f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors")["items"]
    rules = cluster.get_json(f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/prometheusrules")["items"]
    assert monitors and rules
    alerts = {r["alert"] for group in rules[0]["spec"]["groups"] for r in group["rules"] if "alert" in r}
    assert alerts, rules[0]["spec"]
    # The CRD schemas are enforced: a ServiceMonitor with a wrongly typed field is refused.
    bad = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
           "metadata": {"name": "bad-monitor", "namespace": ns},
           "spec": {"endpoints": "not-a-list", "selector": {}}}
    resp = cluster.request("POST", f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors", bad)
    assert resp.status_code == 422, resp.text
    assert "spec.endpoints" in resp.text


def test_pod_security_restricted_rejects_privileged_root_pod(project: K8sProject, cluster: KubeCluster) -> None:
    ns = namespace(cluster)
    root_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root-pod", "namespace": ns},
                "spec": {"containers": [{"name": "c", "image": "debian:bookworm",
                                         "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": True}}]}}
    resp = cluster.request("POST", f"/api/v1/namespaces/{ns}/pods", root_pod)
    assert resp.status_code == 403, resp.text
    message = resp.json()["message"]
    print("root pod:", resp.status_code, message)
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "runAsUser=0" in message and "allowPrivilegeEscalation != false" in message
    privileged = {**root_pod, "metadata": {"name": "privileged-pod", "namespace": ns},
                  "spec": {"containers": [{"name": "c", "image": "debian:bookworm",
                                           "securityContext": {"privileged": True}}]}}
    resp = cluster.request("POST", f"/api/v1/namespaces/{ns}/pods", privileged)
    assert resp.status_code in (403, 422), resp.text
    assert "privileged" in resp.json()["message"]
    for name in ("root-pod", "privileged-pod"):
        assert cluster.get(f"/api/v1/namespaces/{ns}/pods/{name}").status_code == 404
    # Shipway's own pods were admitted under the same policy and are running.
    pods = cluster.get_json(f"/api/v1/namespaces/{ns}/pods")["items"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods), [p["metadata"]["name"] for p in pods]


def test_pin_change_updates_exactly_the_inference_deployment(project: K8sProject, cluster: KubeCluster) -> None:
    before = deployment(cluster)
    project.pin(2)
    planned = project.preview_steps()
    print("pin 1 -> 2 plans:", sorted((s["op"], s["urn"].split("::")[-1]) for s in planned))
    cluster_changes = {(s["op"], s["urn"].split("::")[-1]) for s in planned
                       if s["urn"].split("::")[-2].split("$")[-1].startswith("kubernetes:")}
    assert cluster_changes == {("update", f"{DEPLOYMENT}-deployment")}, planned
    # Outside the cluster only the registry alias moves (`dev` -> version 2): nothing is replaced.
    assert {(s["op"], s["urn"].split("::")[-1]) for s in planned} == {
        ("update", f"{DEPLOYMENT}-deployment"), ("update", f"{MODEL}-pin-alias")}, planned
    project.with_policies("up", "--yes", "--skip-preview")
    after = deployment(cluster)
    assert served_version(after) == "2"
    assert rolled_out(after), after.get("status")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    sts = cluster.get_json(f"/apis/apps/v1/namespaces/{namespace(cluster)}/statefulsets")["items"]
    assert all(s["metadata"]["generation"] == 1 for s in sts), [s["metadata"]["name"] for s in sts]


def test_rollback_returns_to_version_one(project: K8sProject, cluster: KubeCluster) -> None:
    project.pin(1)
    project.with_policies("up", "--yes")
    dep = deployment(cluster)
    assert served_version(dep) == "1"
    assert rolled_out(dep), dep.get("status")


def test_cli_env_status_and_adapter_verification_read_the_live_cluster(project: K8sProject,
                                                                       cluster: KubeCluster) -> None:
    """`shipway env status` on a Kubernetes stack goes through the target adapter to the API server."""
    from shipway.targets.base import AdapterContext
    from shipway.targets.kubernetes import KubernetesAdapter
    from shipway_core.config import SloSettings, load_stack_file
    from shipway_core.outputs import PlatformOutputs

    out = subprocess.run([str(ROOT / ".venv" / "bin" / "shipway"), "--root", str(project.dir), "env", "status",
                          PROJECT_STACK, "--output", "json"], env=project.env, text=True, capture_output=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    report = json.loads(text[text.index("{") if text.lstrip().startswith("{") else text.index("["):])
    assert MODEL in json.dumps(report)
    row = json.dumps(report)
    assert '"serving_version": 1' in row or '"served_version": 1' in row, row
    assert '"up"' in row, row

    outputs = PlatformOutputs.from_exports(json.loads(project.pulumi("stack", "output", "--json",
                                                                     "--show-secrets").stdout), stack=PROJECT_STACK)
    cfg = load_stack_file(project.stack_file)
    old_kubeconfig = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    try:
        adapter = KubernetesAdapter(outputs, cfg, AdapterContext(root=project.dir, registry_factory=lambda u: None))
        state = adapter.status()[MODEL]
        assert (state.served_version, state.state) == (1, "up"), state
        good = adapter.verify(MODEL, 1, SloSettings())
        assert good.ok, good.as_dict()
        assert "rolled out version 1" in good.checks[0].message
        wrong = adapter.verify(MODEL, 2, SloSettings())
        assert not wrong.ok and "serves version 1" in wrong.reason, wrong.as_dict()
        assert adapter.api_key(MODEL)  # read from the endpoint's Secret through the API server
    finally:
        if old_kubeconfig is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old_kubeconfig


def test_second_up_without_change_reports_no_changes(project: K8sProject) -> None:
    out = project.pulumi("preview", "--expect-no-changes")
    assert out.returncode == 0
    print("no-change preview:", [line.strip() for line in out.stdout.splitlines() if "unchanged" in line])
    assert project.preview_steps() == []


def test_preflight_refuses_missing_version_and_changes_nothing(project: K8sProject, cluster: KubeCluster) -> None:
    before = deployment(cluster)
    project.pin(99)
    out = project.pulumi("preview", check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    print("pin 99:", next(line.strip() for line in text.splitlines() if "version 99 does not exist" in line))
    assert f"model '{MODEL}' version 99 does not exist" in text, text[-3000:]
    assert "registered versions: 2, 1" in text or "registered versions: 1, 2" in text, text[-3000:]
    up = project.pulumi("up", "--yes", check=False)
    assert up.returncode != 0
    after = deployment(cluster)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    project.pin(1)


def test_external_secrets_variant_accepted_by_the_external_secrets_crd(project: K8sProject,
                                                                        cluster: KubeCluster) -> None:
    """`kubernetes.externalSecrets: true`: the same stack swaps each Secret for an ExternalSecret
    (external-secrets v0.16.2's CRD validates them; no operator runs, so nothing syncs)."""
    settings = yaml.safe_load(project.stack_file.read_text())["config"]["shipway:kubernetes"]
    project.set_config("shipway:kubernetes", {**settings, "externalSecrets": True})
    project.pulumi("up", "--yes")
    ns = namespace(cluster)
    external = cluster.get_json(f"/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets")["items"]
    assert len(external) == 2, [e["metadata"]["name"] for e in external]
    for item in external:
        assert item["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "shipway"}
        assert item["spec"]["dataFrom"][0]["extract"]["key"].startswith("shipway/dev/")
    # The schema is enforced: an ExternalSecret without a valid store kind is refused.
    bad = {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
           "metadata": {"name": "bad-secret", "namespace": ns},
           "spec": {"secretStoreRef": {"kind": "Vault", "name": "x"}, "target": {"name": "x"}}}
    resp = cluster.request("POST", f"/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets", bad)
    assert resp.status_code == 422, resp.text
    project.set_config("shipway:kubernetes", settings)
    project.pulumi("up", "--yes")


def test_destroy_keeps_protected_registry_data(project: K8sProject, cluster: KubeCluster) -> None:
    """As in prod (protectRegistry): `destroy --exclude-protected` removes the workloads and keeps
    the tracking database and artifact volume; docs/targets/kubernetes.md."""
    project.set_config("shipway:protectRegistry", True)
    project.pulumi("up", "--yes")
    project.pulumi("destroy", "--yes", "--exclude-protected")
    ns = namespace(cluster)
    assert cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{DEPLOYMENT}").status_code == 404
    sts = cluster.get_json(f"/apis/apps/v1/namespaces/{ns}/statefulsets")["items"]
    pvcs = cluster.get_json(f"/api/v1/namespaces/{ns}/persistentvolumeclaims")["items"]
    assert sts, "the tracking database StatefulSet was destroyed"
    assert any(p["metadata"]["name"].endswith("-artifacts") for p in pvcs), [p["metadata"]["name"] for p in pvcs]


def test_stack_file_targets_only_the_test_context(cluster: KubeCluster) -> None:
    """The committed stack can only roll out to the context the test kubeconfig names."""
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{STACK}.yaml").read_text())
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    assert doc["config"]["kubernetes:context"] == CONTEXT == kubeconfig["current-context"]
