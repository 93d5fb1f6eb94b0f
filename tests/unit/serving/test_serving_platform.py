"""Container start-up (``shipway.serving.platform``): model directories, pre-loading, the
``drift_window`` log line through the real app, and start-up failures as one JSON line."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_support import IRIS, IRIS_COLUMNS, Registry

from shipway.serving.app import ServingApp
from shipway.serving.config import Pin, ServingConfig
from shipway.serving.platform import PlatformError, find_model_dir, load_model_dir, main, preloaded
from shipway_core import contract as c

COLUMNS = IRIS_COLUMNS


@pytest.fixture(scope="module")
def model_dir(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Iris v1 as a release packages it: the MLflow model directory plus its baseline profile."""
    from mlflow import MlflowClient

    from shipway.drift.profile import build_profile, save_profile

    source = MlflowClient(registry.uri, registry.uri).get_model_version_download_uri(IRIS, "1")
    path = tmp_path_factory.mktemp("package") / "model"
    shutil.copytree(urllib.parse.urlsplit(source).path, path)
    save_profile(build_profile(registry.iris_x), path / "baseline_profile.json")
    return path


def _tree(root: Path, dirs: list[str]) -> None:
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d / "MLmodel").write_text("flavors: {}\n")


@pytest.mark.parametrize(("dirs", "found"), [
    (["."], "."),                      # SageMaker: the package's files straight in the directory
    (["model"], "model"),              # Azure ML: the registered folder inside AZUREML_MODEL_DIR
])
def test_the_model_directory_is_found_at_or_one_below_the_root(tmp_path: Path, dirs: list[str], found: str) -> None:
    _tree(tmp_path, dirs)
    assert find_model_dir(tmp_path, "X") == (tmp_path if found == "." else tmp_path / found)


@pytest.mark.parametrize(("dirs", "detail"), [
    ([], "holds no MLmodel file"),
    (["a", "b"], "holds 2 MLflow models"),
])
def test_no_or_several_models_is_an_error_naming_the_variable(tmp_path: Path, dirs: list[str], detail: str) -> None:
    _tree(tmp_path, dirs)
    with pytest.raises(PlatformError) as err:
        find_model_dir(tmp_path, c.AZUREML_MODEL_DIR)
    assert str(err.value) == (f"AZUREML_MODEL_DIR: {str(tmp_path)!r} {detail}; the platform must provide exactly "
                              "one MLflow model directory there (the pinned version's package)")


def test_preloaded_model_is_served_first_then_the_directory_is_read_again(model_dir: Path) -> None:
    pin = Pin(IRIS, 1, model_dir.as_uri())
    first = load_model_dir(model_dir, pin)
    assert first.workdir is None  # the platform's files are never deleted on discard
    load = preloaded(first, model_dir)
    assert load(pin) is first
    again = load(pin)
    assert again is not first and (again.name, again.version) == (IRIS, 1)


def test_the_app_logs_the_drift_window_line_the_aws_metric_filter_reads(model_dir: Path, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin.json"
    pin_file.write_text(json.dumps({"model_name": IRIS, "model_version": 1, "tracking_uri": model_dir.as_uri()}))
    out = io.BytesIO()
    first = load_model_dir(model_dir, Pin(IRIS, 1, model_dir.as_uri()))
    app = ServingApp(ServingConfig(pin_file=str(pin_file), environment="test", drift_refresh_requests=1),
                     log_stream=out, loader=preloaded(first, model_dir), process_metrics=False)
    try:
        assert app.reload() is True

        async def score() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
                rows = [[5.1, 3.5, 1.4, 0.2], [9.9, 9.9, 9.9, 9.9]]
                return await client.post("/invocations", json={"dataframe_split": {"columns": COLUMNS, "data": rows}})

        assert asyncio.run(score()).status_code == 200
        app.log_sink.flush()
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        app.close()
    (drift,) = [line for line in lines if line.get("event") == c.DRIFT_LOG_EVENT]
    assert set(c.DRIFT_LOG_FIELDS) <= set(drift)
    assert (drift["model_name"], drift["model_version"], drift["samples"]) == (IRIS, 1, 2.0)
    assert drift[c.DRIFT_LOG_VALUE_FIELD] > 0  # an out-of-range row shifts at least one feature


def _run_main(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    code = main(argv, env)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return code, line


def test_arguments_other_than_serve_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, line = _run_main(["--port", "1"], {}, capsys)
    assert code == 2
    assert line["event"] == "startup_failed"
    assert line["error"].startswith("arguments ['--port', '1'] are not accepted;")


def test_a_bad_version_stops_start_up_with_one_line_naming_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    env = {c.PLATFORM: c.KUBERNETES, c.MODEL_NAME: "iris", c.MODEL_VERSION: "latest", c.ENVIRONMENT: "prod",
           c.TRACKING_URI: "http://mlflow:5000"}
    code, line = _run_main(["serve"], env, capsys)
    assert code == 2
    assert line["error"] == ("SHIPWAY_MODEL_VERSION: 'latest' is not valid; set it to the pinned registry "
                             "version, a positive integer (aliases are not served)")


def test_the_listen_address_defaults_to_every_interface_and_can_be_narrowed(tmp_path: Path) -> None:
    from shipway.serving.platform import startup

    env = {c.PLATFORM: c.KUBERNETES, c.MODEL_NAME: "iris", c.MODEL_VERSION: "3", c.ENVIRONMENT: "prod",
           c.TRACKING_URI: "http://mlflow:5000"}
    assert startup(env, tmp_path).config.host == c.CONTAINER_HOST == "0.0.0.0"  # noqa: S104 - the documented default
    assert startup({**env, c.HOST: "127.0.0.1"}, tmp_path).config.host == "127.0.0.1"
    with pytest.raises(PlatformError) as bad:
        startup({**env, c.HOST: "localhost:80"}, tmp_path)
    assert str(bad.value) == ("SHIPWAY_HOST: 'localhost:80' is not valid; set it to an IP address such as "
                              "127.0.0.1, or leave it unset to listen on 0.0.0.0")
