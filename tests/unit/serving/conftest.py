"""Fixtures for the serving app tests: a real MLflow sqlite registry with tiny sklearn models.

Models are trained here on datasets that ship with scikit-learn (no download); the
registry lives in a temp dir (its sqlite file on tmpfs when there is one).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from serving_support import DIABETES, IRIS, IRIS_COLUMNS, Registry, build_profile, tracking

from tests.support.mlflowdb import fast_db_dir


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Iris classifier v1 (with baseline profile) and a diabetes regressor v1 (without)."""
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression

    root = tmp_path_factory.mktemp("mlflow")
    db_dir = fast_db_dir(root)
    uri = f"sqlite:///{db_dir / 'mlflow.db'}"
    iris_x, iris_y = load_iris(return_X_y=True, as_frame=True)
    iris_x.columns = IRIS_COLUMNS
    diabetes_x, diabetes_y = load_diabetes(return_X_y=True, as_frame=True)
    diabetes_x = diabetes_x[["age", "bmi", "bp"]]

    def register_iris(model: Any = None, with_profile: bool = True) -> int:
        """Log and register a new iris-classifier version; returns its version number."""
        if model is None:
            model = LogisticRegression(C=0.5, max_iter=300).fit(iris_x, iris_y)
        with tracking(uri), mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.sklearn.log_model(model, name="model", input_example=iris_x.head(2),
                                            registered_model_name=IRIS, pip_requirements=["scikit-learn"])
            if with_profile:
                profile = root / "baseline_profile.json"
                profile.write_text(json.dumps(build_profile(iris_x)))
                mlflow.log_artifact(str(profile))
        return int(info.registered_model_version)

    with tracking(uri):
        experiment_id = mlflow.create_experiment("serving-tests", artifact_location=(root / "artifacts").as_uri())
    iris_model = LogisticRegression(max_iter=300).fit(iris_x, iris_y)
    assert register_iris(iris_model) == 1
    diabetes_model = LinearRegression().fit(diabetes_x, diabetes_y)
    with tracking(uri), mlflow.start_run(experiment_id=experiment_id):
        mlflow.sklearn.log_model(diabetes_model, name="model", input_example=diabetes_x.head(2),
                                 registered_model_name=DIABETES, pip_requirements=["scikit-learn"])
    yield Registry(uri=uri, root=root, iris_x=iris_x, iris_model=iris_model, diabetes_x=diabetes_x,
                   diabetes_model=diabetes_model, register_iris=register_iris)
    if db_dir != root:
        shutil.rmtree(db_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def iris_v2(registry: Registry) -> int:
    """A second iris-classifier version (registered once per session)."""
    return registry.register_iris()


@pytest.fixture(scope="session")
def model_loader() -> Callable[..., Any]:
    """The real registry loader, memoised per (name, version) so each test gets a fresh copy fast."""
    from shipway.serving.model import load_pinned_model

    cache: dict[tuple[str, int], Any] = {}

    def load(pin: Any, log: Callable[..., None] | None = None) -> Any:
        key = (pin.model_name, pin.model_version)
        if key not in cache:
            cache[key] = load_pinned_model(pin, log=log)
        return dataclasses.replace(cache[key], inflight=0, workdir=None)

    return load
