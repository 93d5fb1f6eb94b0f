"""Dynamic providers for the `local` target: each resource is a process or a file we own.

Real create/read/update/delete:
- create starts the process and waits until it is healthy;
- read (``pulumi refresh``) reports whether the process is still alive, so a killed
  process shows up as drift and the next ``up`` restarts it;
- update changes the process in place where it can (a model pin is hot-swapped with
  SIGHUP, Prometheus reloads its config) and restarts it otherwise;
- delete stops exactly the PID we started (checked against its command line).

Every resource carries ``shipwayKind`` so the policy pack can recognise it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from components.local import process
from shipway_core.local import status_file

# Numbers cross the engine as protobuf doubles; these keys are integers to us.
_INT_KEYS = frozenset({"port", "pid", "modelVersion", "startTimeout", "metricsPort"})


def _clean(props: dict[str, Any]) -> dict[str, Any]:
    """Drop the SDK's bookkeeping keys and restore integer-valued inputs."""
    return {k: int(v) if k in _INT_KEYS and isinstance(v, float) else v
            for k, v in props.items() if not k.startswith("__")}


def _changed(olds: dict[str, Any], news: dict[str, Any]) -> set[str]:
    """Inputs that differ; the process's own outputs (pid, alive) are not inputs."""
    return {k for k in set(olds) | set(news) if k not in ("pid", "alive") and olds.get(k) != news.get(k)}


