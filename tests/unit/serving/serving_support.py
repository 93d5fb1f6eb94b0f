"""Shared helpers of the serving tests (a uniquely named module: ``conftest`` is not importable
reliably when several test folders have one).

The tests' own use of MLflow's fluent API is scoped by ``tracking`` so no global tracking
URI leaks into other tests.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IRIS = "iris-classifier"
DIABETES = "diabetes-regressor"
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@contextlib.contextmanager
def tracking(uri: str) -> Iterator[None]:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def build_profile(frame: Any, bins: int = 10) -> dict[str, Any]:
    """A format-1 baseline profile as the training side writes it (np.histogram convention)."""
    features: dict[str, Any] = {}
    for col in frame.columns:
        values = frame[col].to_numpy(dtype=float)
        inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1))[1:-1])
        edges = np.concatenate([[-np.inf], inner, [np.inf]])
        counts, _ = np.histogram(values, bins=edges)
        features[col] = {
            "kind": "numeric",
            "edges": [None, *inner.tolist(), None],
            "fractions": (counts / len(values)).tolist(),
            "null_rate": 0.0,
            # the quantile sketch and scale the live Wasserstein distance needs (as profile.py writes)
            "quantiles": np.quantile(values, np.linspace(0, 1, 101)).tolist(),
            "std": float(np.std(values)),
        }
    return {"format": 1, "n_rows": len(frame), "features": features}


@dataclass
class Registry:
    """A temp MLflow registry plus the data and estimators registered in it."""

    uri: str
    root: Path
    iris_x: Any
    iris_model: Any
    diabetes_x: Any
    diabetes_model: Any
    register_iris: Callable[..., int]

    def pin_file(self, path: Path, name: str, version: int) -> Path:
        """Write a pin file for ``name``/``version`` in this registry."""
        path.write_text(json.dumps({"model_name": name, "model_version": version, "tracking_uri": self.uri}))
        return path


