"""The serving app's ``/explain`` route: per-feature attributions for the request's rows.

Opt-in per model (stack config ``models.<name>.explain: true`` -> ``--explain`` on the serving
process). Off, the route answers 404 and ``/invocations`` runs exactly as before: the app's
only extra work is one string comparison of the route. On, a request pays for at most
``explain_max_evaluations`` model rows (the per-request cost bound, see :mod:`shipway.explain`)
and each explanation is logged as one ``explanation`` event carrying the trace id, so an
auditor can join it to the request's span and access-log line.

The attribution method lives in :mod:`shipway.explain` (one implementation, shared with the
global explanation computed at registration); this module only adapts a served
:class:`~shipway.serving.model.LoadedModel` to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from shipway.explain import ExplainError, Scorer, estimator_scorer, explain
from shipway.serving.model import LoadedModel, to_matrix
from shipway.serving.schema import BadRequest, Batch, parse_payload

EXPLAIN = "/explain"
DEFAULT_MAX_EVALUATIONS = 4096
_JSON = b"application/json"


class ServingHost(Protocol):
    """What the route needs from the serving app (kept narrow so the app stays the owner)."""

    config: Any
    events: Any

    def _authorized(self, creds: list[tuple[bytes, bytes]]) -> bool: ...

    async def _read_body(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes: ...


@dataclass(frozen=True)
class Adapted:
    """A served model seen as a numeric scorer over features in the estimator's order."""

    scorer: Scorer
    order: tuple[str, ...]
    baseline: np.ndarray


def estimator_of(model: LoadedModel) -> Any | None:
    """The deserialised estimator behind a served model, when there is one.

    ``LoadedModel`` has no estimator attribute yet (requested from the serving owner); until
    then the sklearn fast path's predict closure holds ``est.predict`` as a bound method.
    """
    est = getattr(model, "estimator", None)
    if est is not None:
        return est
    for cell in getattr(model.predict_fn, "__closure__", None) or ():
        try:
            target = getattr(cell.cell_contents, "__self__", None)
        except ValueError:  # an empty cell
            continue
        if target is not None and callable(getattr(target, "predict", None)):
            return target
    return None


def adapt(model: LoadedModel) -> Adapted:
    """Scorer, feature order and baseline (the version's logged input example) for ``model``."""
    if not model.schema.all_numeric:
        raise ExplainError(f"model {model.name} has non-numeric inputs {model.schema.describe()}; "
                           "explanations are computed for numeric features only")
    est = estimator_of(model)
    names = getattr(est, "feature_names_in_", None) if est is not None else None
    order = tuple(str(n) for n in names) if names is not None else model.schema.names
    baseline = to_matrix(model.warm_batch, order)[0]
    if est is not None:
        return Adapted(estimator_scorer(est), order, baseline)
    return Adapted(_predictions_scorer(model, order), order, baseline)


def _predictions_scorer(model: LoadedModel, order: tuple[str, ...]) -> Scorer:
    """Fallback for a model without an estimator: its predictions, which must be numbers."""
    def score(rows: np.ndarray) -> np.ndarray:
        batch = Batch(n_rows=rows.shape[0], columns={name: rows[:, j].tolist() for j, name in enumerate(order)})
        out = model.predict(batch)
        try:
            return np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            raise ExplainError(f"model {model.name} predicts non-numeric values and exposes no "
                               "probabilities; explanations need numeric scores") from None
    return score


class Explainer:
    """The route's state: the adapted model (rebuilt after a swap) and the cost bound."""

    def __init__(self, max_evaluations: int = DEFAULT_MAX_EVALUATIONS):
        if max_evaluations < 2:
            raise ValueError(f"explain_max_evaluations {max_evaluations!r} must be at least 2")
        self.max_evaluations = max_evaluations
        self._cache: tuple[LoadedModel, Adapted] | None = None

    def adapted(self, model: LoadedModel) -> Adapted:
        cached = self._cache
        if cached is not None and cached[0] is model:
            return cached[1]
        fresh = adapt(model)
        self._cache = (model, fresh)
        return fresh

    def explain_body(self, model: LoadedModel, body: bytes, max_rows: int) -> dict[str, Any]:
        """Attributions for the rows of an MLflow scoring payload (BadRequest/ExplainError on bad input)."""
        batch = parse_payload(body, model.schema, max_rows)
        adapted = self.adapted(model)
        x = to_matrix(batch, adapted.order)
        result = explain(adapted.scorer, x, adapted.baseline, adapted.order, max_evaluations=self.max_evaluations)
        return {"model_name": model.name, "model_version": model.version, **result.as_dict()}


def _error(status: int, code: str, message: str) -> tuple[int, bytes, str]:
    return status, orjson.dumps({"error_code": code, "message": message}), "bad_request"


async def handle(app: ServingHost, explainer: Explainer | None, method: str,
                 receive: Callable[[], Awaitable[dict[str, Any]]], model: LoadedModel | None,
                 creds: list[tuple[bytes, bytes]], request_id: str, trace_id: str) -> tuple[int, bytes, str | None]:
    """One ``/explain`` request -> (status, JSON body, error kind)."""
    if explainer is None:
        return _error(404, "NOT_FOUND", "explanations are off for this model; enable them with "
                      "`models.<name>.explain: true` in the stack config (serving flag --explain)")
    if method != "POST":
        return _error(405, "METHOD_NOT_ALLOWED", f"{EXPLAIN} only accepts POST")
    if not app._authorized(creds):
        return 401, orjson.dumps({"error_code": "UNAUTHORIZED", "message": "missing or invalid API key; send "
                                  "'Authorization: Bearer <key>' or 'X-API-Key: <key>'"}), "unauthorized"
    if model is None:
        return 503, orjson.dumps({"error_code": "NOT_READY", "message": "the model is not loaded yet"}), "internal"
    try:
        body = await app._read_body(receive)
    except BadRequest as exc:
        return _error(413, "BAD_REQUEST", exc.message)
    try:
        result = explainer.explain_body(model, body, app.config.max_rows)
    except BadRequest as exc:
        return _error(400, "BAD_REQUEST", exc.message)
    except ExplainError as exc:
        return _error(422, "CANNOT_EXPLAIN", str(exc))
    app.events.emit("info", "explanation", request_id=request_id, trace_id=trace_id, model=model.name,
                    version=model.version, method=result["method"], rows=len(result["rows"]),
                    evaluations=result["evaluations"],
                    attributions=[r["attributions"] for r in result["rows"]][:16])
    return 200, orjson.dumps(result), None
