"""Loading a pinned sklearn model without importing MLflow, for a fast cold start.

Importing MLflow costs ~1 s of a ~2.8 s cold start, yet for the common deployment (an
MLflow server reached over http(s) whose artifacts live on a ``file://`` path, as on the
local target) serving needs only three REST calls, the MLmodel YAML file and the
estimator file. This module does exactly that, and deserialises the estimator the way
``mlflow.sklearn.load_model`` does (``skops.io.load`` with the flavor's
``skops_trusted_types``, ``pickle.load`` or ``cloudpickle.load`` by the flavor's
``serialization_format``), so predictions are identical.

``load_fast`` returns None whenever it is not sure (non-http registry, non-file artifacts,
a non-sklearn model, a flavor with ``code`` paths, an unknown serialization format, or
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` set, whose gate MLflow applies), and the caller
falls back to MLflow's loaders. A missing, non-READY or unreachable version raises
ModelLoadError just like the MLflow path.
"""

from __future__ import annotations

import os
import pickle  # noqa: S403 - the same deserialisation mlflow.sklearn.load_model performs
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from shipway.serving.config import Pin
from shipway.serving.model import (
    PROFILE_FILE,
    LoadedModel,
    ModelLoadError,
    read_profile,
    schema_from_items,
    sklearn_loaded_model,
    synthetic_batch,
)
from shipway.serving.schema import Batch, InputSchema, batch_from_columns

FORMATS = frozenset({"pickle", "cloudpickle", "skops"})


class _NotApplicable(Exception):
    """The fast path does not cover this model; use MLflow's loaders."""


def load_fast(pin: Pin, *, log: Callable[..., None] | None = None) -> LoadedModel | None:
    """Load, warm and return the pinned version, or None to fall back to the MLflow path."""
    if not pin.tracking_uri.startswith(("http://", "https://")):
        return None
    if "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" in os.environ:
        return None
    from shipway_core import registry_rest as rest

    try:
        record = rest.get_version(pin.tracking_uri, pin.model_name, pin.model_version)
    except rest.RegistryError as exc:
        raise ModelLoadError(f"{pin.model_uri} not found in registry {pin.tracking_uri}: {exc}") from exc
    if record is None:
        raise ModelLoadError(f"{pin.model_uri} not found in registry {pin.tracking_uri}: "
                             "RESOURCE_DOES_NOT_EXIST")
    if record.get("status") != "READY":
        raise ModelLoadError(f"{pin.model_uri} is {record.get('status')}, not READY")
    workdir = tempfile.mkdtemp(prefix="shipway-model-")
    try:
        model = _load(pin, record, workdir, log)
    except _NotApplicable as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        if log is not None:
            log("info", "fast_load_skipped", model=pin.model_name, version=pin.model_version, reason=str(exc))
        return None
    except Exception as exc:  # noqa: BLE001 - the MLflow path decides (and reports) what is wrong
        shutil.rmtree(workdir, ignore_errors=True)
        if log is not None:
            log("warning", "fast_load_fallback", model=pin.model_name, version=pin.model_version,
                error=f"{type(exc).__name__}: {exc}"[:500])
        return None
    return model


def local_path(uri: str) -> Path:
    """The filesystem path of a ``file://`` URI (or a plain path); _NotApplicable otherwise."""
    from shipway_core.registry_rest import file_path

    path = file_path(uri)
    if path is None:
        raise _NotApplicable(f"artifacts at {uri} are not on a local file path")
    return path


def _rest(pin: Pin, path: str, params: dict[str, str]) -> dict[str, Any]:
    from shipway_core import registry_rest as rest

    res = rest._call(pin.tracking_uri, "GET", path, params)  # noqa: SLF001 - the registry's own small client
    if "__error__" in res:
        raise _NotApplicable(f"{path}: {res['__error__']}")
    return res


def _load(pin: Pin, record: dict[str, Any], workdir: str, log: Callable[..., None] | None) -> LoadedModel:
    import yaml

    uri = _rest(pin, "model-versions/get-download-uri",
                {"name": pin.model_name, "version": str(pin.model_version)})["artifact_uri"]
    source = local_path(uri)
    local = Path(workdir) / "model"
    shutil.copytree(source, local)  # a private copy, like MLflow's download: discard() deletes it
    safe_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C safe loader: same result, faster
    meta = yaml.load((local / "MLmodel").read_text(), Loader=safe_loader)  # noqa: S506 - a SafeLoader
    conf = (meta.get("flavors") or {}).get("sklearn")
    if not isinstance(conf, dict):
        raise _NotApplicable("the model has no sklearn flavor")
    if conf.get("code"):
        raise _NotApplicable("the sklearn flavor has code paths")
    fmt = conf.get("serialization_format", "pickle")
    if fmt not in FORMATS:
        raise _NotApplicable(f"serialization format {fmt!r}")
    signature = meta.get("signature") or {}
    if not signature.get("inputs"):
        raise ModelLoadError("the model has no input signature; log it with a signature or input_example")
    schema = schema_from_items(orjson.loads(signature["inputs"]))
    profile_path = local / PROFILE_FILE
    if not profile_path.exists() and record.get("run_id"):
        run = _rest(pin, "runs/get", {"run_id": record["run_id"]})["run"]["info"]
        profile_path = local_path(run["artifact_uri"]) / PROFILE_FILE
    warm = _warm_batch(meta, local, schema)
    estimator = deserialize(local / conf["pickled_model"], fmt, conf.get("skops_trusted_types"))
    model = sklearn_loaded_model(pin, estimator, schema, warm)
    model.profile = read_profile(profile_path, pin, log)
    model.workdir = workdir
    model.predict(model.warm_batch)
    return model


def deserialize(path: Path, fmt: str, skops_trusted_types: list[str] | None) -> Any:
    """The estimator, read exactly as ``mlflow.sklearn._load_model_from_local_file`` reads it."""
    if fmt == "skops":
        import skops.io

        return skops.io.load(str(path), trusted=skops_trusted_types)
    with open(path, "rb") as f:
        if fmt == "pickle":
            return pickle.load(f)  # noqa: S301 - same trust model as mlflow.sklearn.load_model
        import cloudpickle

        return cloudpickle.load(f)


def _warm_batch(meta: dict[str, Any], local: Path, schema: InputSchema) -> Batch:
    """The logged input example's first row (split-orient JSON), else one synthetic row."""
    info = meta.get("saved_input_example_info") or {}
    try:
        if info.get("type") == "dataframe" and info.get("pandas_orient", "split") == "split":
            doc = orjson.loads((local / info["artifact_path"]).read_bytes())
            row = doc["data"][0]
            cols = {str(c): [row[i]] for i, c in enumerate(doc["columns"])}
            return batch_from_columns({c.name: cols[c.name] for c in schema.columns if c.name in cols}, schema)
    except Exception:  # noqa: BLE001 - an unusable example only means a synthetic warm-up row
        return synthetic_batch(schema)
    return synthetic_batch(schema)
