"""Loading pinned versions from the registry: native sklearn first, pyfunc as the fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from serving_support import DIABETES, IRIS, IRIS_COLUMNS, Registry

from shipway.serving.config import Pin
from shipway.serving.model import ModelLoadError, load_pinned_model, to_matrix
from shipway.serving.schema import batch_from_columns


def rows(registry: Registry, idx: list[int]) -> Any:
    return registry.iris_x.iloc[idx]


def test_sklearn_models_load_natively_with_signature_profile_and_warm_row(registry: Registry) -> None:
    events: list[tuple[Any, ...]] = []
    model = load_pinned_model(Pin(IRIS, 1, registry.uri), log=lambda *a, **k: events.append(a))
    try:
        assert (model.name, model.version, model.flavor, model.is_classifier) == (IRIS, 1, "sklearn", True)
        assert model.schema.names == tuple(IRIS_COLUMNS)
        assert {c.type for c in model.schema.columns} == {"double"}
        assert model.drift_features() == frozenset(IRIS_COLUMNS)
        assert model.warm_batch.columns["sepal_length"] == [registry.iris_x["sepal_length"].iloc[0]]
        x = rows(registry, [0, 50, 100])
        batch = batch_from_columns({c: x[c].tolist() for c in x.columns}, model.schema)
        assert to_matrix(batch, model.schema.names).tolist() == x.to_numpy().tolist()
        assert model.predict(batch) == registry.iris_model.predict(x).tolist()
        assert model.workdir is not None and Path(model.workdir).is_dir()
    finally:
        model.discard()
    assert not Path(model.workdir).exists()
    assert events == []


def test_a_version_without_profile_loads_without_drift(registry: Registry) -> None:
    events: list[tuple[Any, ...]] = []
    model = load_pinned_model(Pin(DIABETES, 1, registry.uri), log=lambda *a, **k: events.append(a))
    model.discard()
    assert (model.profile, model.is_classifier, model.drift_features()) == (None, False, frozenset())
    assert events == [("info", "baseline_profile_absent")]


def test_pyfunc_is_the_fallback_when_the_native_flavor_fails(registry: Registry,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.sklearn

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("untrusted type")

    monkeypatch.setattr(mlflow.sklearn, "load_model", refuse)
    events: list[tuple[Any, ...]] = []
    model = load_pinned_model(Pin(IRIS, 1, registry.uri), log=lambda *a, **k: events.append(a))
    model.discard()
    assert (model.flavor, model.is_classifier) == ("pyfunc", True)
    assert events[0] == ("warning", "sklearn_flavor_fallback")
    x = rows(registry, [0, 50, 100])
    batch = batch_from_columns({c: x[c].tolist() for c in x.columns}, model.schema)
    assert model.predict(batch) == registry.iris_model.predict(x).tolist()


def test_missing_versions_fail_with_a_named_error(registry: Registry) -> None:
    with pytest.raises(ModelLoadError, match=rf"^models:/{IRIS}/42 not found in registry {registry.uri}: "):
        load_pinned_model(Pin(IRIS, 42, registry.uri))


def test_frames_for_non_numeric_models_are_typed_per_signature() -> None:
    from shipway.serving.model import to_frame
    from shipway.serving.schema import ColumnSpec, InputSchema

    schema = InputSchema(columns=(ColumnSpec("n", "double"), ColumnSpec("k", "long"), ColumnSpec("s", "string"),
                                  ColumnSpec("b", "boolean")))
    frame = to_frame(batch_from_columns({"n": [1, None], "k": [1, 2], "s": ["a", None], "b": [True, False]},
                                        schema), schema)
    assert list(frame.columns) == ["n", "k", "s", "b"]
    assert [str(t) for t in frame.dtypes] == ["float64", "int64", "str", "bool"]  # pandas 3 string dtype
    assert frame["s"].iloc[0] == "a"
    assert frame["s"].isna().tolist() == [False, True]


@pytest.mark.parametrize("kind", ["estimator", "pipeline"])
def test_frame_fitted_estimators_predict_positional_rows_without_the_feature_name_warning(kind: str) -> None:
    # sklearn warns on every predict that a matrix has no feature names; Shipway builds the
    # matrix in the estimator's own feature order, so an estimator that carries its names
    # itself predicts through a copy without them (no warning work per request), and the
    # user's estimator is left as it was. A Pipeline keeps its names on its steps: it still
    # predicts the same, with the warning filtered.
    import warnings

    import numpy as np
    import pandas as pd
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from shipway.serving.model import sklearn_loaded_model, synthetic_batch
    from shipway.serving.schema import ColumnSpec, InputSchema

    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(size=(200, 4)), columns=["p", "q", "r", "s"])
    y = (x["p"] + x["r"] > 0).astype(int)
    gbt = GradientBoostingClassifier(n_estimators=10, random_state=0)
    est = (gbt if kind == "estimator" else make_pipeline(StandardScaler(), gbt)).fit(x, y)
    schema = InputSchema(columns=tuple(ColumnSpec(c, "double") for c in ["s", "r", "q", "p"]))  # other order
    model = sklearn_loaded_model(Pin("m", 1, "http://registry"), est, schema, synthetic_batch(schema))
    rows = x.iloc[:20]
    batch = batch_from_columns({c: rows[c].tolist() for c in schema.names}, schema)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictions = model.predict(batch)
    assert predictions == est.predict(rows).tolist()
    assert list(est.feature_names_in_) == ["p", "q", "r", "s"]
    names_warnings = [w for w in caught if "feature names" in str(w.message)]
    if kind == "estimator":
        assert names_warnings == []
    else:
        assert names_warnings  # the old path: the original predicts (the app filters this warning)
