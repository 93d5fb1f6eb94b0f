"""The ``drift_effects`` log line through the real app: what the AWS metric filters and the Azure
log alerts read (shipway_core.observability.drift), the same effect sizes as the drift gauge."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import urllib.parse
from pathlib import Path

import httpx
import pytest
from serving_support import IRIS, IRIS_COLUMNS, Registry

from shipway.serving.app import ServingApp
from shipway.serving.config import Pin, ServingConfig
from shipway.serving.platform import load_model_dir, preloaded
from shipway_core import contract as c
from shipway_core.observability import drift as drift_decision


@pytest.fixture(scope="module")
def model_dir(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow import MlflowClient

    from shipway.drift.profile import build_profile, save_profile

    source = MlflowClient(registry.uri, registry.uri).get_model_version_download_uri(IRIS, "1")
    path = tmp_path_factory.mktemp("package") / "model"
    shutil.copytree(urllib.parse.urlsplit(source).path, path)
    save_profile(build_profile(registry.iris_x), path / "baseline_profile.json")
    return path


def _lines_after(model_dir: Path, tmp_path: Path, batches: list[list[list[float]]]) -> list[dict]:
    """The app's log lines after scoring ``batches`` (one request each, a drift refresh after each)."""
    pin_file = tmp_path / "pin.json"
    pin_file.write_text(json.dumps({"model_name": IRIS, "model_version": 1, "tracking_uri": model_dir.as_uri()}))
    out = io.BytesIO()
    first = load_model_dir(model_dir, Pin(IRIS, 1, model_dir.as_uri()))
    app = ServingApp(ServingConfig(pin_file=str(pin_file), environment="test", drift_refresh_requests=1),
                     log_stream=out, loader=preloaded(first, model_dir), process_metrics=False)
    try:
        assert app.reload() is True

        async def score() -> None:
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
                for rows in batches:
                    body = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows}}
                    assert (await client.post("/invocations", json=body)).status_code == 200

        loop = asyncio.new_event_loop()  # not asyncio.run: it unsets the thread's loop Pulumi's mocks use
        try:
            loop.run_until_complete(score())
        finally:
            loop.close()
        app.log_sink.flush()
    finally:
        app.close()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_each_drift_refresh_logs_the_worst_effect_per_statistic_and_the_window(model_dir: Path, tmp_path: Path,
                                                                              registry: Registry) -> None:
    rows = registry.iris_x.sample(600, replace=True, random_state=3).to_numpy()
    shifted = rows.copy()
    shifted[:, 0] += 0.5 * registry.iris_x.iloc[:, 0].std()  # sepal length +0.5 sd: a real shift
    batches = [shifted[i:i + 100].round(2).tolist() for i in range(0, 600, 100)]
    lines = _lines_after(model_dir, tmp_path, batches)
    effects = [line for line in lines if line.get("event") == drift_decision.LOG_EVENT]
    assert len(effects) == 6  # one per refresh (every request here)
    last = effects[-1]
    assert set(drift_decision.LOG_FIELDS) <= set(last)
    for platform in (c.SAGEMAKER, c.AZUREML):  # what the platform contracts promise the cloud alerts
        assert set(dict(c.CONTRACTS[platform].log_fields)[drift_decision.LOG_EVENT]) <= set(last)
    assert (last["model_name"], last["model_version"], last["samples"]) == (IRIS, 1, 600.0)
    # iris has no categorical feature and no nulls: those statistics have nothing to say
    assert (last["max_jensen_shannon"], last["max_null_rate"]) == (0.0, 0.0)
    assert last["max_wasserstein"] > drift_decision.DEFAULT_THRESHOLDS["wasserstein"]
    assert drift_decision.firing({s: last[f"max_{s}"] for s in drift_decision.STATISTICS}, last["samples"],
                                 drift_decision.DEFAULT_THRESHOLDS) == ["wasserstein"]
    # the first refreshes come before the guard's minimum window: no alert may fire on them
    assert drift_decision.firing({s: effects[0][f"max_{s}"] for s in drift_decision.STATISTICS},
                                 effects[0]["samples"], drift_decision.DEFAULT_THRESHOLDS) == []


def test_unshifted_traffic_logs_effects_below_every_threshold(model_dir: Path, tmp_path: Path,
                                                             registry: Registry) -> None:
    rows = registry.iris_x.sample(600, replace=True, random_state=5).to_numpy()
    lines = _lines_after(model_dir, tmp_path, [rows[i:i + 200].tolist() for i in range(0, 600, 200)])
    last = [line for line in lines if line.get("event") == drift_decision.LOG_EVENT][-1]
    assert last["samples"] == 600.0
    assert drift_decision.firing({s: last[f"max_{s}"] for s in drift_decision.STATISTICS}, last["samples"],
                                 drift_decision.DEFAULT_THRESHOLDS) == []
