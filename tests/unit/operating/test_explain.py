"""Explainability: sampled Shapley attributions (exactness, efficiency, cost bound), the global
explanation stored at registration, and the serving app's /explain route."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipway.explain import (
    GLOBAL_TAG,
    ExplainError,
    estimator_scorer,
    explain,
    explanation_link,
    global_importance,
    global_tag_value,
    permutations_for,
)
from tests.unit.operating.support import AUTH, IRIS_COLUMNS, Served

FEATURES = ("a", "b", "c")


def test_additive_model_gets_exact_attributions() -> None:
    w = np.array([2.0, -3.0, 0.5])
    x = np.array([[1.0, 2.0, 4.0], [0.0, -1.0, 10.0]])
    base = np.array([0.5, 0.5, 0.5])
    result = explain(lambda rows: rows @ w + 7.0, x, base, FEATURES, max_evaluations=64)
    for i in range(2):
        assert result.values[i] == pytest.approx((w * (x[i] - base)).tolist())
        assert result.base_values[i] == pytest.approx(float(base @ w + 7.0))


def test_pure_interaction_is_split_evenly_between_its_two_features() -> None:
    # f = a*b from baseline 0: Shapley gives each of a, b half of f(x)=6, and c nothing.
    result = explain(lambda r: r[:, 0] * r[:, 1], np.array([[2.0, 3.0, 9.0]]), np.zeros(3), FEATURES,
                     max_evaluations=8)
    assert result.values[0] == pytest.approx([3.0, 3.0, 0.0])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=3, max_size=3), st.integers(0, 2**16))
def test_attributions_always_sum_to_output_minus_baseline(row: list[float], seed: int) -> None:
    def f(r: np.ndarray) -> np.ndarray:
        return np.sin(r[:, 0]) * r[:, 1] + np.maximum(r[:, 2], 0) ** 2

    x = np.array([row])
    result = explain(f, x, np.ones(3), FEATURES, max_evaluations=16, seed=seed)
    assert sum(result.values[0]) == pytest.approx(float(f(x)[0] - f(np.ones((1, 3)))[0]), abs=1e-9)


def test_multi_output_explains_each_rows_highest_output() -> None:
    def f(r: np.ndarray) -> np.ndarray:
        return np.stack([r[:, 0], r[:, 1], np.zeros(len(r))], axis=1)

    result = explain(f, np.array([[5.0, 1.0, 0.0], [1.0, 5.0, 0.0]]), np.zeros(3), FEATURES)
    assert result.output_index == [0, 1]
    assert result.values[0] == pytest.approx([5.0, 0.0, 0.0])
    assert result.values[1] == pytest.approx([0.0, 5.0, 0.0])


def test_the_cost_bound_sets_the_permutations_and_refuses_what_does_not_fit() -> None:
    assert permutations_for(n_rows=1, n_features=3, max_evaluations=64) == 16
    assert permutations_for(n_rows=2, n_features=3, max_evaluations=64) == 8
    result = explain(lambda r: r.sum(axis=1), np.ones((2, 3)), np.zeros(3), FEATURES, max_evaluations=64)
    assert result.evaluations == 2 * 8 * 4 <= 64
    with pytest.raises(ExplainError, match=r"rows: 10 rows x 3 features exceed the explanation budget of "
                                           r"64 model evaluations per request; send at most 8 rows per request"):
        permutations_for(n_rows=10, n_features=3, max_evaluations=64)


def test_global_importance_ranks_the_feature_the_model_uses(iris: tuple[Any, Any, Any]) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    importance = global_importance(lambda r: 4 * r[:, 2] + 0.5 * r[:, 0], x, FEATURES)
    assert list(importance) == ["c", "a", "b"]
    assert importance["b"] == 0.0
    # On iris, the petal measurements carry the classification (a known property of the data).
    ix, _, est = iris
    ranked = list(global_importance(estimator_scorer(est), ix.to_numpy(), IRIS_COLUMNS, max_evaluations=20_000))
    assert set(ranked[:2]) == {"petal_length", "petal_width"}


def test_global_evidence_tag_and_the_promotion_link() -> None:
    value = global_tag_value({"c": 2.0, "a": 0.5, "b": 0.0}, rows=200)
    assert json.loads(value) == {"method": "sampled_shapley", "rows": 200,
                                 "importance": {"c": 2.0, "a": 0.5, "b": 0.0}}
    link = explanation_link("http://127.0.0.1:5000", "iris", 4, {GLOBAL_TAG: value})
    assert link == {"tag": GLOBAL_TAG, "model_version": "models:/iris/4", "registry": "http://127.0.0.1:5000",
                    "top_features": ["c", "a", "b"]}
    assert explanation_link("http://127.0.0.1:5000", "iris", 4, {}) is None


# ----------------------------------------------------------------- the /explain route


def payload(x: Any, rows: list[int]) -> dict[str, Any]:
    part = x.iloc[rows]
    return {"dataframe_split": {"columns": list(part.columns), "data": part.to_numpy().tolist()}}


def test_explain_returns_attributions_of_the_predicted_class_probability(serve: Callable[..., Served]) -> None:
    s = serve(explain=True)
    response = s.request("POST", "/explain", json=payload(s.x, [0, 100]), headers=AUTH)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["model_name"] == "iris" and doc["model_version"] == 3
    assert doc["method"] == "sampled_shapley" and doc["evaluations"] <= 4096
    proba = s.estimator.predict_proba(s.x.iloc[[0, 100]])
    for i, row in enumerate(doc["rows"]):
        assert set(row["attributions"]) == set(IRIS_COLUMNS)
        assert row["output_index"] == int(np.argmax(proba[i]))
        assert row["output"] == pytest.approx(float(proba[i].max()))
        assert sum(row["attributions"].values()) == pytest.approx(row["output"] - row["base_value"])


def test_explanations_are_logged_with_the_trace_id(serve: Callable[..., Served]) -> None:
    s = serve(explain=True)
    response = s.request("POST", "/explain", json=payload(s.x, [50]), headers=AUTH)
    [event] = s.events("explanation")
    assert event["trace_id"] == response.headers["x-trace-id"]
    assert event["request_id"] == response.headers["x-request-id"]
    assert event["rows"] == 1 and set(event["attributions"][0]) == set(IRIS_COLUMNS)


def test_explain_is_authenticated(serve: Callable[..., Served]) -> None:
    s = serve(explain=True)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = s.request("POST", "/explain", json=payload(s.x, [0]), headers=headers)
        assert response.status_code == 401
        assert response.json()["error_code"] == "UNAUTHORIZED"
    assert s.events("explanation") == []


def test_explain_off_answers_404_and_invocations_are_unchanged(serve: Callable[..., Served]) -> None:
    s = serve()
    response = s.request("POST", "/explain", json=payload(s.x, [0]), headers=AUTH)
    assert response.status_code == 404
    assert "models.<name>.explain: true" in response.json()["message"]
    predicted = s.request("POST", "/invocations", json=payload(s.x, [0, 50]), headers=AUTH)
    assert predicted.json() == {"predictions": s.estimator.predict(s.x.iloc[[0, 50]]).tolist()}
    assert s.app.explainer is None


def test_explain_over_budget_is_a_clear_422(serve: Callable[..., Served]) -> None:
    s = serve(explain=True, explain_max_evaluations=100)
    response = s.request("POST", "/explain", json=payload(s.x, list(range(20))), headers=AUTH)
    assert response.status_code == 422
    assert response.json() == {"error_code": "CANNOT_EXPLAIN", "message": (
        "rows: 20 rows x 4 features exceed the explanation budget of 100 model evaluations per request; "
        "send at most 10 rows per request")}


def test_explain_rejects_bad_payloads_like_invocations(serve: Callable[..., Served]) -> None:
    s = serve(explain=True)
    response = s.request("POST", "/explain", content=b"{not json", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["message"].startswith("request body is not valid JSON")
    assert s.request("GET", "/explain", headers=AUTH).status_code == 405
