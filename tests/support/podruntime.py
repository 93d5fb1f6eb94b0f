"""Run the Shipway serving pods of the test cluster as local processes, reached through the API server.

The test control plane (tests/support/kubecluster.py) has no kubelet: kwok marks pods Running and
Ready and gives them addresses from the pod CIDR (10.244.0.0/16) that nothing listens on. So that
traffic the platform sends *through the API server* — ``/api/v1/namespaces/<ns>/services/<svc>:http/
proxy/invocations``, exactly what the Kubernetes target adapter's verification does on a real
cluster — reaches a real serving app, the API server is started with an egress selector: every
connection it makes to a pod or Service address (its ``cluster`` egress) is an HTTP ``CONNECT``
over a Unix socket to this module instead of a packet on the network. Here:

* every pod on the kwok node whose container carries the serving contract
  (``SHIPWAY_PLATFORM=kubernetes``) is run as the image's entrypoint, ``python -m
  shipway.serving.platform``, with the pod's own environment: literal values, Secret volumes
  written from the live Secret (the API key file), emptyDir volumes as local directories, and the
  container paths in the env remapped to them; pods with the same container spec share a process;
* ``CONNECT <podIP>:<port>`` is answered once that pod's process answers ``/ready`` and the bytes
  are spliced to it on 127.0.0.1; any other address gets ``502``.

Only loopback is ever dialled: a pod whose registry (``MLFLOW_TRACKING_URI``) is not on 127.0.0.1
is refused, and the in-cluster OTLP endpoint (a cluster DNS name) is dropped from the env.
Processes are stopped by the PID this module started.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from shipway_core import contract as c
from tests.support.kubecluster import NODE_NAME, KubeCluster, free_port, stop_process

READY_TIMEOUT = 120.0


@dataclass
class Container:
    """One local process standing in for the containers of every pod with the same spec."""

    key: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    pods: set[str] = field(default_factory=set)
    version: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            return requests.get(self.url + c.READY, timeout=2).ok
        except requests.RequestException:
            return False


class PodRuntime:
    """Serves ``cluster.egress_socket`` and runs the serving pods; use as a context manager."""

    def __init__(self, cluster: KubeCluster, namespace: str, poll: float = 0.5) -> None:
        self.cluster, self.namespace, self.poll = cluster, namespace, poll
        self.containers: dict[str, Container] = {}
        self.by_ip: dict[str, str] = {}  # pod IP -> container key
        self.connects: list[tuple[str, int]] = []  # (address, HTTP status answered), in order
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None
        self.log_dir = Path(tempfile.mkdtemp(prefix="shipway-pods-", dir=cluster.dir))

    # -- lifecycle --
    def __enter__(self) -> PodRuntime:
        path = self.cluster.egress_socket
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(64)
        server.settimeout(0.5)
        self._server = server
        for target in (self._accept_loop, self._watch_loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.cluster.egress_socket.unlink()
        for key in list(self.containers):
            self._stop_container(key)

    # -- pods -> processes --
    def serving_pods(self) -> list[dict[str, Any]]:
        pods = self.cluster.get_json(f"/api/v1/namespaces/{self.namespace}/pods",
                                     fieldSelector=f"spec.nodeName={NODE_NAME}")["items"]
        return [p for p in pods if p.get("status", {}).get("phase") == "Running"
                and p["metadata"].get("deletionTimestamp") is None and serving_container(p) is not None]

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # keep watching: a failed list is retried on the next tick
                (self.log_dir / "watch-errors.log").open("a").write(f"{time.time():.1f} {exc!r}\n")
            self._stop.wait(self.poll)

    def sync(self) -> None:
        """Start a process for every new pod spec; stop those no running pod uses any more."""
        pods = self.serving_pods()
        wanted: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            wanted.setdefault(spec_key(pod), []).append(pod)
        with self._lock:
            for key, group in wanted.items():
                if key not in self.containers:
                    self.containers[key] = self._start_container(key, group[0])
                self.containers[key].pods = {p["metadata"]["name"] for p in group}
                for pod in group:
                    ip = pod.get("status", {}).get("podIP")
                    if ip:
                        self.by_ip[ip] = key
            for key in [k for k in self.containers if k not in wanted]:
                self._stop_container(key)
                self.by_ip = {ip: k for ip, k in self.by_ip.items() if k != key}

    def _start_container(self, key: str, pod: dict[str, Any]) -> Container:
        container = serving_container(pod)
        assert container is not None
        workdir = Path(tempfile.mkdtemp(prefix=f"pod-{key[:8]}-", dir=self.log_dir))
        env = self.container_env(pod, container, workdir)
        port = free_port()
        env[c.PORT] = str(port)
        env[c.HOST] = "127.0.0.1"
        log = (workdir / "container.log").open("ab")
        # The image's entrypoint (tests/integration/test_image.py checks the image runs the same).
        proc = subprocess.Popen([sys.executable, "-m", "shipway.serving.platform"], env=env, cwd=workdir,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        return Container(key, port, proc, workdir, version=env.get(c.MODEL_VERSION, ""))

    def _stop_container(self, key: str) -> None:
        stop_process(self.containers.pop(key).proc)

    def container_env(self, pod: dict[str, Any], container: dict[str, Any], workdir: Path) -> dict[str, str]:
        """The container's env with its volume paths remapped under ``workdir``; loopback only."""
        ns = pod["metadata"]["namespace"]
        mounts: dict[str, Path] = {}
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            local = workdir / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"].rstrip("/")] = local
            secret = volumes.get(mount["name"], {}).get("secret")
            if secret:
                data = self.cluster.get_json(f"/api/v1/namespaces/{ns}/secrets/{secret['secretName']}")["data"]
                items = secret.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    target = local / item["path"]
                    target.write_bytes(base64.b64decode(data[item["key"]]))
                    target.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "TMPDIR")}
        for var in container.get("env") or []:
            if "value" not in var:
                raise AssertionError(f"pod {pod['metadata']['name']}: env {var['name']} uses valueFrom, which "
                                     "this runtime does not resolve (Shipway mounts secrets as files)")
            value = str(var["value"])
            for path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                if value == path or value.startswith(path + "/"):
                    value = str(local) + value[len(path):]
                    break
            env[var["name"]] = value
        tracking = urlparse(env.get(c.TRACKING_URI, ""))
        if tracking.hostname not in ("127.0.0.1", None) or tracking.scheme not in ("http", "https", ""):
            raise AssertionError(f"pod {pod['metadata']['name']}: {c.TRACKING_URI}={env[c.TRACKING_URI]!r} is "
                                 "not on 127.0.0.1; this runtime only dials loopback")
        env.pop(c.OTLP_ENDPOINT, None)  # an in-cluster DNS name: never resolved from here
        return env

    # -- the API server's egress --
    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = request_line.partition(" ")
            address = rest.split(" ", 1)[0]
            container = self._resolve(address) if method == "CONNECT" else None
            if container is None:
                self._answer(conn, address, 502, "no serving pod at this address")
                return
            deadline = time.monotonic() + READY_TIMEOUT
            while not container.ready():
                if container.proc.poll() is not None or time.monotonic() > deadline or self._stop.is_set():
                    self._answer(conn, address, 503, "pod process not ready")
                    return
                time.sleep(0.2)
            try:
                upstream = socket.create_connection(("127.0.0.1", container.port), timeout=10)
            except OSError:
                self._answer(conn, address, 503, "pod process refused the connection")
                return
            self._answer(conn, address, 200, "Connection established")
            with upstream:
                splice(conn, upstream)

    def _resolve(self, address: str) -> Container | None:
        host, _, _port = address.rpartition(":")
        for _ in range(2):
            with self._lock:
                key = self.by_ip.get(host)
                if key is not None and key in self.containers:
                    return self.containers[key]
            self.sync()  # a pod that became Running since the last tick
        return None

    def _answer(self, conn: socket.socket, address: str, status: int, reason: str) -> None:
        with self._lock:
            self.connects.append((address, status))
        conn.sendall(f"HTTP/1.1 {status} {reason}\r\n\r\n".encode())

    def versions(self) -> dict[str, str]:
        """Pod name -> the model version its process serves (for assertions)."""
        with self._lock:
            return {pod: cont.version for cont in self.containers.values() for pod in cont.pods}

    def logs(self) -> Iterator[tuple[str, str]]:
        for path in sorted(self.log_dir.rglob("container.log")):
            yield str(path), path.read_text(errors="replace")[-3000:]


def serving_container(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The pod's container that implements the Kubernetes serving contract, if any."""
    for container in pod["spec"].get("containers") or []:
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        if env.get(c.PLATFORM) == c.KUBERNETES:
            return container  # type: ignore[no-any-return]
    return None


def spec_key(pod: dict[str, Any]) -> str:
    """Pods with the same serving container spec share one process."""
    container = serving_container(pod)
    return hashlib.sha256(json.dumps([pod["metadata"]["namespace"], container], sort_keys=True).encode()).hexdigest()


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    a.settimeout(None)
    b.settimeout(None)
    try:
        while True:
            for key, _ in sel.select(timeout=60):
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                data = src.recv(65536)
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        sel.close()
