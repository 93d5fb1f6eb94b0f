"""Shared fixtures: a real MLflow sqlite registry with tiny iris models, stack files, fakes.

Training and registering the models is the slow part (~2 s), so it happens once per
session; every test gets its own repo directory (stack files, audit log, locks).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipway.gates import build_profile
from shipway.promotion import Services
from shipway.registry import Registry
from tests.support.mlflowdb import sqlite_uri

MODEL = "iris-classifier"
ACTOR = "alice@example.com"

STACK_TEMPLATE = """\
# {env} stack: promotion edits only the model pins below.
config:
  shipway:cloud: local            # processes on 127.0.0.1, no cloud account
  shipway:environment: {env}
  shipway:owner: ml-platform
  shipway:costCenter: "0042"
  shipway:dataClassification: internal
  # Served models: exact registry versions, never aliases.
  shipway:models:
{models}  shipway:gates:
    maxRegression: 0.01   # golden accuracy may drop one point
"""


def stack_text(env: str, pins: dict[str, int]) -> str:
    models = "".join(
        f"    {name}:\n      version: {v}        # pinned exact registry version\n"
        for name, v in pins.items()
    )
    return STACK_TEMPLATE.format(env=env, models=models)


@dataclass(frozen=True)
class IrisRegistry:
    """The session registry: URI, versions and the golden/train frames behind them."""

    uri: str
    golden: pd.DataFrame
    train: pd.DataFrame
    versions: dict[str, int]


def _log_version(
    mlflow: Any,
    model: Any,
    features: pd.DataFrame,
    accuracy: float,
    golden: pd.DataFrame,
    baseline: dict[str, Any],
    workdir: Path,
    signature: Any = None,
) -> int:
    from mlflow.models import infer_signature

    with mlflow.start_run():
        mlflow.log_metric("accuracy", accuracy)
        golden_path = workdir / "golden.csv"
        golden.to_csv(golden_path, index=False)
        mlflow.log_artifact(str(golden_path))
        profile_path = workdir / "baseline_profile.json"
        profile_path.write_text(json.dumps(baseline))
        mlflow.log_artifact(str(profile_path))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=MODEL,
            pip_requirements=["scikit-learn"],
            signature=signature or infer_signature(features, model.predict(features)),
        )
    return int(info.registered_model_version)


@pytest.fixture(scope="session")
def iris_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IrisRegistry]:
    """v1 good; v2 trained on shuffled labels; v3 a different signature; v4 good (other seed)."""
    root = tmp_path_factory.mktemp("mlflow")
    with sqlite_uri(root) as uri:
        yield _train_iris_versions(root, uri)


def _train_iris_versions(root: Path, uri: str) -> IrisRegistry:
    import mlflow
    from mlflow.environment_variables import MLFLOW_REGISTRY_URI
    from mlflow.tracking._model_registry import utils as registry_utils
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    warnings.filterwarnings("ignore")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.create_experiment("iris", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=exp)

    x, y = load_iris(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    golden = x_test.assign(label=y_test.to_numpy()).reset_index(drop=True)
    baseline = build_profile(x_train, bins=5)

    good = LogisticRegression(max_iter=500).fit(x_train, y_train)
    v1 = _log_version(mlflow, good, x_train, float(good.score(x_test, y_test)), golden, baseline, root)

    shuffled = np.random.default_rng(7).permutation(y_train.to_numpy())
    bad = LogisticRegression(max_iter=500).fit(x_train, shuffled)
    # Logged accuracy is honest (it would fail the metric gate too); gate tests isolate each gate.
    v2 = _log_version(mlflow, bad, x_train, float(bad.score(x_test, y_test)), golden, baseline, root)

    narrow_cols = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)"]
    narrow = LogisticRegression(max_iter=500).fit(x_train[narrow_cols], y_train)
    v3 = _log_version(
        mlflow,
        narrow,
        x_train[narrow_cols],
        float(narrow.score(x_test[narrow_cols], y_test)),
        golden[[*narrow_cols, "label"]],
        build_profile(x_train[narrow_cols], bins=5),
        root,
    )

    good2 = LogisticRegression(max_iter=500, C=0.9).fit(x_train, y_train)
    v4 = _log_version(mlflow, good2, x_train, float(good2.score(x_test, y_test)), golden, baseline, root)
    # Leave MLflow's process-wide URIs as we found them: later test modules use their own registries.
    mlflow.set_tracking_uri(None)
    registry_utils._registry_uri = None
    MLFLOW_REGISTRY_URI.unset()  # set_registry_uri also exported it to the environment
    return IrisRegistry(
        uri=uri,
        golden=golden,
        train=x_train.assign(label=y_train.to_numpy()),
        versions={"good": v1, "shuffled": v2, "narrow": v3, "good2": v4},
    )


@pytest.fixture(scope="session")
def registry(iris_registry: IrisRegistry) -> Registry:
    return Registry(iris_registry.uri, probe=False)


@dataclass
class FakeEngine:
    """Stands in for shipway.engine: records `up` calls, serves configurable outputs."""

    root: Path
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    up_error: Exception | None = None
    up_calls: list[tuple[str, str]] = field(default_factory=list)
    on_up: Callable[[str], None] | None = None

    def repo_root(self) -> Path:
        return self.root

    def stack_outputs(self, env: str) -> dict[str, Any]:
        if env not in self.outputs:
            raise RuntimeError(f"stack '{env}' has no outputs")
        return self.outputs[env]

    def up(self, env: str, message: str) -> dict[str, Any]:
        self.up_calls.append((env, message))
        if self.up_error is not None:
            raise self.up_error
        if self.on_up is not None:
            self.on_up(env)
        return {"result": "succeeded", "resourceChanges": {"update": 1}}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repo root with local/dev/test/prod stack files (local and dev pin v1)."""
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.local.yaml").write_text(stack_text("local", {MODEL: 1}))
    (stacks / "Pulumi.dev.yaml").write_text(stack_text("dev", {MODEL: 1}))
    (stacks / "Pulumi.test.yaml").write_text(stack_text("test", {}).replace("  shipway:models:\n", ""))
    (stacks / "Pulumi.prod.yaml").write_text(stack_text("prod", {}).replace("  shipway:models:\n", ""))
    return tmp_path


