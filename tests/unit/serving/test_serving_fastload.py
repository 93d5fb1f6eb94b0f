"""The MLflow-free load path: same model, schema, warm row, profile and predictions as MLflow's loader.

A tiny fake of the three MLflow REST calls (on 127.0.0.1) answers from the test registry,
so the fast path reads the very artifacts the MLflow path reads.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_support import DIABETES, IRIS, Registry

from shipway.serving.config import Pin
from shipway.serving.fastload import deserialize, load_fast, local_path
from shipway.serving.model import ModelLoadError, load_pinned_model
from shipway.serving.schema import batch_from_columns
from tests.support.threads import serve_in_thread


class FakeRegistry:
    """Answers model-versions/get, model-versions/get-download-uri and runs/get from the real registry."""

    def __init__(self, registry: Registry):
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=registry.uri, registry_uri=registry.uri)
        self.override_uri: str | None = None
        self.status: str | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                status, doc = fake.answer(url.path.removeprefix("/api/2.0/mlflow/"), q)
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_port}"
        serve_in_thread(self.server)

    def answer(self, path: str, q: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            if path == "model-versions/get":
                mv = self.client.get_model_version(q["name"], q["version"])
                return 200, {"model_version": {"name": mv.name, "version": str(mv.version), "run_id": mv.run_id,
                                               "status": self.status or mv.status}}
            if path == "model-versions/get-download-uri":
                uri = self.client.get_model_version_download_uri(q["name"], q["version"])
                return 200, {"artifact_uri": self.override_uri or uri}
            if path == "runs/get":
                return 200, {"run": {"info": {"artifact_uri": self.client.get_run(q["run_id"]).info.artifact_uri}}}
        except Exception:  # noqa: BLE001 - what MLflow answers for an unknown version
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "not found"}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": path}


@pytest.fixture(scope="module")
def fake(registry: Registry) -> Iterator[FakeRegistry]:
    server = FakeRegistry(registry)
    yield server
    server.server.shutdown()


@pytest.fixture(autouse=True)
def _reset(fake: FakeRegistry) -> None:
    fake.override_uri = fake.status = None


def recorder() -> tuple[list[tuple[Any, ...]], Callable[..., None]]:
    events: list[tuple[Any, ...]] = []
    return events, lambda *a, **k: events.append(a)


def iris_grid(model: Any) -> Any:
    """500 rows spread over (and beyond) the iris feature ranges."""
    x = np.random.default_rng(3).uniform(0, 8, size=(500, 4))
    return batch_from_columns({c.name: x[:, i].tolist() for i, c in enumerate(model.schema.columns)}, model.schema)


def test_fast_path_matches_the_mlflow_loader(fake: FakeRegistry, registry: Registry,
                                             model_loader: Callable[..., Any]) -> None:
    events, log = recorder()
    fast = load_fast(Pin(IRIS, 1, fake.uri), log=log)
    reference = model_loader(Pin(IRIS, 1, registry.uri))  # the MLflow path over the same artifacts
    assert fast is not None
    try:
        assert events == []
        assert (fast.name, fast.version, fast.flavor, fast.is_classifier) == (IRIS, 1, "sklearn", True)
        assert fast.schema == reference.schema
        assert fast.warm_batch == reference.warm_batch
        assert repr(fast.profile) == repr(reference.profile) and fast.profile is not None
        batch = iris_grid(fast)
        assert fast.predict(batch) == reference.predict(batch)
        assert fast.workdir is not None and (Path(fast.workdir) / "model" / "MLmodel").is_file()
    finally:
        fast.discard()
    assert not Path(fast.workdir).exists()
    source = local_path(fake.client.get_model_version_download_uri(IRIS, "1"))
    assert (source / "MLmodel").is_file()  # discard deleted the private copy, never the registry's files


def test_fast_path_does_not_import_mlflow(fake: FakeRegistry) -> None:
    """The point of the fast path: a fresh serving process never pays MLflow's import."""
    import subprocess
    import sys

    code = ("import sys; from shipway.serving.config import Pin; from shipway.serving.model import load_pinned_model; "
            f"m = load_pinned_model(Pin({IRIS!r}, 1, {fake.uri!r})); m.discard(); "
            "print(m.flavor, sorted(k for k in sys.modules if k == 'mlflow' or k.startswith('mlflow.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,  # noqa: S603
                         cwd=Path(__file__).resolve().parents[3], check=True)
    assert out.stdout.split("\n")[-2] == "sklearn []"


