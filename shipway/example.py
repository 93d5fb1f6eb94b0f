"""The example model: a real scikit-learn classifier on iris, registered like any team's model.

Registered with a signature, an input example, a training baseline profile
(`baseline_profile.json`, used for drift and data-consistency gates) and a golden dataset
(`golden.csv`, used for the no-regression gate and deployment verification). Registration
is idempotent: a version carries a fingerprint of its data, code variant and parameters,
and training the same thing again returns the existing version.

Variants exist so the promotion workflow can be shown for real: ``baseline``, ``forest``
(a different, better-or-equal model), ``worse`` (trained on shuffled labels: fails the
gates) and ``slow`` (the forest's predictions, 300 ms each: passes gates, fails verification).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL_NAME = "iris-classifier"
EXPERIMENT = "shipway-example"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
VARIANTS = ("baseline", "forest", "worse", "slow")
_CODE_VERSION = "1"  # bump when training code changes what a variant produces


@dataclass(frozen=True)
class Registered:
    """Outcome of a training request."""

    name: str
    version: int
    variant: str
    created: bool
    accuracy: float


def load_data(seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Iris (shipped inside scikit-learn, no download), split into train and golden sets."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=FEATURES)
    labels = pd.Series(iris.target, name="label")
    return train_test_split(frame, labels, test_size=0.3, random_state=seed, stratify=labels)


def _fit(variant: str, x: pd.DataFrame, y: pd.Series, seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if variant in ("forest", "slow"):
        return RandomForestClassifier(n_estimators=50, random_state=seed).fit(x, y)
    if variant == "worse":
        shuffled = pd.Series(np.random.default_rng(seed).permutation(y.to_numpy()), index=y.index)
        return LogisticRegression(max_iter=500).fit(x, shuffled)
    return LogisticRegression(max_iter=500).fit(x, y)


def fingerprint(variant: str, seed: int, x: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    digest.update(f"{_CODE_VERSION}:{variant}:{seed}".encode())
    digest.update(pd.util.hash_pandas_object(x, index=True).to_numpy().tobytes())
    return digest.hexdigest()[:32]


def _existing_version(client: Any, name: str, fp: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    for v in versions:
        if v.tags.get("shipway.fingerprint") == fp:
            return int(v.version)
    return None


def train_and_register(tracking_uri: str, variant: str = "baseline", name: str = MODEL_NAME, seed: int = 7,
                       artifact_root: str | None = None) -> Registered:
    """Train ``variant`` and register it (or return the version already registered for it)."""
    from mlflow import MlflowClient
    from sklearn.metrics import accuracy_score

    from shipway.registry import mlflow_uris

    if variant not in VARIANTS:
        raise ValueError(f"variant: {variant!r} is not valid; allowed: {', '.join(VARIANTS)}")
    x_train, x_golden, y_train, y_golden = load_data(seed)
    fp = fingerprint(variant, seed, x_train)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = _existing_version(client, name, fp)
    model = _fit(variant, x_train, y_train, seed)
    accuracy = float(accuracy_score(y_golden, model.predict(x_golden)))
    if found is not None:
        return Registered(name, found, variant, created=False, accuracy=accuracy)

    with mlflow_uris(tracking_uri):
        return _register(client, tracking_uri, name, variant, seed, artifact_root, fp, model, accuracy,
                         x_train, x_golden, y_golden)


def _register(client: Any, tracking_uri: str, name: str, variant: str, seed: int, artifact_root: str | None,
              fp: str, model: Any, accuracy: float, x_train: pd.DataFrame, x_golden: pd.DataFrame,
              y_golden: pd.Series) -> Registered:
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from shipway.drift.profile import build_profile

    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        kwargs = {"artifact_location": f"{artifact_root}/{EXPERIMENT}"} if artifact_root else {}
        experiment_id = client.create_experiment(EXPERIMENT, **kwargs)
    else:
        experiment_id = experiment.experiment_id
    signature = infer_signature(x_train, model.predict(x_train))
    golden = x_golden.assign(label=y_golden.to_numpy())
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-{variant}") as run:
        mlflow.log_params({"variant": variant, "seed": seed, "estimator": type(model).__name__})
        mlflow.log_metrics({"accuracy": accuracy, "golden_rows": float(len(golden))})
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "baseline_profile.json").write_text(json.dumps(build_profile(x_train)))
            golden.to_csv(Path(tmp) / "golden.csv", index=False)
            mlflow.log_artifacts(tmp)
        if variant == "slow":
            info = mlflow.pyfunc.log_model(name="model", python_model=_SlowPyfunc(model), signature=signature,
                                           input_example=x_train.head(3))
        else:
            # skops refuses tree internals unless named: we trained this model ourselves.
            trusted = ["sklearn.tree._tree.Tree"] if variant == "forest" else None
            info = mlflow.sklearn.log_model(model, name="model", signature=signature,
                                            input_example=x_train.head(3), skops_trusted_types=trusted,
                                            pip_requirements=_pip_requirements())
        mv = mlflow.register_model(info.model_uri, name, tags={"shipway.fingerprint": fp,
                                                               "shipway.variant": variant})
    # Training artifacts belong to the version too, so gates and drift find them by version.
    client.set_model_version_tag(name, mv.version, "shipway.run_id", run.info.run_id)
    # The global explanation (feature importance) is evidence stored with the version; a
    # promotion's audit record links it (shipway.explain, the one attribution method).
    from shipway.explain import global_explanation_tags

    columns = list(x_train.columns)
    for key, value in global_explanation_tags(
            lambda rows: model.predict_proba(pd.DataFrame(rows, columns=columns)),
            x_train.to_numpy(dtype=float), columns).items():
        client.set_model_version_tag(name, mv.version, key, value)
    _wait_ready(client, name, int(mv.version))
    return Registered(name, int(mv.version), variant, created=True, accuracy=accuracy)


# What loading a logged example model (skops format) and predicting with it imports.
_MODEL_DISTRIBUTIONS = ("mlflow", "scikit-learn", "skops", "numpy", "scipy", "pandas")


def _pip_requirements() -> list[str]:
    """The model's requirements, pinned to the versions that trained it. Named, not inferred: MLflow's
    inference loads the model in a subprocess (about 3 s of every registration) and lists whatever
    that process imported, test runners and terminal libraries included."""
    from importlib.metadata import version

    return [f"{dist}=={version(dist)}" for dist in _MODEL_DISTRIBUTIONS]


def _wait_ready(client: Any, name: str, version: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get_model_version(name, str(version)).status == "READY":
            return
        time.sleep(0.2)
    raise RuntimeError(f"model '{name}' version {version} did not become READY within {timeout:.0f}s")


def _slow_pyfunc_class() -> type:
    from mlflow.pyfunc import PythonModel

    class SlowPyfunc(PythonModel):
        """Same predictions as the inner model, 300 ms later."""

        def __init__(self, inner: Any):
            self.inner = inner

        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:  # noqa: ARG002
            time.sleep(0.3)
            return self.inner.predict(model_input)

    return SlowPyfunc


def _SlowPyfunc(inner: Any) -> Any:  # noqa: N802 - reads like the class it builds
    return _slow_pyfunc_class()(inner)


def sample_request(rows: int = 1) -> dict[str, Any]:
    """A scoring payload in MLflow's `dataframe_split` format."""
    _, golden, _, _ = load_data()
    head = golden.head(rows)
    return {"dataframe_split": {"columns": list(head.columns), "data": head.to_numpy().tolist()}}
