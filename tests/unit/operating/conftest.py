"""Fixtures for the operating-ML tests (helpers live in support.py)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shipway.serving.app import ServingApp
from shipway.serving.config import ServingConfig
from tests.unit.operating.support import IRIS_COLUMNS, KEY, Served, iris_loader


@pytest.fixture(scope="session")
def iris() -> tuple[Any, Any, Any]:
    """Iris features (named columns), labels and a fitted logistic regression."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = IRIS_COLUMNS
    return x, y, LogisticRegression(max_iter=300).fit(x, y)


@pytest.fixture
def serve(tmp_path: Path, iris: tuple[Any, Any, Any]) -> Iterator[Callable[..., Served]]:
    """Build a loaded serving app around the iris model; settings go to ServingConfig."""
    made: list[ServingApp] = []

    def make(**settings: Any) -> Served:
        x, _, est = iris
        pin = tmp_path / "pin.json"
        pin.write_text(json.dumps({"model_name": "iris", "model_version": 3, "tracking_uri": "sqlite:///none"}))
        key = tmp_path / "api-key"
        key.write_text(KEY + "\n")
        key.chmod(0o600)
        config = ServingConfig(pin_file=str(pin), api_key_file=str(key), environment="test", **settings)
        out = io.BytesIO()
        app = ServingApp(config, log_stream=out, loader=iris_loader(est, x), process_metrics=False)
        made.append(app)
        assert app.reload() is True
        return Served(app=app, out=out, x=x, estimator=est)

    yield make
    for app in made:
        app.close()
