"""`shipway monitor` commands end to end through Typer's runner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from shipway.commands.monitor import app
from shipway.drift.profile import build_profile, save_profile

runner = CliRunner()


def _plain(output: str) -> str:
    """Typer's error box without its frame characters and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 3000), "y": rng.normal(0, 1, 3000), "c": rng.choice(["a", "b"], 3000)})
    cur = pd.DataFrame({"x": rng.normal(1.5, 1, 1000), "y": rng.normal(0, 1, 1000), "c": rng.choice(["a", "b"], 1000)})
    return ref, cur


def _request_log(path: Path, cur: pd.DataFrame, model: str = "iris") -> Path:
    with path.open("w") as fh:
        for i in range(0, len(cur), 10):
            chunk = cur.iloc[i : i + 10]
            fh.write(
                json.dumps(
                    {
                        "ts": f"2026-01-01T10:{i // 60:02d}:00Z",
                        "request_id": f"r{i}",
                        "model": model,
                        "version": "2",
                        "inputs": {k: chunk[k].tolist() for k in chunk.columns},
                        "predictions": [0] * len(chunk),
                    }
                )
                + "\n"
            )
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ref, cur = _frames()
    ref.to_csv(tmp_path / "ref.csv", index=False)
    return {
        "baseline": save_profile(build_profile(ref), tmp_path / "baseline_profile.json"),
        "reference": tmp_path / "ref.csv",
        "log": _request_log(tmp_path / "requests.jsonl", cur),
        "dir": tmp_path,
    }


def test_drift_from_request_log_writes_json_and_self_contained_html(files) -> None:
    html, report = files["dir"] / "drift.html", files["dir"] / "drift.json"
    result = runner.invoke(
        app,
        [
            "drift",
            str(files["log"]),
            "--baseline",
            str(files["baseline"]),
            "--output",
            "json",
            "--html",
            str(html),
            "--report-json",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["drifted_features"] == ["x"]
    assert doc["current_rows"] == 1000
    assert json.loads(report.read_text())["drifted_features"] == ["x"]
    page = html.read_text()
    assert page.count("<svg") == 1 + 3  # effect-size ranking + one distribution per feature
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script src" not in page and "default-src 'none'" in page


def test_fail_on_drift_exits_1_and_raw_reference_works(files) -> None:
    result = runner.invoke(app, ["drift", str(files["log"]), "--reference", str(files["reference"]), "--fail-on-drift"])
    assert result.exit_code == 1
    assert "DRIFT" in result.stdout and "x" in result.stdout


def test_drift_window_filter_by_model_can_leave_nothing(files) -> None:
    result = runner.invoke(app, ["drift", str(files["log"]), "--baseline", str(files["baseline"]), "--model", "other"])
    assert result.exit_code == 2
    assert "no rows in the selected window" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output", "yaml"], "'yaml' is not valid; allowed: json, table"),
        (["--rule", "most"], "rule: 'most' is not valid; allowed: effect, any, all, psi, test"),
        (["--since", "yesterday"], "'yesterday' is not an ISO-8601 time"),
    ],
)
def test_drift_bad_parameters_are_named(files, args, message) -> None:
    result = runner.invoke(app, ["drift", str(files["log"]), "--baseline", str(files["baseline"]), *args])
    assert result.exit_code == 2
    assert message in _plain(result.output)


def test_drift_needs_exactly_one_reference(files) -> None:
    result = runner.invoke(app, ["drift", str(files["log"])])
    assert result.exit_code == 2
    assert "give exactly one of --baseline PATH, --reference PATH" in _plain(result.output)


def test_quality_command_writes_textfile(files) -> None:
    labels = files["dir"] / "labels.csv"
    labels.write_text("request_id,label\nr0,0\nr10,1\n")
    prom = files["dir"] / "quality.prom"
    result = runner.invoke(
        app,
        [
            "quality",
            str(files["log"]),
            "--labels",
            str(labels),
            "--output",
            "json",
            "--textfile",
            str(prom),
            "--task",
            "classification",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["join"]["joined"] == 2 and doc["join"]["unlabeled"] == 998
    assert doc["latest"] == [{"model": "iris", "version": "2", "metric": "accuracy", "value": 0.5, "samples": 2}]
    assert 'shipway_model_quality{model="iris",version="2",metric="accuracy"} 0.5' in prom.read_text()


def _stack_file(tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(
        "config:\n"
        "  shipway:cloud: local\n  shipway:environment: dev\n  shipway:owner: ml-team\n"
        "  shipway:costCenter: cc-1\n  shipway:dataClassification: internal\n"
        "  shipway:models:\n    iris:\n      version: 3\n"
        "  shipway:slo:\n    availability: 0.999\n    driftWasserstein: 0.3\n"
        "  shipway:gates:\n    minMetrics:\n      accuracy: 0.9\n"
    )
    return path


def test_rules_and_dashboards_commands_follow_the_stack(tmp_path: Path) -> None:
    stack = _stack_file(tmp_path)
    result = runner.invoke(app, ["rules", "--stack", str(stack), "--drift-for", "30s"])
    assert result.exit_code == 0, result.output
    assert "model:shipway_request_errors:ratio_rate1h > 0.0144" in result.stdout  # 14.4 x (1 - 0.999)
    # ShipwayFeatureDrift decides on the effect size, with the stack's threshold
    assert ('(shipway_feature_drift_effect{job="shipway-endpoints",model=~"iris",statistic="wasserstein"}) > 0.3'
            in result.stdout)
    assert "for: 30s" in result.stdout and "< 0.9" in result.stdout
    out = tmp_path / "dash"
    result = runner.invoke(app, ["dashboards", "--stack", str(stack), "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["shipway-dev-iris.json", "shipway-dev-platform.json"]
    bad = runner.invoke(app, ["rules", "--stack", str(stack), "--drift-for", "soon"])
    assert bad.exit_code == 2 and "timings.drift: 'soon' is not valid" in _plain(bad.output)
