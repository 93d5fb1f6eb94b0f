"""A real Kubernetes control plane on 127.0.0.1 for the Kubernetes target's tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (one multi-call binary,
``shipway-kube``) plus kwok, which simulates the nodes and marks their pods Running/Ready — so
Deployments roll out through the real controllers and Pulumi's normal await logic, with no
kubelet and no container runtime. scripts/kube-tools.sh builds the binaries from Go modules.

Security settings are the ones a real cluster has: TLS everywhere on the API server with
certificates made here (a CA, a serving certificate for 127.0.0.1, one client certificate per
component), RBAC authorization, ``--allow-privileged=false``, the PodSecurity admission plugin
(namespaces opt into ``restricted`` with their labels, as Shipway's do). Every process binds
127.0.0.1 and is stopped by the PID this module started. The API server's ``cluster`` egress (its
connections to pod and Service addresses, e.g. for ``services/<svc>/proxy``) goes over a Unix
socket as HTTP CONNECT, never to the pod network: tests/support/podruntime.py answers it by
running the serving pods as local processes.

Run by hand (docs/engine.md)::

    .venv/bin/python -m tests.support.kubecluster up     # prints the kubeconfig path; Ctrl-C stops it
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".shipway" / "tools" / "bin"
TOOLS_STATE = ROOT / ".shipway" / "tools"
CONTEXT = "shipway-test"
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.1/16"
NODE_NAME = "kwok-node-0"
STORAGE_CLASS = "shipway-local"

# The CRDs Shipway's objects use, read from the module releases tools/crds/go.mod pins.
CRD_FILES = {
    "github.com/prometheus-operator/prometheus-operator": [
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
    ],
    "github.com/external-secrets/external-secrets": [
        "config/crds/bases/external-secrets.io_externalsecrets.yaml",
        "config/crds/bases/external-secrets.io_secretstores.yaml",
        "config/crds/bases/external-secrets.io_clustersecretstores.yaml",
    ],
}
# kwok's own stage definitions (node initialise/heartbeat, pod ready/complete/delete).
KWOK_STAGES = [
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
]


class ClusterError(RuntimeError):
    """The control plane did not start, or the tools are missing."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def module_dir(tools_module: str, module: str) -> Path:
    """Where the Go module cache holds ``module`` at the version ``tools/<tools_module>`` pins
    (downloaded and verified against that go.sum when it is not there yet)."""
    out = subprocess.run(["go", "mod", "download", "-json", module], cwd=ROOT / "tools" / tools_module,
                         env={**os.environ, "GOFLAGS": "-mod=readonly"}, capture_output=True, text=True,
                         check=False, timeout=600)
    if out.returncode != 0:
        raise ClusterError(f"go mod download {module} (tools/{tools_module}) failed:\n{out.stdout}{out.stderr}")
    return Path(json.loads(out.stdout)["Dir"])


def wait_for_tools(timeout: float) -> None:
    """Wait for scripts/kube-tools.sh (started in the background by scripts/test.sh) to finish;
    run it here when nobody started it."""
    done, failed = TOOLS_STATE / "kube-tools.done", TOOLS_STATE / "kube-tools.failed"
    log = TOOLS_STATE / "kube-tools.log"
    if not done.exists() and not failed.exists() and not _build_running():
        with log.open("a") as out:  # appended: one log of every run
            subprocess.run([str(ROOT / "scripts" / "kube-tools.sh")], stdout=out, stderr=subprocess.STDOUT,
                           check=False, timeout=timeout)
    deadline = time.monotonic() + timeout
    while not done.exists():
        if failed.exists():
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise ClusterError(f"scripts/kube-tools.sh failed; its log ({log}) ends:\n{tail}")
        if time.monotonic() > deadline:
            raise ClusterError(f"scripts/kube-tools.sh did not finish within {timeout:.0f}s; see {log}")
        time.sleep(5)


def _build_running() -> bool:
    pid_file = TOOLS_STATE / "kube-tools.pid"
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