def test_fast_path_regressor_without_profile(fake: FakeRegistry, registry: Registry) -> None:
    events, log = recorder()
    model = load_pinned_model(Pin(DIABETES, 1, fake.uri), log=log)
    model.discard()
    assert (model.flavor, model.is_classifier, model.profile) == ("sklearn", False, None)
    assert events == [("info", "baseline_profile_absent")]
    x = registry.diabetes_x.head(20)
    batch = batch_from_columns({c: x[c].tolist() for c in x.columns}, model.schema)
    assert model.predict(batch) == registry.diabetes_model.predict(x).tolist()


def test_fast_path_missing_or_unready_versions_fail_like_the_mlflow_path(fake: FakeRegistry) -> None:
    with pytest.raises(ModelLoadError, match=rf"^models:/{IRIS}/42 not found in registry {fake.uri}: "):
        load_pinned_model(Pin(IRIS, 42, fake.uri))
    fake.status = "PENDING_REGISTRATION"
    with pytest.raises(ModelLoadError, match=rf"^models:/{IRIS}/1 is PENDING_REGISTRATION, not READY$"):
        load_pinned_model(Pin(IRIS, 1, fake.uri))


def test_unreachable_registry_is_a_load_error() -> None:
    with pytest.raises(ModelLoadError, match=r"^models:/iris-classifier/1 not found in registry "
                                             r"http://127\.0\.0\.1:9: .*unreachable"):
        load_fast(Pin(IRIS, 1, "http://127.0.0.1:9"))


def test_non_file_artifacts_and_non_http_registries_take_the_mlflow_path(fake: FakeRegistry,
                                                                         registry: Registry) -> None:
    assert load_fast(Pin(IRIS, 1, registry.uri)) is None  # sqlite: no REST API
    fake.override_uri = "s3://bucket/models/m-1/artifacts"
    events, log = recorder()
    assert load_fast(Pin(IRIS, 1, fake.uri), log=log) is None
    assert events == [("info", "fast_load_skipped")]


def test_pickle_gate_env_defers_to_mlflow(fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    assert load_fast(Pin(IRIS, 1, fake.uri)) is None


@pytest.mark.parametrize("fmt", ["pickle", "cloudpickle", "skops"])
def test_deserialize_reads_every_format_like_mlflow(fmt: str, registry: Registry, tmp_path: Path) -> None:
    import mlflow.sklearn
    import yaml

    path = tmp_path / fmt
    mlflow.sklearn.save_model(registry.iris_model, str(path), serialization_format=fmt,
                              pip_requirements=["scikit-learn"])
    conf = yaml.safe_load((path / "MLmodel").read_text())["flavors"]["sklearn"]
    assert conf["serialization_format"] == fmt
    ours = deserialize(path / conf["pickled_model"], fmt, conf.get("skops_trusted_types"))
    theirs = mlflow.sklearn.load_model(str(path))
    assert type(ours) is type(theirs)
    assert ours.predict(registry.iris_x).tolist() == theirs.predict(registry.iris_x).tolist()
    assert np.array_equal(ours.coef_, theirs.coef_)


def test_local_path_accepts_only_local_file_uris() -> None:
    assert local_path("file:///tmp/a%20b/artifacts") == Path("/tmp/a b/artifacts")
    assert local_path("/srv/mlflow/artifacts") == Path("/srv/mlflow/artifacts")
    for uri in ("s3://bucket/x", "file://otherhost/x", "wasbs://c@acct.blob.core.windows.net/x"):
        with pytest.raises(Exception, match="not on a local file path"):
            local_path(uri)
