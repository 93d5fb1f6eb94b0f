"""Differential test: Shipway's endpoint against MLflow's own scoring server, same models.

MLflow's server is the real one (``mlflow models serve --env-manager local``, the version the
project pins); Shipway's is the serving app under uvicorn. Both listen on free 127.0.0.1 ports
and serve the same registered versions: a numeric-only classifier and a pipeline with a
string (categorical) column. A seeded generator builds a broad set of requests (payload
formats, content types, column orders and subsets, value types, nulls, sizes, malformed
bodies); every request goes to both servers and the status code, MLflow ``error_code`` and
predictions must agree, except for the documented differences (docs/serving.md,
"Differences from mlflow models serve"), which are asserted as such.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

NUMERIC = "parity-numeric"
CATEGORICAL = "parity-categorical"
NUM_COLS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CAT_COLS = ["color", "size", "weight"]
COLORS = ["red", "green", "blue"]
START_SECONDS = 240  # MLflow's server imports MLflow, pandas and sklearn; slow on a busy 2-core box
CASES_PER_MODEL = 220


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Case:
    """One request: its body, its Content-Type (None: header absent) and a label for reports."""

    label: str
    body: bytes
    content_type: str | None


@dataclass(frozen=True)
class Models:
    uri: str
    numeric: Any  # training frames, for realistic rows
    categorical: Any


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    root = tmp_path_factory.mktemp("parity")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = NUM_COLS
    rng = np.random.default_rng(7)
    cat = pd.DataFrame({"color": rng.choice(COLORS, 200), "size": rng.normal(10, 3, 200),
                        "weight": rng.normal(50, 10, 200)})
    target = cat["size"] * 2 + (cat["color"] == "red") * 5 + rng.normal(0, 1, 200)
    pipeline = Pipeline([
        ("prep", ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="error"), ["color"])],
                                   remainder="passthrough")),
        ("model", Ridge()),
    ]).fit(cat, target)
    classifier = LogisticRegression(max_iter=300).fit(x, y)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        experiment = mlflow.create_experiment("parity", artifact_location=(root / "artifacts").as_uri())
        for name, model, frame in ((NUMERIC, classifier, x), (CATEGORICAL, pipeline, cat)):
            with mlflow.start_run(experiment_id=experiment):
                mlflow.sklearn.log_model(model, name="model", input_example=frame.head(2),
                                         signature=infer_signature(frame, model.predict(frame)),
                                         registered_model_name=name, pip_requirements=["scikit-learn"])
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    yield Models(uri=uri, numeric=x, categorical=cat)
    shutil.rmtree(root, ignore_errors=True)


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/ping", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} was not ready within {START_SECONDS}s")


@pytest.fixture(scope="module")
def mlflow_servers(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """MLflow's own scoring server per model (`mlflow models serve`), stopped by the PID we started."""
    log_dir = tmp_path_factory.mktemp("mlflow-serve")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=models.uri, MLFLOW_REGISTRY_URI=models.uri)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")  # it execs `uvicorn` from PATH
    mlflow_cli = str(Path(bin_dir) / "mlflow")
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for name in (NUMERIC, CATEGORICAL):
            port = free_port()
            log = (log_dir / f"{name}.log").open("wb")
            procs.append(subprocess.Popen(
                [mlflow_cli, "models", "serve", "-m", f"models:/{name}/1", "--env-manager", "local",
                 "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            urls[name] = f"http://127.0.0.1:{port}"
        for proc, (name, url) in zip(procs, urls.items(), strict=True):
            wait_ready(url, proc, f"mlflow models serve ({name})")
        yield urls
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def shipway_servers(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Shipway's serving app per model under uvicorn in this process (the production settings)."""
    import uvicorn

    from shipway.serving.app import ServingApp
    from shipway.serving.config import ServingConfig
    from shipway.serving.server import uvicorn_config

    tmp = tmp_path_factory.mktemp("shipway-serve")
    servers: list[tuple[Any, threading.Thread, ServingApp]] = []
    urls: dict[str, str] = {}
    try:
        for name in (NUMERIC, CATEGORICAL):
            pin = tmp / f"{name}.json"
            pin.write_text(json.dumps({"model_name": name, "model_version": 1, "tracking_uri": models.uri}))
            port = free_port()
            config = ServingConfig(pin_file=str(pin), port=port, environment="parity", max_rows=10_000)
            app = ServingApp(config, log_stream=io.BytesIO(), process_metrics=False)
            assert app.reload(), f"shipway could not load {name}"
            server = uvicorn.Server(uvicorn_config(app, config))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            servers.append((server, thread, app))
            urls[name] = f"http://127.0.0.1:{port}"
            wait_ready(urls[name], None, f"shipway serving ({name})")
        yield urls
    finally:
        for server, thread, app in servers:
            server.should_exit = True
            thread.join(15)
            app.close()


# ----------------------------------------------------------------- the generated requests


def _jsonable(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _rows(frame: Any, rng: random.Random, n: int) -> list[dict[str, Any]]:
    picks = [rng.randrange(len(frame)) for _ in range(n)]
    return [{c: _jsonable(frame.iloc[i][c]) for c in frame.columns} for i in picks]


def _mutate_value(rng: random.Random, value: Any, kind: str) -> tuple[Any, str]:
    """A value of another type: the cases MLflow converts and the ones it rejects."""
    choice = rng.choice(["numstr", "bool", "null", "text", "list", "object", "int", "big"])
    if kind == "string":
        choice = rng.choice(["unseen", "null", "number", "bool", "list"])
        return {"unseen": "purple", "null": None, "number": 3, "bool": True, "list": ["red"]}[choice], choice
    return {"numstr": str(value), "bool": rng.random() < 0.5, "null": None, "text": "abc", "list": [value],
            "object": {"v": value}, "int": int(value), "big": 1e300}[choice], choice


def _encode(rng: random.Random, records: list[dict[str, Any]], columns: list[str]) -> tuple[Any, str]:
    fmt = rng.choice(["split", "records", "inputs_cols", "inputs_records", "instances_records", "inputs_rows"])
    if fmt == "split":
        return {"dataframe_split": {"columns": columns, "data": [[r.get(c) for c in columns] for r in records]}}, fmt
    if fmt == "records":
        return {"dataframe_records": [{c: r[c] for c in columns if c in r} for r in records]}, fmt
    if fmt == "inputs_cols":
        return {"inputs": {c: [r.get(c) for r in records] for c in columns}}, fmt
    if fmt == "inputs_records":
        return {"inputs": [{c: r[c] for c in columns if c in r} for r in records]}, fmt
    if fmt == "instances_records":
        return {"instances": [{c: r[c] for c in columns if c in r} for r in records]}, fmt
    return {"inputs": [[r.get(c) for c in columns] for r in records]}, fmt


def _csv(records: list[dict[str, Any]], columns: list[str]) -> bytes:
    def cell(v: Any) -> str:
        return "" if v is None else str(v)

    lines = [",".join(columns)] + [",".join(cell(r.get(c)) for c in columns) for r in records]
    return ("\n".join(lines) + "\n").encode()


MALFORMED = [
    b"", b"{", b"[]", b"[1, 2]", b"null", b"42", b'"text"', b"{}", b'{"foo": 1}',
    b'{"dataframe_split": 1}', b'{"dataframe_split": {"columns": ["a"]}}',
    b'{"dataframe_records": {"a": 1}}', b'{"inputs": "abc"}', b'{"inputs": []}',
    b'{"dataframe_split": {"columns": [], "data": []}}', b"\xff\xfe\x00",
    b'{"dataframe_split": {"data": [[1, 2, 3, 4]]}}', b'{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}',
    b'{"dataframe_split": {"columns": ["a"], "data": [[1]], "orient": 1}}', b'{"dataframe_records": []}',
    b'{"dataframe_records": [1, 2]}', b'{"dataframe_records": [[1, 2]]}', b'{"inputs": {"a": [1], "b": [1, 2]}}',
    b'{"inputs": {"a": 1}}', b'{"instances": {}}', b'{"dataframe_split": {"columns": ["a"], "data": [5]}}',
]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8",
                 "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1",
                 "application/json; format=pandas-split", "text/csv", "text/csv; charset=utf-8"]


def fixed_cases(frame: Any) -> list[Case]:
    """Hand-picked edges around the generated ones: index, sizes, CSV shapes."""
    columns = list(frame.columns)
    records = _rows(frame, random.Random(5), 3)
    split = {"columns": columns, "data": [[r[c] for c in columns] for r in records]}
    big = _rows(frame, random.Random(6), 1000)
    header = ",".join(columns)
    first = ",".join(str(records[0][c]) for c in columns)
    return [
        Case("split with index", json.dumps({"dataframe_split": {**split, "index": [7, 8, 9]}}).encode(), JSON),
        Case("split 1000 rows", json.dumps({"dataframe_split": {"columns": columns, "data": [
            [r[c] for c in columns] for r in big]}}).encode(), JSON),
        Case("records 1000 rows", json.dumps({"dataframe_records": big}).encode(), JSON),
        Case("csv header only", (header + "\n").encode(), "text/csv"),
        Case("csv quoted", (header + "\n" + ",".join(f'"{records[0][c]}"' for c in columns) + "\n").encode(),
             "text/csv"),
        Case("csv extra field", (header + "\n" + first + ",9\n").encode(), "text/csv"),
        Case("csv crlf", (header + "\r\n" + first + "\r\n").encode(), "text/csv"),
        Case("csv no trailing newline", (header + "\n" + first).encode(), "text/csv"),
        Case("csv 1000 rows", _csv(big, columns), "text/csv"),
        Case("json charset quoted", json.dumps({"dataframe_split": split}).encode(),
             'application/json; charset="utf-8"'),
        Case("json uppercase type", json.dumps({"dataframe_split": split}).encode(), "APPLICATION/JSON"),
        Case("parquet type", b"PAR1", "application/vnd.apache.parquet"),
    ]


JSON = "application/json"


def generate(frame: Any, types: dict[str, str], seed: int, count: int) -> list[Case]:
    """``count`` seeded requests for one model (same seed, same cases: failures reproduce)."""
    rng = random.Random(seed)
    cases: list[Case] = fixed_cases(frame)
    columns = list(frame.columns)
    while len(cases) < count:
        n = rng.choice([1, 1, 2, 3, 5, 17, 64])
        records = _rows(frame, rng, n)
        cols = columns[:]
        tags = []
        roll = rng.random()
        if roll < 0.25:
            rng.shuffle(cols)
            tags.append("shuffled")
        elif roll < 0.35:
            cols.remove(rng.choice(cols))
            tags.append("subset")
        elif roll < 0.45:
            cols.append("extra_col")
            for r in records:
                r["extra_col"] = rng.random()
            tags.append("extra")
        if rng.random() < 0.35:
            col = rng.choice(columns)
            row = rng.randrange(n)
            records[row][col], how = _mutate_value(rng, records[row][col], types[col])
            tags.append(f"{col}:{how}")
        kind = rng.random()
        if kind < 0.12:
            body = rng.choice(MALFORMED)
            cases.append(Case("malformed " + body[:20].decode("latin-1"), body, "application/json"))
            continue
        if kind < 0.25:
            csv_type = rng.choice(["text/csv", "text/csv; charset=utf-8"])
            cases.append(Case("csv " + " ".join(tags), _csv(records, cols), csv_type))
            continue
        doc, fmt = _encode(rng, records, cols)
        if rng.random() < 0.1:
            doc["params"] = rng.choice([{"threshold": 0.5}, 3, None])
            tags.append("params")
        if rng.random() < 0.08:
            doc["client_meta"] = {"team": "x"}
            tags.append("unknown-key")
        if rng.random() < 0.05:
            doc["dataframe_records"] = records
            tags.append("two-keys")
        content_type = rng.choice(CONTENT_TYPES) if rng.random() < 0.2 else "application/json"
        body = json.dumps(doc).encode()
        if rng.random() < 0.04:
            body = body[: len(body) // 2]
            tags.append("truncated")
        cases.append(Case(f"{fmt} {content_type} " + " ".join(tags), body, content_type))
    return cases


# ----------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Outcome:
    status: int
    error_code: str | None
    predictions: Any


def call(client: httpx.Client, url: str, case: Case) -> Outcome:
    headers = {"Content-Type": case.content_type} if case.content_type is not None else {}
    r = client.post(url + "/invocations", content=case.body, headers=headers)
    try:
        doc = r.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        doc = {}
    return Outcome(r.status_code, doc.get("error_code"), doc.get("predictions"))


def same_predictions(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_predictions(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return bool(a == b)


def documented_difference(case: Case) -> str | None:
    """Requests docs/serving.md lists as answered differently on purpose."""
    if case.content_type is None:
        return "no Content-Type: MLflow 500 (unhandled), Shipway 415"
    if case.content_type.startswith("application/vnd.apache.parquet"):
        return "parquet: MLflow reads it, Shipway 415"
    return None


def run_model(name: str, frame: Any, types: dict[str, str], seed: int,
              mlflow_url: str, shipway_url: str) -> tuple[int, list[str]]:
    cases = generate(frame, types, seed, CASES_PER_MODEL)
    cases.append(Case("no content type", json.dumps({"dataframe_records": _rows(frame, random.Random(1), 1)}).encode(),
                      None))
    mismatches: list[str] = []
    with httpx.Client(timeout=60) as client:
        for case in cases:
            theirs, ours = call(client, mlflow_url, case), call(client, shipway_url, case)
            reason = documented_difference(case)
            if reason is not None:
                assert ours.status == 415, f"{case.label}: expected the documented 415, got {ours.status}"
                continue
            same = (theirs.status == ours.status and theirs.error_code == ours.error_code
                    and same_predictions(theirs.predictions, ours.predictions))
            if not same:
                mismatches.append(f"{name} [{case.label}] body={case.body[:120]!r}: mlflow={theirs} shipway={ours}")
    return len(cases), mismatches


def test_shipway_answers_like_mlflow_models_serve(models: Models, mlflow_servers: dict[str, str],
                                                  shipway_servers: dict[str, str]) -> None:
    total = 0
    mismatches: list[str] = []
    for name, frame, types, seed in (
            (NUMERIC, models.numeric, dict.fromkeys(NUM_COLS, "double"), 20),
            (CATEGORICAL, models.categorical, {"color": "string", "size": "double", "weight": "double"}, 21)):
        count, bad = run_model(name, frame, types, seed, mlflow_servers[name], shipway_servers[name])
        total += count
        mismatches += bad
    agreement = 1 - len(mismatches) / total
    print(f"\nparity: {total} cases, agreement {agreement:.1%}, {len(mismatches)} mismatches")
    assert not mismatches, f"{len(mismatches)}/{total} requests differ:\n" + "\n".join(mismatches[:40])


def test_mlflow_version_route_matches_mlflow(mlflow_servers: dict[str, str]) -> None:
    from shipway.serving.app import _mlflow_version_text

    theirs = httpx.get(mlflow_servers[NUMERIC] + "/version", timeout=10)
    assert (theirs.status_code, theirs.text) == (200, _mlflow_version_text())
