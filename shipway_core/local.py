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
