"""The live drift gauge through real processes: the serving app (``python -m shipway.serving``) on a
registered iris model with its training baseline, scraped by Debian's Prometheus loading the rule
file ``shipway monitor rules`` generates. Shifted user traffic must move
``shipway_feature_drift_effect`` for the shifted feature only, and the platform's own traffic
(``X-Shipway-Traffic: verification|smoke|shadow``, with the API key) must not move it at all;
``ShipwayFeatureDrift`` must fire for the shifted feature and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from components.local.components import prometheus_config
from shipway_core.config import SloSettings
from shipway_core.observability import drift as drift_decision
from shipway_core.observability.rules import AlertTimings, RuleOptions, generate_rules, render_yaml
from tests.integration.conftest import free_port_block

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
MODEL = "iris-classifier"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
KEY = "drift-scrape-key-0123456789"
STARTUP_SECONDS = 240  # the first model load imports MLflow and sklearn: slow on a busy 2-core machine
SHIFTED = "petal_length"
# What verification traffic shifts (hard): had it been counted, this feature would cross its threshold.
PROBED = "sepal_width"


@dataclass
class Running:
    app: str
    prometheus: str
    iris: Any  # the training frame
    log: Path


def _wait(predicate: Any, seconds: float, what: str, logs: tuple[Path, ...] = ()) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got = predicate()
        except httpx.HTTPError:
            got = None
        if got:
            return got
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}\n{tails}")


def _register_iris(root: Path) -> tuple[str, Any]:
    """A sqlite MLflow registry holding iris-classifier v1 with the baseline profile training writes."""
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipway.drift.profile import build_profile

    uri = f"sqlite:///{root / 'mlflow.db'}"
    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = COLUMNS
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        experiment = mlflow.create_experiment("drift-scrape", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            mlflow.sklearn.log_model(LogisticRegression(max_iter=300).fit(x, y), name="model",
                                     input_example=x.head(2), registered_model_name=MODEL,
                                     pip_requirements=["scikit-learn"])
            profile = root / "baseline_profile.json"
            profile.write_text(json.dumps(build_profile(x)))
            mlflow.log_artifact(str(profile))
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    return uri, x


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed; run `make setup` (Debian package prometheus)")
    tmp = tmp_path_factory.mktemp("drift-scrape")
    uri, iris = _register_iris(tmp)
    (tmp / "pin.json").write_text(json.dumps({"model_name": MODEL, "model_version": 1, "tracking_uri": uri}))
    (tmp / "api-key").write_text(KEY + "\n")
    (tmp / "api-key").chmod(0o600)
    base = free_port_block(2)
    app_port, prom_port = base, base + 1
    # The rule file `shipway monitor rules` writes for this stack, with a short `for:` (as
    # `--drift-for 5s`) so the test sees the alert fire rather than wait a minute.
    rules = generate_rules(SloSettings(), [MODEL], "local", RuleOptions(timings=AlertTimings(drift="5s")))
    (tmp / "rules.yml").write_text(render_yaml(rules))
    (tmp / "prometheus.yml").write_text(prometheus_config({MODEL: f"http://127.0.0.1:{app_port}"}).replace(
        "__SELF__", f"127.0.0.1:{prom_port}"))
    check = subprocess.run([str(Path(PROMETHEUS).with_name("promtool")), "check", "rules", str(tmp / "rules.yml")],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    procs: list[subprocess.Popen[bytes]] = []
    app_log, prom_log = tmp / "serving.log", tmp / "prometheus.log"
    try:
        with app_log.open("wb") as out:
            procs.append(subprocess.Popen(  # noqa: S603 - fixed argv
                [sys.executable, "-m", "shipway.serving", "--pin-file", str(tmp / "pin.json"), "--host", "127.0.0.1",
                 "--port", str(app_port), "--api-key-file", str(tmp / "api-key"), "--environment", "local"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True))
        with prom_log.open("wb") as out:
            procs.append(subprocess.Popen(  # noqa: S603 - fixed argv
                [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=out, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True))
        app, prom = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{prom_port}"
        _wait(lambda: httpx.get(f"{app}/ready", timeout=5).status_code == 200, STARTUP_SECONDS, "the app's /ready",
              (app_log,))
        _wait(lambda: httpx.get(f"{prom}/-/ready", timeout=5).status_code == 200, 60, "Prometheus", (prom_log,))
        yield Running(app, prom, iris, app_log)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _score(app: str, rows: np.ndarray, headers: dict[str, str], batch: int = 50) -> None:
    with httpx.Client(base_url=app, headers={"X-API-Key": KEY, **headers}, timeout=30) as client:
        for i in range(0, len(rows), batch):
            body = {"dataframe_split": {"columns": COLUMNS, "data": rows[i:i + batch].round(3).tolist()}}
            response = client.post("/invocations", json=body)
            assert response.status_code == 200, response.text


def _query(prom: str, expr: str) -> dict[str, float]:
    """Instant query -> {feature/statistic (or alertstate): value}."""
    doc = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert doc["status"] == "success", doc
    return {"/".join(r["metric"].get(k, "") for k in ("feature", "statistic", "alertstate") if r["metric"].get(k)):
            float(r["value"][1]) for r in doc["data"]["result"]}


def _effects(prom: str) -> dict[str, float]:
    return _query(prom, f'shipway_feature_drift_effect{{job="shipway-endpoints",model="{MODEL}",version="1"}}')


def _samples(prom: str) -> float | None:
    got = _query(prom, f'shipway_drift_samples{{job="shipway-endpoints",model="{MODEL}",version="1"}}')
    return next(iter(got.values()), None)


def _sample_rows(iris: Any, n: int, seed: int) -> np.ndarray:
    return iris.sample(n, replace=True, random_state=seed).to_numpy(dtype=float, copy=True)


def test_platform_traffic_does_not_move_the_scraped_gauge(running: Running) -> None:
    """Verification, smoke and shadow requests, however far off the baseline, stay out of the window."""
    probe = _sample_rows(running.iris, 600, seed=1)
    probe[:, COLUMNS.index(PROBED)] += 5 * running.iris[PROBED].std()
    for traffic in ("verification", "smoke", "shadow"):
        _score(running.app, probe, {"X-Shipway-Traffic": traffic})
    # Answered, and seen by Prometheus as platform traffic (so the scrape after them is in)...
    served = _wait(lambda: _query(running.prometheus, f'sum(shipway_requests_total{{model="{MODEL}"}})'),
                   30, "the request counters in Prometheus")
    assert sum(served.values()) >= 3 * 600 / 50
    time.sleep(6)  # one more scrape interval (5 s) after the last probe
    assert _samples(running.prometheus) == 0.0
    effects = _effects(running.prometheus)
    assert effects, "the gauge is not scraped"
    assert set(effects.values()) == {0.0}, effects
    assert _query(running.prometheus, 'ALERTS{alertname="ShipwayFeatureDrift"}') == {}


def test_shifted_user_traffic_moves_only_the_shifted_feature_and_fires_the_alert_for_it(running: Running) -> None:
    threshold = drift_decision.DEFAULT_THRESHOLDS["wasserstein"]
    user = _sample_rows(running.iris, 1000, seed=2)
    user[:, COLUMNS.index(SHIFTED)] += 0.5 * running.iris[SHIFTED].std()  # a real shift: 0.5 sd
    # Platform traffic interleaved with the user's: still not counted.
    probe = _sample_rows(running.iris, 500, seed=3)
    probe[:, COLUMNS.index(PROBED)] += 5 * running.iris[PROBED].std()
    _score(running.app, user[:500], {})
    _score(running.app, probe, {"X-Shipway-Traffic": "verification"})
    _score(running.app, user[500:], {})
    _wait(lambda: _samples(running.prometheus) == 1000.0, 60, "1000 user samples in the scraped window",
          (running.log,))
    effects = _wait(lambda: (e := _effects(running.prometheus)).get(f"{SHIFTED}/wasserstein", 0) > threshold and e,
                    30, f"{SHIFTED}'s scraped effect above {threshold}", (running.log,))
    print("\nscraped effects:", json.dumps(effects, indent=1, sort_keys=True))
    assert effects[f"{SHIFTED}/wasserstein"] > threshold
    for feature in COLUMNS:
        if feature != SHIFTED:
            assert effects[f"{feature}/wasserstein"] < threshold, (feature, effects)
        assert effects[f"{feature}/null_rate"] == 0.0
    # The verification rows moved sepal_width by 5 sd: counted, they would be far above threshold.
    assert effects[f"{PROBED}/wasserstein"] < threshold
    # The generated ShipwayFeatureDrift rule, evaluated by this Prometheus on the scraped series.
    alerts = _wait(lambda: (a := _query(running.prometheus, 'ALERTS{alertname="ShipwayFeatureDrift"}'))
                   and "firing" in "".join(a) and a, 60, "ShipwayFeatureDrift firing", (running.log,))
    print("alerts:", alerts)
    assert alerts == {f"{SHIFTED}/wasserstein/firing": 1.0}
