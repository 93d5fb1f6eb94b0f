"""Where the `local` target keeps its files: one layout the components and the CLI share."""

from __future__ import annotations

from pathlib import Path

from shipway_core.config import StackConfig


def data_root(cfg: StackConfig, root: Path) -> Path:
    """Where this stack's processes keep their files (one directory per stack)."""
    data = Path(cfg.local.data_dir)
    return (data if data.is_absolute() else root / data) / cfg.stack


def direct_store(cfg: StackConfig, root: Path) -> tuple[str, str]:
    """(backend store URI, artifact root) the tracking server uses, for offline registration."""
    data = data_root(cfg, root) / "mlflow"
    return cfg.local.backend_store_uri or f"sqlite:///{data / 'mlflow.db'}", f"file://{data / 'artifacts'}"


def status_file(data_dir: Path, kind: str) -> Path:
    """Where a supervised process publishes its state and restart count (written by the
    supervisor, read by `shipway env status`)."""
    return Path(data_dir) / f"{kind}.status.json"


def process_status_files(cfg: StackConfig, root: Path) -> dict[str, Path]:
    """Status file of every process the local stack runs, by display name."""
    data = data_root(cfg, root)
    files = {
        "mlflow": status_file(data / "mlflow", "TrackingServer"),
        "prometheus": status_file(data / "prometheus", "Prometheus"),
        "alertmanager": status_file(data / "alertmanager", "Alertmanager"),
        "jaeger": status_file(data / "jaeger", "Jaeger"),
        "alert-sink": status_file(data / "alerts", "AlertSink"),
        "delivery-metrics": status_file(data / "delivery", "DeliveryMetrics"),
    }
    files.update({f"endpoint/{m}": status_file(data / "endpoints" / m, "InferenceEndpoint") for m in cfg.models})
    return files