# --- certificates -----------------------------------------------------------------------------

def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass
class _CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls) -> _CA:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        name = _name("shipway-test-ca")
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def issue(self, cn: str, org: str | None = None, *, server: bool = False,
              ips: Iterable[str] = (), dns: Iterable[str] = ()) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder().subject_name(_name(cn, org)).issuer_name(self.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        names += [x509.DNSName(d) for d in dns]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- the cluster -------------------------------------------------------------------------------

@dataclass
class KubeCluster:
    """A running control plane; ``kubeconfig`` is an admin kubeconfig with context ``shipway-test``."""

    dir: Path
    api_port: int = 0
    kubeconfig: Path = field(init=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kubeconfig = self.dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def egress_socket(self) -> Path:
        """Where the API server sends its connections to pod and Service addresses (HTTP CONNECT);
        tests/support/podruntime.py listens there. Nobody listening: those proxies answer 503."""
        return self.dir / "egress.sock"

    def _egress_config(self) -> Path:
        path = self.dir / "egress-selector.yaml"
        path.write_text(yaml.safe_dump({
            "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
            "egressSelections": [{"name": "cluster", "connection": {
                "proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": str(self.egress_socket)}}}}],
        }, sort_keys=False))
        return path

    # -- lifecycle --
    def start(self, timeout: float = 180) -> KubeCluster:
        binary = BIN / "shipway-kube"
        if not binary.exists() or not (BIN / "kwok").exists():
            raise ClusterError(f"{binary} or kwok missing: run scripts/kube-tools.sh")
        pki = self.dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        self._certificates(pki)
        etcd_port, etcd_peer = free_port(), free_port()
        self.api_port = self.api_port or free_port()
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        self._spawn("etcd", binary, "etcd", "--name", "shipway-test", "--data-dir", str(self.dir / "etcd"),
                    "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                    "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                    "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                    "--initial-cluster", f"shipway-test=http://127.0.0.1:{etcd_peer}",
                    "--unsafe-no-fsync", "--quota-backend-bytes", str(2 << 30))
        self._wait_http(f"http://127.0.0.1:{etcd_port}/health", timeout, "etcd")
        self._spawn("kube-apiserver", binary, "kube-apiserver",
                    f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                    "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                    f"--secure-port={self.api_port}",
                    f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                    f"--client-ca-file={pki / 'ca.crt'}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={pki / 'sa.pub'}",
                    f"--service-account-signing-key-file={pki / 'sa.key'}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--authorization-mode=Node,RBAC", "--allow-privileged=false",
                    "--enable-admission-plugins=NodeRestriction",
                    "--enable-priority-and-fairness=false", "--profiling=false",
                    "--anonymous-auth=false",
                    # Pod/Service proxying never dials the (fake) pod network: see egress_socket.
                    f"--egress-selector-config-file={self._egress_config()}")
        self._write_kubeconfigs(pki)
        self._wait_api(timeout)
        kcm_port, sched_port, kwok_port = free_port(), free_port(), free_port()
        self._spawn("kube-controller-manager", binary, "kube-controller-manager",
                    f"--kubeconfig={self.dir / 'kcm.kubeconfig'}",
                    f"--authentication-kubeconfig={self.dir / 'kcm.kubeconfig'}",
                    f"--authorization-kubeconfig={self.dir / 'kcm.kubeconfig'}",
                    "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", "--leader-elect=false",
                    f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
                    "--use-service-account-credentials=true",
                    f"--service-cluster-ip-range={SERVICE_CIDR}")
        self._spawn("kube-scheduler", binary, "kube-scheduler",
                    f"--kubeconfig={self.dir / 'scheduler.kubeconfig'}",
                    f"--authentication-kubeconfig={self.dir / 'scheduler.kubeconfig'}",
                    f"--authorization-kubeconfig={self.dir / 'scheduler.kubeconfig'}",
                    "--bind-address=127.0.0.1", f"--secure-port={sched_port}", "--leader-elect=false")
        stages = self.dir / "kwok-stages.yaml"
        kwok_dir = module_dir("kwok", "sigs.k8s.io/kwok")
        stages.write_text("\n---\n".join((kwok_dir / f).read_text() for f in KWOK_STAGES))
        self._spawn("kwok", BIN / "kwok", f"--kubeconfig={self.dir / 'kwok.kubeconfig'}",
                    f"--config={stages}", "--manage-all-nodes=true", f"--cidr={POD_CIDR}",
                    "--node-ip=127.0.0.1", f"--server-address=127.0.0.1:{kwok_port}",
                    "--node-lease-duration-seconds=40")
        self._bootstrap(timeout)
        return self

    def stop(self) -> None:
        """Stop every process this object started (by PID), newest first."""
        for name, proc in reversed(list(self.procs.items())):
            stop_process(proc)
            del self.procs[name]

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, *cmd: str | Path) -> None:
        log = (self.dir / "logs" / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.dir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise ClusterError(f"{name} exited with {proc.returncode}; its log ends:\n{tail}")

    def _wait_http(self, url: str, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if requests.get(url, timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise ClusterError(f"{what} not healthy at {url} after {timeout:.0f}s")

    def _wait_api(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if self.get("/readyz").ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise ClusterError(f"kube-apiserver not ready at {self.server} after {timeout:.0f}s")

    def _certificates(self, pki: Path) -> None:
        ca = _CA.create()
        (pki / "ca.crt").write_bytes(_pem(ca.cert))
        key, cert = ca.issue("kube-apiserver", server=True, ips=["127.0.0.1", "10.0.0.1"],
                             dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                  "kubernetes.default.svc.cluster.local"])
        _write_key(pki / "apiserver.key", key)
        (pki / "apiserver.crt").write_bytes(_pem(cert))
        clients = {"admin": ("shipway-admin", "system:masters"),
                   "kcm": ("system:kube-controller-manager", None),
                   "scheduler": ("system:kube-scheduler", None),
                   # kwok acts for every node; it gets the cluster-admin group of a node simulator.
                   "kwok": ("kwok-controller", "system:masters")}
        for file, (cn, org) in clients.items():
            key, cert = ca.issue(cn, org)
            _write_key(pki / f"{file}.key", key)
            (pki / f"{file}.crt").write_bytes(_pem(cert))
        sa = _key()
        _write_key(pki / "sa.key", sa)
        (pki / "sa.pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def _write_kubeconfigs(self, pki: Path) -> None:
        for file, user in (("kubeconfig", "admin"), ("kcm.kubeconfig", "kcm"),
                           ("scheduler.kubeconfig", "scheduler"), ("kwok.kubeconfig", "kwok")):
            doc = {
                "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
                "clusters": [{"name": CONTEXT, "cluster": {"server": self.server,
                                                          "certificate-authority": str(pki / "ca.crt")}}],
                "users": [{"name": user, "user": {"client-certificate": str(pki / f"{user}.crt"),
                                                  "client-key": str(pki / f"{user}.key")}}],
                "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
            }
            path = self.dir / file
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            path.chmod(0o600)

    def _bootstrap(self, timeout: float) -> None:
        """CRDs, a StorageClass with pre-provisioned volumes, and one simulated node."""
        for module, files in CRD_FILES.items():
            base = module_dir("crds", module)
            for f in files:
                self.apply(yaml.safe_load((base / f).read_text()))
        self.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                    "metadata": {"name": STORAGE_CLASS,
                                 "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                    "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate",
                    "reclaimPolicy": "Retain"})
        for i in range(6):
            self.apply({"apiVersion": "v1", "kind": "PersistentVolume",
                        "metadata": {"name": f"shipway-pv-{i}"},
                        "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteOnce"],
                                 "storageClassName": STORAGE_CLASS,
                                 "persistentVolumeReclaimPolicy": "Retain",
                                 "hostPath": {"path": f"/var/lib/shipway-test/pv-{i}"}}})
        self.apply({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": NODE_NAME,
                                 "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                                 "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                                            "kubernetes.io/arch": "amd64", "type": "kwok"}},
                    "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                               "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}}})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            node = self.get(f"/api/v1/nodes/{NODE_NAME}").json()
            ready = [c for c in node.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
            sa = self.get("/api/v1/namespaces/default/serviceaccounts/default")
            if ready and ready[0]["status"] == "True" and sa.ok:
                return
            time.sleep(0.5)
        raise ClusterError(f"node {NODE_NAME} not Ready (kwok) or no default ServiceAccount after {timeout:.0f}s")

    # -- API --
    def request(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        pki = self.dir / "pki"
        return requests.request(method, self.server + path, json=body, params=params or None, timeout=30,
                                cert=(str(pki / "admin.crt"), str(pki / "admin.key")), verify=str(pki / "ca.crt"))

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.request("GET", path, **params)

    def get_json(self, path: str, **params: Any) -> dict[str, Any]:
        resp = self.get(path, **params)
        if not resp.ok:
            raise AssertionError(f"GET {path}: {resp.status_code} {resp.text[:500]}")
        data: dict[str, Any] = resp.json()
        return data

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` (or replace it when it exists); raise with the API's message otherwise."""
        path = collection_path(obj)
        resp = self.request("POST", path, obj)
        if resp.status_code == 409:
            current = self.get_json(f"{path}/{obj['metadata']['name']}")
            obj = {**obj, "metadata": {**obj["metadata"],
                                       "resourceVersion": current["metadata"]["resourceVersion"]}}
            resp = self.request("PUT", f"{path}/{obj['metadata']['name']}", obj)
        if not resp.ok:
            raise ClusterError(f"{obj['kind']} {obj['metadata']['name']}: {resp.status_code} {resp.text[:800]}")
        data: dict[str, Any] = resp.json()
        return data


_CLUSTER_SCOPED = {"Namespace", "Node", "PersistentVolume", "StorageClass", "CustomResourceDefinition",
                   "ClusterRole", "ClusterRoleBinding", "ClusterSecretStore"}
_PLURALS = {"StorageClass": "storageclasses", "PersistentVolume": "persistentvolumes", "Node": "nodes",
            "Namespace": "namespaces", "Pod": "pods", "CustomResourceDefinition": "customresourcedefinitions",
            "NetworkPolicy": "networkpolicies", "PodDisruptionBudget": "poddisruptionbudgets",
            "Endpoints": "endpoints"}


def collection_path(obj: dict[str, Any]) -> str:
    """The REST collection an object is created in (core, named group, cluster or namespaced)."""
    api, kind = obj["apiVersion"], obj["kind"]
    prefix = f"/api/{api}" if "/" not in api else f"/apis/{api}"
    plural = _PLURALS.get(kind, kind.lower() + ("es" if kind.endswith("s") else "s"))
    if kind in _CLUSTER_SCOPED:
        return f"{prefix}/{plural}"
    ns = obj["metadata"].get("namespace", "default")
    return f"{prefix}/namespaces/{ns}/{plural}"


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM a process this test started, then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def running_cluster(base: Path) -> Iterator[KubeCluster]:
    """A started cluster for a test module; waits for scripts/kube-tools.sh first (a cold build
    takes ~30 minutes; SHIPWAY_KUBE_TOOLS_TIMEOUT bounds the wait)."""
    wait_for_tools(timeout=float(os.environ.get("SHIPWAY_KUBE_TOOLS_TIMEOUT", "3600")))
    with KubeCluster(base) as running:
        yield running


def _main(argv: list[str]) -> int:
    if argv[:1] != ["up"]:
        print(__doc__)
        return 2
    wait_for_tools(timeout=3600)
    base = ROOT / ".shipway" / "kube"
    base.mkdir(parents=True, exist_ok=True)
    cluster = KubeCluster(base).start()
    print(f"control plane up: {cluster.server}\nexport KUBECONFIG={cluster.kubeconfig}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


def iter_docs(text: str) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(text):
        if doc:
            yield doc


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
