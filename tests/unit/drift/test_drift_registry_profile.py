"""Fetching a version's baseline profile from a real MLflow registry (sqlite backend)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from shipway.commands.monitor import app
from shipway.drift.profile import fetch_profile, log_profile

pytestmark = pytest.mark.integration


def test_profile_logged_at_training_is_fetched_by_name_and_version(tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(0, 1, 2000), "c": rng.choice(["a", "b"], 2000)})
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.create_experiment("drift", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp) as run:
            logged = log_profile(train)
        client = MlflowClient(uri, registry_uri=uri)
        client.create_registered_model("iris")
        client.create_model_version("iris", source=run.info.artifact_uri, run_id=run.info.run_id)
    finally:
        mlflow.set_tracking_uri(None)

    assert fetch_profile("iris", 1, uri, tmp_path / "dl") == logged
    with pytest.raises(Exception, match="iris"):
        fetch_profile("iris", 2, uri, tmp_path / "dl2")

    current = tmp_path / "window.csv"
    train.assign(x=train["x"] + 2).to_csv(current, index=False)
    result = CliRunner().invoke(
        app,
        [
            "drift",
            str(current),
            "--model",
            "iris",
            "--version",
            "1",
            "--tracking-uri",
            uri,
            "--output",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["drifted_features"] == ["x"]


def test_fetching_a_logged_models_profile_leaves_no_mlflow_db_in_the_callers_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 versions have `models:/m-<id>` sources, resolved through the process-wide URIs;
    `shipway monitor drift --tracking-uri ...` used to create ./mlflow.db while resolving one."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    train = pd.DataFrame({"x": np.arange(50.0), "y": np.arange(50.0) * 2})
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.create_experiment("drift-models", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp):
            logged = log_profile(train[["x"]])
            info = mlflow.sklearn.log_model(LinearRegression().fit(train[["x"]], train["y"]), name="model",
                                            registered_model_name="lin")
    finally:
        mlflow.set_tracking_uri(None)
    assert info.model_uri.startswith("models:/")
    caller = tmp_path / "caller"
    caller.mkdir()
    monkeypatch.chdir(caller)
    assert fetch_profile("lin", 1, uri, tmp_path / "dl") == logged
    assert not (caller / "mlflow.db").exists()
    assert list(caller.iterdir()) == []