@pytest.fixture
def engine(repo: Path) -> FakeEngine:
    return FakeEngine(root=repo)


@pytest.fixture
def services(engine: FakeEngine, iris_registry: IrisRegistry, registry: Registry) -> Services:
    return Services(
        engine=engine,
        registry_factory=lambda _uri: registry,
        actor=ACTOR,
        tracking_uri=iris_registry.uri,
        probe_seconds=0.2,
    )


@dataclass
class FakeEndpoint:
    """A serving app in-process (httpx.MockTransport): reports a version, predicts via a callable."""

    version: int | None = 1
    predict: Callable[[pd.DataFrame], list[Any]] = lambda frame: [0] * len(frame)
    broken_versions: set[int] = field(default_factory=set)
    api_key: str | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)

    def handle(self, request: Any) -> Any:
        import httpx

        self.requests.append((request.method, request.url.path))
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return httpx.Response(401, json={"error": "unauthorized"})
        if request.url.path == "/version":
            return httpx.Response(200, json={"model": MODEL, "version": self.version})
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/invocations":
            if self.version in self.broken_versions:
                return httpx.Response(500, json={"error": "model failed to load"})
            split = json.loads(request.content)["dataframe_split"]
            frame = pd.DataFrame(split["data"], columns=split["columns"])
            return httpx.Response(200, json={"predictions": list(self.predict(frame))})
        return httpx.Response(404)

    def client(self) -> Any:
        import httpx

        return httpx.Client(transport=httpx.MockTransport(self.handle))