def _healthy_within(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.http_ok(url):
            return True
        time.sleep(0.5)
    return False


def _python() -> str:
    # The provider runs in the project's virtualenv; its processes use the same interpreter.
    return sys.executable


class _ProcessProvider(ResourceProvider):
    """Shared lifecycle; subclasses say how to start, where health is, and what is hot-updatable."""

    # Inputs that can change without restarting the process.
    hot_inputs: frozenset[str] = frozenset()

    def marker(self, props: dict[str, Any]) -> str:
        raise NotImplementedError

    def launch(self, props: dict[str, Any]) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def health_url(self, props: dict[str, Any]) -> str:
        raise NotImplementedError

    def log_file(self, props: dict[str, Any]) -> Path:
        return Path(props["dataDir"]) / "process.log"

    def hot_update(self, olds: dict[str, Any], news: dict[str, Any]) -> None:
        raise NotImplementedError

    def status_file(self, props: dict[str, Any]) -> Path:
        """Where the supervisor publishes restarts and the child's pid (read by `env status`)."""
        return status_file(Path(props["dataDir"]), props["shipwayKind"])

    def spawn(self, props: dict[str, Any], argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` under the restart-with-backoff supervisor, with a minimal environment."""
        targets = props.get("metricsTargetsDir")
        target_file = Path(targets) / f"{Path(props['dataDir']).name}-{props['shipwayKind']}.json" if targets else None
        wrapped = process.supervised(argv, props["shipwayKind"] if not props.get("modelName")
                                     else f"{props['shipwayKind']}/{props['modelName']}",
                                     self.status_file(props), target_file, python=_python())
        return process.start(wrapped, self.log_file(props), env=env if env is not None else process.child_env(),
                             cwd=cwd)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if news.get("host") not in (None, "127.0.0.1"):
            from pulumi.dynamic import CheckFailure

            failures.append(CheckFailure("host", f"{news.get('host')!r} is not allowed; local "
                                                 "processes bind 127.0.0.1 only"))
        return CheckResult(news, failures)

    def _start(self, props: dict[str, Any]) -> dict[str, Any]:
        props = _clean(props)
        host, port = props.get("host", "127.0.0.1"), props.get("port")
        if port and not process.port_free(host, int(port)):
            held = "; ".join(process.port_holders(int(port))) or "a process this user cannot see"
            raise process.ProcessError(
                f"{host}:{port} is already in use (by {held}); stop what listens there or set another port "
                f"in the stack config (shipway:local)")
        proc = self.launch(props)
        try:
            process.wait_healthy(self.health_url(props), proc, self.log_file(props),
                                 timeout=float(props.get("startTimeout", 180)))
        except process.ProcessError:
            process.stop_started(proc)
            raise
        return {**props, "pid": proc.pid, "alive": True}

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._start(props)
        return CreateResult(id_=f"{outs['shipwayKind']}:{outs['pid']}", outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        props = _clean(props)
        alive = process.is_ours(props.get("pid"), self.marker(props))
        if alive and not process.http_ok(self.health_url(props)):
            # The supervisor may be restarting a crashed server right now: give it the time a
            # restart takes before reporting drift, so refresh after a crash converges.
            alive = _healthy_within(self.health_url(props), seconds=30.0)
        return ReadResult(id_=id_, outs={**props, "alive": alive})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        olds, news = _clean(olds), _clean(news)
        changed = _changed(olds, news)
        dead = not process.is_ours(olds.get("pid"), self.marker(olds))
        return DiffResult(changes=bool(changed) or dead, replaces=[], stables=[], delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        olds, news = _clean(olds), _clean(news)
        changed = _changed(olds, news)
        pid = olds.get("pid")
        if process.is_ours(pid, self.marker(olds)) and changed and changed <= self.hot_inputs:
            self.hot_update(olds, news)
            return UpdateResult(outs={**news, "pid": pid, "alive": True})
        process.stop(pid, self.marker(olds))
        process.stop_leftovers(pid, self.marker(olds))  # a SIGKILLed supervisor's child
        return UpdateResult(outs=self._start(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        props = _clean(props)
        process.stop(props.get("pid"), self.marker(props))
        process.stop_leftovers(props.get("pid"), self.marker(props))


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600, or tighten an existing one (data and logs are private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _private_sqlite(store_uri: str) -> None:
    # SQLite treats an empty file as a new database and gives its journal files the
    # database's mode, so creating it 0600 first keeps the registry private.
    if store_uri.startswith("sqlite:///"):
        _private_file(Path(store_uri.removeprefix("sqlite://")))


class TrackingServerProvider(_ProcessProvider):
    """A real `mlflow server`: sqlite (or PostgreSQL) backend store + a file artifact root."""

    def marker(self, props: dict[str, Any]) -> str:
        return str(props["artifactRoot"])

    def log_file(self, props: dict[str, Any]) -> Path:
        return Path(props["dataDir"]) / "mlflow-server.log"

    def health_url(self, props: dict[str, Any]) -> str:
        return f"http://{props['host']}:{props['port']}/health"

    def launch(self, props: dict[str, Any]) -> subprocess.Popen[bytes]:
        Path(props["dataDir"]).mkdir(parents=True, exist_ok=True)
        Path(props["artifactRoot"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        argv = [
            _python(), "-m", "mlflow", "server",
            "--host", props["host"], "--port", str(props["port"]),
            "--backend-store-uri", props["backendStoreUri"],
            "--default-artifact-root", props["artifactRoot"],
            # Clients read artifacts from the file root directly: nothing proxies them.
            "--no-serve-artifacts",
            "--workers", "1",
        ]
        if props.get("metricsDir"):
            # /metrics for Prometheus (job "mlflow"): prometheus_flask_exporter's multiprocess
            # files live here; a previous server's files would carry its dead workers' series.
            metrics = Path(props["metricsDir"])
            shutil.rmtree(metrics, ignore_errors=True)
            metrics.mkdir(parents=True)
            argv += ["--expose-prometheus", str(metrics)]
        _private_sqlite(props["backendStoreUri"])
        env = process.child_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        return self.spawn(props, argv, env=env)


class EndpointProvider(_ProcessProvider):
    """The Shipway serving app for one model; a pin change is a hot swap, not a restart."""

    hot_inputs = frozenset({"modelVersion"})

    def marker(self, props: dict[str, Any]) -> str:
        return str(props["pinFile"])

    def log_file(self, props: dict[str, Any]) -> Path:
        return Path(props["dataDir"]) / "serving.log"

    def health_url(self, props: dict[str, Any]) -> str:
        return f"http://{props['host']}:{props['port']}/ready"

    def _write_pin(self, props: dict[str, Any]) -> None:
        pin = {"model_name": props["modelName"], "model_version": int(props["modelVersion"]),
               "tracking_uri": props["trackingUri"]}
        process.write_private(Path(props["pinFile"]), json.dumps(pin))

    def launch(self, props: dict[str, Any]) -> subprocess.Popen[bytes]:
        Path(props["dataDir"]).mkdir(parents=True, exist_ok=True)
        self._write_pin(props)
        argv = [
            _python(), "-m", "shipway.serving",
            "--pin-file", props["pinFile"], "--host", props["host"], "--port", str(props["port"]),
            "--api-key-file", props["apiKeyFile"], "--environment", props["environment"],
            "--request-log", props["requestLog"],
        ]
        if props.get("otlpEndpoint"):
            argv += ["--otlp-endpoint", props["otlpEndpoint"]]
        if props.get("explain"):
            argv.append("--explain")
        _private_file(Path(props["requestLog"]))
        return self.spawn(props, argv)

    def create(self, props: dict[str, Any]) -> CreateResult:
        result = super().create(props)
        self._await_version(result.outs or {})
        return result

    def hot_update(self, olds: dict[str, Any], news: dict[str, Any]) -> None:
        # Load, warm, swap, drain all happen inside the app on SIGHUP; we only wait for it.
        self._write_pin(news)
        os.kill(int(olds["pid"]), signal.SIGHUP)
        self._await_version(news)

    def _await_version(self, props: dict[str, Any], timeout: float = 180.0) -> None:
        want = int(props["modelVersion"])
        url = f"http://{props['host']}:{props['port']}/version"
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                    seen = json.loads(resp.read()).get("model_version")
                if seen == want:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise process.ProcessError(
            f"endpoint {props['modelName']} still serves version {seen} after {timeout:.0f}s, expected "
            f"{want}; it keeps serving the previous version. Log:\n{process.tail(self.log_file(props))}")


class PrometheusProvider(_ProcessProvider):
    """Debian's Prometheus with a generated scrape config and rule file; config changes reload."""

    hot_inputs = frozenset({"configYaml", "rulesYaml"})

    def marker(self, props: dict[str, Any]) -> str:
        return str(Path(props["dataDir"]) / "prometheus.yml")

    def log_file(self, props: dict[str, Any]) -> Path:
        return Path(props["dataDir"]) / "prometheus.log"

    def health_url(self, props: dict[str, Any]) -> str:
        return f"http://{props['host']}:{props['port']}/-/ready"

    def _write_config(self, props: dict[str, Any]) -> None:
        data = Path(props["dataDir"])
        data.mkdir(parents=True, exist_ok=True)
        (data / "rules.yml").write_text(props["rulesYaml"])
        (data / "prometheus.yml").write_text(props["configYaml"])

    def launch(self, props: dict[str, Any]) -> subprocess.Popen[bytes]:
        self._write_config(props)
        data = Path(props["dataDir"])
        argv = [
            props["binary"], f"--config.file={data / 'prometheus.yml'}",
            f"--storage.tsdb.path={data / 'tsdb'}",
            f"--web.listen-address={props['host']}:{props['port']}",
            "--web.enable-lifecycle", "--storage.tsdb.retention.time=7d",
        ]
        return self.spawn(props, argv, cwd=data)

    def hot_update(self, _olds: dict[str, Any], news: dict[str, Any]) -> None:
        self._write_config(news)
        req = urllib.request.Request(f"http://{news['host']}:{news['port']}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            if resp.status != 200:
                raise process.ProcessError(f"Prometheus refused the new config (HTTP {resp.status})")


class SecretFileProvider(ResourceProvider):
    """A secret value materialised as a 0600 file; the value itself stays a Pulumi secret."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        props = _clean(props)
        process.write_private(Path(props["path"]), props["value"])
        return CreateResult(id_=props["path"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        news = _clean(news)
        path = Path(olds.get("path", ""))
        missing = not path.exists() or (path.stat().st_mode & 0o777) != 0o600
        changed = any(olds.get(k) != news.get(k) for k in ("path", "value", "mode"))
        return DiffResult(changes=changed or missing, replaces=["path"] if olds.get("path") != news.get("path") else [],
                          stables=[], delete_before_replace=True)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        news = _clean(news)
        process.write_private(Path(news["path"]), news["value"])
        return UpdateResult(outs=news)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        Path(props["path"]).unlink(missing_ok=True)


class AlertmanagerProvider(_ProcessProvider):
    """Debian's Alertmanager receiving Prometheus's alerts on 127.0.0.1 (clustering off)."""

    hot_inputs = frozenset({"configYaml"})

    def marker(self, props: dict[str, Any]) -> str:
        return str(Path(props["dataDir"]) / "alertmanager.yml")

    def log_file(self, props: dict[str, Any]) -> Path:
        return Path(props["dataDir"]) / "alertmanager.log"

    def health_url(self, props: dict[str, Any]) -> str:
        return f"http://{props['host']}:{props['port']}/-/ready"

    def launch(self, props: dict[str, Any]) -> subprocess.Popen[bytes]:
        data = Path(props["dataDir"])
        data.mkdir(parents=True, exist_ok=True)
        (data / "alertmanager.yml").write_text(props["configYaml"])
        argv = [
            props["binary"], f"--config.file={data / 'alertmanager.yml'}", f"--storage.path={data / 'store'}",
            f"--web.listen-address={props['host']}:{props['port']}",
            # An empty cluster address turns gossip off; its default binds 0.0.0.0:9094.
            "--cluster.listen-address=",
        ]
        return self.spawn(props, argv, cwd=data)

    def hot_update(self, _olds: dict[str, Any], news: dict[str, Any]) -> None:
        (Path(news["dataDir"]) / "alertmanager.yml").write_text(news["configYaml"])
        req = urllib.request.Request(f"http://{news['host']}:{news['port']}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            if resp.status != 200:
                raise process.ProcessError(f"Alertmanager refused the new config (HTTP {resp.status})")


class JaegerProvider(_ProcessProvider):
    """Jaeger v2 (built from Go modules by setup): OTLP/HTTP traces in, query API out, in memory."""

    def marker(self, props: dict[str, Any]) -> str:
        return str(Path(props["dataDir"]) / "jaeger.yml")

    def log_file(self, props: dict[str, Any]) -> Path:
        return Path(props["dataDir"]) / "jaeger.log"

    def health_url(self, props: dict[str, Any]) -> str:
        return f"http://{props['host']}:{props['port']}/api/services"

    def launch(self, props: dict[str, Any]) -> subprocess.Popen[bytes]:
        data = Path(props["dataDir"])
        data.mkdir(parents=True, exist_ok=True)
        (data / "jaeger.yml").write_text(props["configYaml"])
        return self.spawn(props, [props["binary"], f"--config=file:{data / 'jaeger.yml'}"], cwd=data)


class AlertSinkProvider(_ProcessProvider):
    """The local alert receiver (alert_sink.py): Alertmanager's webhook, recorded to a file."""

    def marker(self, props: dict[str, Any]) -> str:
        return str(props["alertsFile"])

    def log_file(self, props: dict[str, Any]) -> Path:
        return Path(props["dataDir"]) / "alert-sink.log"

    def health_url(self, props: dict[str, Any]) -> str:
        return f"http://{props['host']}:{props['port']}/health"

    def launch(self, props: dict[str, Any]) -> subprocess.Popen[bytes]:
        Path(props["dataDir"]).mkdir(parents=True, exist_ok=True)
        script = Path(__file__).with_name("alert_sink.py")
        argv = [_python(), str(script), "--host", props["host"], "--port", str(props["port"]),
                "--out", props["alertsFile"]]
        return self.spawn(props, argv)


class DeliveryMetricsProvider(_ProcessProvider):
    """The delivery exporter (``python -m shipway.delivery``): the audit trail's delivery
    figures at /metrics, recomputed at every scrape."""

    def marker(self, props: dict[str, Any]) -> str:
        return str(props["dataDir"])

    def log_file(self, props: dict[str, Any]) -> Path:
        return Path(props["dataDir"]) / "delivery-metrics.log"

    def health_url(self, props: dict[str, Any]) -> str:
        return f"http://{props['host']}:{props['port']}/health"

    def launch(self, props: dict[str, Any]) -> subprocess.Popen[bytes]:
        Path(props["dataDir"]).mkdir(parents=True, exist_ok=True)
        argv = [_python(), "-m", "shipway.delivery", "--host", props["host"], "--port", str(props["port"]),
                "--audit-log", props["auditLog"], "--data-dir", props["dataDir"]]
        return self.spawn(props, argv)


class LogStoreProvider(_ProcessProvider):
    """VictoriaLogs (built from Go modules by setup): OTLP logs in, LogsQL out, on disk with a
    retention period."""

    def marker(self, props: dict[str, Any]) -> str:
        return str(Path(props["dataDir"]) / "store")

    def log_file(self, props: dict[str, Any]) -> Path:
        return Path(props["dataDir"]) / "victoria-logs.log"

    def health_url(self, props: dict[str, Any]) -> str:
        return f"http://{props['host']}:{props['port']}/health"

    def launch(self, props: dict[str, Any]) -> subprocess.Popen[bytes]:
        data = Path(props["dataDir"])
        data.mkdir(parents=True, exist_ok=True)
        argv = [props["binary"], f"-httpListenAddr={props['host']}:{props['port']}",
                f"-storageDataPath={data / 'store'}", f"-retentionPeriod={props['retention']}",
                "-loggerFormat=json"]
        return self.spawn(props, argv, cwd=data)


class CollectorProvider(_ProcessProvider):
    """The OpenTelemetry Collector (tools/otelcol): the hub between the platform's processes and
    the trace and log stores; healthy once its own metrics are served."""

    def marker(self, props: dict[str, Any]) -> str:
        return str(Path(props["dataDir"]) / "collector.yml")

    def log_file(self, props: dict[str, Any]) -> Path:
        return Path(props["dataDir"]) / "otelcol.log"

    def health_url(self, props: dict[str, Any]) -> str:
        return f"http://{props['host']}:{props['metricsPort']}/metrics"

    def launch(self, props: dict[str, Any]) -> subprocess.Popen[bytes]:
        data = Path(props["dataDir"])
        (data / "storage").mkdir(parents=True, exist_ok=True)
        (data / "collector.yml").write_text(props["configYaml"])
        return self.spawn(props, [props["binary"], f"--config=file:{data / 'collector.yml'}"], cwd=data)
