"""The promotion's registry calls over REST, against a real MLflow server with file artifacts.

Over http(s) the gates read run metrics, version files (golden set, baseline) and the model
itself without MLflow's client (``Registry`` REST paths, ``LazyModel`` on the serving app's
loader). These tests hold those paths to what MLflow's own client and ``mlflow.pyfunc`` return
for the same versions, and prove a gate run in a fresh process never imports MLflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipway import gates
from shipway.example import MODEL_NAME, train_and_register
from shipway.lazymodel import LazyModel
from shipway.registry import Registry
from tests.support.mlflowserver import mlflow_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Served:
    uri: str
    versions: dict[str, int]  # variant -> version


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("rest-paths")
    with mlflow_server(root) as uri:
        versions = {v: train_and_register(uri, v).version for v in ("baseline", "forest", "slow")}
        yield Served(uri, versions)


def _client(uri: str):  # noqa: ANN202 - MLflow's client, untyped
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.mark.parametrize("variant", ["baseline", "forest"])
def test_rest_reads_match_mlflow_client(served: Served, variant: str) -> None:
    from mlflow.artifacts import download_artifacts

    registry = Registry(served.uri)
    info = registry.version(MODEL_NAME, served.versions[variant])
    assert registry.local_artifact_dirs(info) is not None  # the REST path is the one under test

    assert registry.run_metrics(info.run_id) == _client(served.uri).get_run(info.run_id).data.metrics
    golden = registry.download_version_file(info, "golden.csv")
    theirs = download_artifacts(run_id=info.run_id, artifact_path="golden.csv", tracking_uri=served.uri)
    assert golden is not None and golden.read_bytes() == Path(theirs).read_bytes()
    assert registry.load_json(info, "baseline_profile.json") == json.loads(
        Path(download_artifacts(run_id=info.run_id, artifact_path="baseline_profile.json",
                                tracking_uri=served.uri)).read_text())
    assert registry.download_version_file(info, "no-such-file.csv") is None

    registry.set_tags(MODEL_NAME, info.version, {"shipway.test": "x" * 6000})
    tag = _client(served.uri).get_model_version(MODEL_NAME, str(info.version)).tags["shipway.test"]
    assert len(tag) == 5000 and tag.endswith("...[truncated]")


@pytest.mark.parametrize("variant", ["baseline", "forest", "slow"])
def test_lazy_model_predicts_and_reads_its_signature_like_pyfunc(served: Served, variant: str) -> None:
    import mlflow.pyfunc
    from mlflow.models import Model

    from shipway.registry import mlflow_uris

    registry = Registry(served.uri)
    info = registry.version(MODEL_NAME, served.versions[variant])
    lazy = LazyModel(registry, info)
    golden = pd.read_csv(registry.download_version_file(info, "golden.csv"))  # type: ignore[arg-type]
    features = golden.drop(columns=["label"])
    with mlflow_uris(served.uri):
        uri = f"models:/{MODEL_NAME}/{info.version}"
        expected = np.asarray(mlflow.pyfunc.load_model(uri).predict(features)).ravel()
        theirs = Model.load(str(Path(mlflow.artifacts.download_artifacts(uri)) / "MLmodel")).signature

    assert np.array_equal(gates.predictions(lazy.predict, features), expected)
    # the slow variant is a custom pyfunc: the serving loader declines it and MLflow loads it
    assert (lazy._serving_load() is None) == (variant == "slow")  # noqa: SLF001
    ours = lazy.signature()
    assert gates._columns(ours) == gates._columns(theirs)  # noqa: SLF001
    assert gates.signature_problems(theirs, ours, 1, 2) == [] and gates.signature_problems(ours, theirs, 1, 2) == []
    # a missing column is a clear failure, not a crash
    with pytest.raises(Exception, match="petal"):
        lazy.predict(features.drop(columns=[c for c in features.columns if "petal" in c][:1]))


def test_a_gate_run_on_an_http_registry_never_imports_mlflow(served: Served) -> None:
    script = textwrap.dedent(f"""
        import json, sys
        from shipway import gates
        from shipway.lazymodel import LazyModel
        from shipway.promotion import evaluation_set
        from shipway.registry import Registry
        from shipway_core.config import GateSettings

        registry = Registry({served.uri!r})
        cand = LazyModel(registry, registry.version({MODEL_NAME!r}, {served.versions["forest"]}))
        champ = LazyModel(registry, registry.version({MODEL_NAME!r}, {served.versions["baseline"]}))
        golden, source, owner = evaluation_set(registry, cand.info, champ.info, None)
        report = gates.run_gates(gates.GateInputs(
            env="dev", settings=GateSettings(), candidate=cand.under_test(), current=champ.under_test(),
            golden=golden, golden_source=source, golden_owner=owner,
            baseline=registry.load_json(cand.info, gates.BASELINE_ARTIFACT)))
        registry.set_tags(cand.info.name, cand.info.version, report.tags())
        print(json.dumps({{"mlflow": sorted(m for m in sys.modules if m.split(".")[0] == "mlflow"),
                          "gates": {{r.gate: r.passed for r in report.results}}, "owner": owner}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mlflow"] == []
    assert out["owner"] == "champion"
    assert out["gates"] == dict.fromkeys(gates.GATES, True)
    tags = _client(served.uri).get_model_version(MODEL_NAME, str(served.versions["forest"])).tags
    assert tags["shipway.gates.passed"] == "true"
