"""Property-based fuzzing of the serving app from the OpenAPI document it serves.

Requests are generated from ``/openapi.json`` itself (paths, methods, the JSON schema of the
scoring payload) with hypothesis, plus mutations the document does not describe (foreign
Content-Types, wrong methods, bytes that are not JSON). The properties: no 5xx, an answer
within a bound (no hang), and every 4xx carries a non-empty explanation.
"""

from __future__ import annotations

import asyncio
import io
import json
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_support import IRIS, IRIS_COLUMNS, Registry

from shipway.serving.app import ServingApp
from shipway.serving.config import ServingConfig

KEY = "fuzz-key"
ANSWER_WITHIN_S = 10.0
EXAMPLES = 300
COUNTS: dict[str, int] = {}

JSON_SCALARS = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(
    max_size=8)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=6), inner, max_size=4), max_leaves=12)
# Column-like strings: real column names often, so generation reaches past the name checks.
NAMES = st.sampled_from(IRIS_COLUMNS) | st.text(string.ascii_lowercase + "_", max_size=12)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy for the JSON-schema subset the document uses (object/array/oneOf/scalars)."""
    if "oneOf" in schema:
        return st.one_of([from_schema(s) for s in schema["oneOf"]])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        if not props:
            return st.dictionaries(NAMES, JSON_VALUES, max_size=5)
        return st.fixed_dictionaries({}, optional={k: from_schema(v) for k, v in props.items()}) | st.builds(
            lambda d, extra: {**d, **extra},
            st.fixed_dictionaries({}, optional={k: from_schema(v) for k, v in props.items()}),
            st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=2))
    if kind == "array":
        items = schema.get("items")
        return st.lists(from_schema(items) if items else JSON_SCALARS, max_size=6)
    if kind == "string":
        return NAMES
    if kind == "integer":
        return st.integers(-5, 5)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    return JSON_VALUES


@pytest.fixture(scope="module")
def app(registry: Registry, tmp_path_factory: pytest.TempPathFactory,
        model_loader: Callable[..., Any]) -> Iterator[ServingApp]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    pin = registry.pin_file(tmp / "pin.json", IRIS, 1)
    key = tmp / "key"
    key.write_text(KEY)
    key.chmod(0o600)
    served = ServingApp(ServingConfig(pin_file=str(pin), api_key_file=str(key), environment="fuzz", max_rows=50,
                                      body_timeout_seconds=2.0),
                        log_stream=io.BytesIO(), loader=model_loader, process_metrics=False)
    assert served.reload()
    yield served
    served.close()


@pytest.fixture(scope="module")
def document(app: ServingApp) -> dict[str, Any]:
    return json.loads(ask(app, "GET", "/openapi.json", b"", {}).content)


def ask(app: ServingApp, method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await asyncio.wait_for(client.request(method, path, content=body, headers=headers),
                                          ANSWER_WITHIN_S)

    return asyncio.run(go())


def requests(document: dict[str, Any]) -> st.SearchStrategy[tuple[str, str, bytes, dict[str, str]]]:
    """(method, path, body, headers) drawn from the document, with off-document mutations."""
    ops = [(m.upper(), p, op) for p, item in document["paths"].items() for m, op in item.items()]

    @st.composite
    def draw(data: st.DrawFn) -> tuple[str, str, bytes, dict[str, str]]:
        method, path, op = data(st.sampled_from(ops))
        if data(st.integers(0, 9)) == 0:
            method = data(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
        headers = {"Authorization": f"Bearer {KEY}"} if data(st.integers(0, 9)) else {}
        body = b""
        content = op.get("requestBody", {}).get("content", {})
        if content:
            media = data(st.sampled_from(sorted(content)))
            if media == "application/json":
                body = json.dumps(data(from_schema(content[media]["schema"]))).encode()
            else:
                rows = data(st.lists(st.lists(st.floats(-10, 10) | st.text(max_size=4), min_size=4, max_size=4),
                                     max_size=5))
                body = ("\n".join([",".join(IRIS_COLUMNS)] + [",".join(map(str, r)) for r in rows])).encode()
            headers["Content-Type"] = data(st.sampled_from([media, f"{media}; charset=utf-8", "text/plain",
                                                           "application/json; charset=latin-1", "x/y; a=b"]))
            if data(st.integers(0, 14)) == 0:
                body = data(st.binary(max_size=64))
        if "parameters" in op and data(st.booleans()):
            headers["X-Shipway-Traffic"] = data(st.sampled_from(["verification", "smoke", "shadow", "other"]))
        return method, path, body, headers

    return draw()


def test_fuzz_from_the_openapi_document_never_5xx_and_never_hangs(app: ServingApp, document: dict[str, Any]) -> None:
    # derandomize: the same requests every run, so the coverage floors below are not a coin toss.
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests(document))
    def check(request: tuple[str, str, bytes, dict[str, str]]) -> None:
        method, path, body, headers = request
        response = ask(app, method, path, body, headers)
        COUNTS[f"{response.status_code}"] = COUNTS.get(f"{response.status_code}", 0) + 1
        assert response.status_code < 500, (method, path, body[:200], headers, response.text)
        if 400 <= response.status_code < 500 and method != "HEAD":
            assert response.content.strip(), (method, path, response.status_code)

    COUNTS.clear()
    check()
    print(f"\nfuzz: {sum(COUNTS.values())} requests, by status {dict(sorted(COUNTS.items()))}")
    # The generator must actually reach the model, not only the validators.
    assert COUNTS.get("200", 0) >= 20
    assert COUNTS.get("400", 0) >= 10
