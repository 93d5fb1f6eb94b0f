"""Loading a pinned model version from the MLflow registry into a fast predictor.

The native sklearn flavor is preferred: calling ``estimator.predict`` on a float matrix
built in signature order skips pyfunc's per-column pandas casting, which dominates the
latency of a 1-row request. The pyfunc flavor is the fallback for everything else.

The registry is addressed only through ``MlflowClient(tracking_uri=...)`` and
``download_artifacts(tracking_uri=...)``: nothing is taken from MLFLOW_* environment
variables or global MLflow state, so the pin file alone decides what is served.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from shipway.serving.config import Pin
from shipway.serving.drift import BaselineProfile, NumericFeature, ProfileError, parse_profile
from shipway.serving.schema import (
    NUMERIC_TYPES,
    Batch,
    ColumnSpec,
    InputSchema,
    batch_from_columns,
)

PROFILE_FILE = "baseline_profile.json"
_CLASS_OUTPUT_TYPES = frozenset({"string", "boolean", "integer", "long"})
_FRAME_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool"}


class ModelLoadError(RuntimeError):
    """The pinned version could not be loaded; the message says which step failed."""


@dataclass(eq=False)
class LoadedModel:
    """A ready-to-serve model version. ``inflight`` is only mutated on the event loop."""

    name: str
    version: int
    schema: InputSchema
    flavor: str
    is_classifier: bool | None
    predict_fn: Callable[[Batch], Any]
    warm_batch: Batch
    profile: BaselineProfile | None = None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    workdir: str | None = None
    inflight: int = 0

    def predict(self, batch: Batch) -> list[Any]:
        """Predict and return JSON-ready predictions (the shape MLflow's server returns)."""
        return to_jsonable(self.predict_fn(batch))

    def drift_features(self) -> frozenset[str]:
        """Profile features the drift monitor can follow (numeric bins need numeric columns)."""
        if self.profile is None:
            return frozenset()
        types = {c.name: c.type for c in self.schema.columns}
        return frozenset(
            name for name, feat in self.profile.features.items()
            if name in types and (not isinstance(feat, NumericFeature) or types[name] in NUMERIC_TYPES)
        )

    def discard(self) -> None:
        """Delete the downloaded artifacts once nothing serves from this version any more."""
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def to_jsonable(result: Any) -> list[Any]:
    """Normalise a model output (ndarray, DataFrame, Series, list) into JSON-ready lists."""
    if isinstance(result, np.ndarray):
        return result.tolist()
    if hasattr(result, "to_dict") and hasattr(result, "columns"):
        return result.to_dict(orient="records")
    if hasattr(result, "tolist"):
        return result.tolist()
    return list(result)


def to_matrix(batch: Batch, order: tuple[str, ...]) -> np.ndarray:
    """Float64 matrix (rows x columns) in ``order``; JSON nulls become NaN."""
    cols = batch.columns
    if batch.n_rows == 1:
        return np.array([[cols[name][0] for name in order]], dtype=np.float64)
    return np.array([cols[name] for name in order], dtype=np.float64).T


def to_frame(batch: Batch, schema: InputSchema) -> Any:
    """pandas DataFrame typed per the signature (only for non-numeric models or pyfunc)."""
    import pandas as pd

    data = {}
    for col in schema.columns:
        values = batch.columns[col.name]
        dtype = _FRAME_DTYPES.get(col.type)
        data[col.name] = np.array(values, dtype=dtype if dtype is not None else object)
    return pd.DataFrame(data, columns=list(schema.names))


def schema_from_signature(signature: Any) -> InputSchema:
    """InputSchema from an MLflow ModelSignature (column-based signatures only)."""
    if signature is None or signature.inputs is None:
        raise ModelLoadError("the model has no input signature; log it with a signature or input_example")
    return schema_from_items(signature.inputs.to_dict())


def schema_from_items(items: list[dict[str, Any]]) -> InputSchema:
    """InputSchema from the signature's input list as the MLmodel file stores it (JSON)."""
    specs = []
    for item in items:
        name = item.get("name")
        if name is None or "type" not in item or item["type"] == "tensor":
            raise ModelLoadError("the model signature is tensor-based; only column-based signatures are served")
        specs.append(ColumnSpec(name=name, type=item["type"], required=item.get("required", True)))
    return InputSchema(columns=tuple(specs))


def synthetic_batch(schema: InputSchema) -> Batch:
    """One plausible row built from the signature, used to warm a model without an example."""
    zero: dict[str, Any] = {"boolean": False, "integer": 0, "long": 0, "double": 0.0, "float": 0.0}
    return batch_from_columns({c.name: [zero.get(c.type, "")] for c in schema.columns}, schema)


def load_pinned_model(pin: Pin, *, log: Callable[..., None] | None = None) -> LoadedModel:
    """Download, load and warm the pinned version; raises ModelLoadError naming the failed step.

    A sklearn model in a file:// artifact store behind an http(s) registry is loaded without
    importing MLflow (see :mod:`shipway.serving.fastload`); everything else, and anything
    the fast path is unsure about, takes MLflow's own loaders.
    """
    from shipway.serving.fastload import load_fast

    fast = load_fast(pin, log=log)
    if fast is not None:
        return fast
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    client = MlflowClient(tracking_uri=pin.tracking_uri, registry_uri=pin.tracking_uri)
    try:
        mv = client.get_model_version(pin.model_name, str(pin.model_version))
    except Exception as exc:
        raise ModelLoadError(f"{pin.model_uri} not found in registry {pin.tracking_uri}: {exc}") from exc
    if mv.status != "READY":
        raise ModelLoadError(f"{pin.model_uri} is {mv.status}, not READY")
    workdir = tempfile.mkdtemp(prefix="shipway-model-")
    try:
        source = client.get_model_version_download_uri(pin.model_name, str(pin.model_version))
        local = download_artifacts(artifact_uri=source, dst_path=workdir, tracking_uri=pin.tracking_uri)
        meta = Model.load(local)
        schema = schema_from_signature(meta.signature)
        profile = _load_profile(local, mv.run_id, pin, workdir, download_artifacts, log)
        model = _build_model(pin, local, meta, schema, log)
        model.profile = profile
        model.workdir = workdir
        model.predict(model.warm_batch)
    except ModelLoadError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ModelLoadError(f"loading {pin.model_uri} failed: {type(exc).__name__}: {exc}") from exc
    return model


def _build_model(pin: Pin, local: str, meta: Any, schema: InputSchema,
                 log: Callable[..., None] | None) -> LoadedModel:
    warm = _warm_batch(meta, local, schema)
    if "sklearn" in meta.flavors:
        try:
            return _sklearn_model(pin, local, schema, warm)
        except Exception as exc:  # noqa: BLE001 - any sklearn-load failure falls back to pyfunc
            if log is not None:
                log("warning", "sklearn_flavor_fallback", error=f"{type(exc).__name__}: {exc}")
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(local)
    outputs = meta.signature.outputs.to_dict() if meta.signature.outputs is not None else []
    out_type = outputs[0].get("type") if len(outputs) == 1 else None
    is_classifier = None if out_type is None else out_type in _CLASS_OUTPUT_TYPES
    return LoadedModel(name=pin.model_name, version=pin.model_version, schema=schema, flavor="pyfunc",
                       is_classifier=is_classifier, warm_batch=warm,
                       predict_fn=lambda b: pyfunc.predict(to_frame(b, schema)))


def _sklearn_model(pin: Pin, local: str, schema: InputSchema, warm: Batch) -> LoadedModel:
    import mlflow.sklearn

    return sklearn_loaded_model(pin, mlflow.sklearn.load_model(local), schema, warm)


def sklearn_loaded_model(pin: Pin, est: Any, schema: InputSchema, warm: Batch) -> LoadedModel:
    """A LoadedModel around a deserialised sklearn estimator (matrix fast path when it can)."""
    from sklearn.base import is_classifier

    names = getattr(est, "feature_names_in_", None)
    order = tuple(str(n) for n in names) if names is not None else schema.names
    predict_fn: Callable[[Batch], Any]
    if schema.all_numeric and set(order) <= set(schema.names):
        predict = est.predict
        if names is not None:
            # The estimator was fitted on a DataFrame; positional columns are built in its own
            # feature order, so sklearn's "no feature names" check is noise here.
            predict = _positional_predict(est, order, warm)

        def predict_fn(b: Batch) -> Any:
            return predict(to_matrix(b, order))

        try:
            predict_fn(warm)
        except Exception:  # noqa: BLE001 - e.g. a ColumnTransformer selecting by name: use a frame
            predict_fn = _frame_predict(est, schema)
    else:
        predict_fn = _frame_predict(est, schema)
    return LoadedModel(name=pin.model_name, version=pin.model_version, schema=schema, flavor="sklearn",
                       is_classifier=bool(is_classifier(est)), warm_batch=warm, predict_fn=predict_fn)


def _positional_predict(est: Any, order: tuple[str, ...], warm: Batch) -> Callable[[Any], Any]:
    """``predict`` for a float matrix already in the estimator's ``feature_names_in_`` order.

    sklearn re-checks the feature names on every call and warns that a matrix has none; the
    warning machinery (filter matching on each call) costs ~14 us of a ~220 us 1-row GBT
    predict. A shallow copy without ``feature_names_in_`` (the fitted trees/coefficients are
    shared, not copied) skips that check; every other input check (column count, finiteness)
    still runs. Used only when the copy answers the warm-up row exactly as the original;
    otherwise (e.g. a Pipeline, whose names live on its steps) the original predicts with the
    warning filtered.
    """
    if "feature_names_in_" in vars(est):
        positional = copy.copy(est)
        del positional.feature_names_in_
        try:
            matrix = to_matrix(warm, order)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                same = np.array_equal(np.asarray(positional.predict(matrix)), np.asarray(est.predict(matrix)))
        except Exception:  # noqa: BLE001 - the original keeps predicting; its own errors show at warm-up
            same = False
        if same:
            predict: Callable[[Any], Any] = positional.predict
            return predict
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    predict = est.predict
    return predict


def _frame_predict(est: Any, schema: InputSchema) -> Callable[[Batch], Any]:
    predict = est.predict
    return lambda b: predict(to_frame(b, schema))


def _warm_batch(meta: Any, local: str, schema: InputSchema) -> Batch:
    """The logged input example as a batch, or one synthetic row if there is none (or it is odd)."""
    try:
        example = meta.load_input_example(local)
        if example is not None and hasattr(example, "columns"):
            frame = example.head(1)
            cols = {str(c): frame[c].tolist() for c in frame.columns}
            return batch_from_columns({c.name: cols[c.name] for c in schema.columns if c.name in cols}, schema)
    except Exception:  # noqa: BLE001 - an unusable example only means a synthetic warm-up row
        return synthetic_batch(schema)
    return synthetic_batch(schema)


def _load_profile(local: str, run_id: str | None, pin: Pin, workdir: str,
                  download: Callable[..., str], log: Callable[..., None] | None) -> BaselineProfile | None:
    """The version's baseline profile: beside the model files, else at the source run's root."""
    path = Path(local) / PROFILE_FILE
    if not path.exists() and run_id:
        try:
            path = Path(download(run_id=run_id, artifact_path=PROFILE_FILE,
                                 dst_path=str(Path(workdir) / "run"), tracking_uri=pin.tracking_uri))
        except Exception:  # noqa: BLE001 - a version without a profile is served without drift
            path = Path(local) / PROFILE_FILE
    return read_profile(path, pin, log)


def read_profile(path: Path, pin: Pin, log: Callable[..., None] | None) -> BaselineProfile | None:
    """Parse the profile at ``path``; absent or malformed profiles are logged and mean no drift."""
    if not path.exists():
        if log is not None:
            log("info", "baseline_profile_absent", model=pin.model_name, version=pin.model_version)
        return None
    try:
        return parse_profile(orjson.loads(path.read_bytes()))
    except (ProfileError, orjson.JSONDecodeError) as exc:
        if log is not None:
            log("error", "baseline_profile_invalid", model=pin.model_name, version=pin.model_version,
                error=str(exc))
        return None
