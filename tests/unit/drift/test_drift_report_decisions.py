"""The drift report says what decided: the rule's signals, not every signal that fired.

Under the default ``effect`` rule PSI decides nothing, yet a shift of the null rate (which the
rule does decide on) moves PSI too. The report, the HTML page and the CLI table used to list PSI
among the reasons, rank features by PSI and chart PSI against 0.2, so a reader took PSI for the
cause. Each feature now carries ``decided_by`` (the rule's signals) apart from the other
``reasons`` that fired, and everything is ranked by effect size ÷ threshold.
"""

from __future__ import annotations

import re
from html import unescape

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from shipway.commands.monitor import app
from shipway.drift.html import render_html
from shipway.drift.report import DriftThresholds, compute_drift

N = 20_000


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"shifted": rng.normal(0, 1, N), "nulls": rng.normal(0, 1, N), "tiny": rng.normal(0, 1, N),
                        "region": rng.choice(["eu", "us", "apac"], N, p=[0.5, 0.3, 0.2])})
    cur = pd.DataFrame({"shifted": rng.normal(0.5, 1, N), "nulls": rng.normal(0, 1, N),
                        "tiny": rng.normal(0.02, 1, N),
                        "region": rng.choice(["eu", "us", "apac"], N, p=[0.35, 0.45, 0.2])})
    cur.loc[rng.random(N) < 0.06, "nulls"] = np.nan  # a 6-point jump of the null rate
    return ref, cur


def test_each_feature_says_which_signals_decided_and_psi_decides_nothing(frames) -> None:
    report = compute_drift(*frames)
    by = {f.name: f for f in report.features}
    assert by["nulls"].drifted and by["nulls"].decided_by == ("nulls",)
    assert "psi" in by["nulls"].reasons  # PSI fired (the null slot moved) but is context only
    assert by["shifted"].decided_by == ("effect", "test")
    assert by["region"].decided_by == ("effect", "test")
    assert not by["tiny"].drifted and by["tiny"].decided_by == ()
    assert all("psi" not in f.decided_by for f in report.features)


def test_features_rank_by_how_far_past_their_threshold_not_by_psi(frames) -> None:
    report = compute_drift(*frames)
    by = {f.name: f for f in report.features}
    assert by["nulls"].psi > by["shifted"].psi  # PSI would have put the null-rate feature first
    assert report.drifted_features == ["shifted", "region", "nulls"]  # 5.0×, 2.4×, 2.0× their thresholds
    assert by["shifted"].effect_ratio == pytest.approx(by["shifted"].effect / 0.1)
    assert report.to_dict()["features"][0]["effect_ratio"] == pytest.approx(by["shifted"].effect_ratio)


def test_other_rules_still_decide_on_their_own_signals(frames) -> None:
    report = compute_drift(*frames, thresholds=DriftThresholds(rule="psi"))
    assert {f.name: f.decided_by for f in report.features if f.drifted} == {"shifted": ("psi",), "nulls": ("psi",)}


def test_the_html_report_charts_effect_ratios_and_names_only_deciding_signals_as_causes(frames) -> None:
    page = render_html(compute_drift(*frames))
    assert "PSI by feature" not in page and "Effect size ÷ threshold by feature" in page
    ranking = re.search(r'<svg class="plot effect-ranking".*?</svg>', page).group(0)
    assert re.findall(r"<title>(\w+):", ranking) == ["shifted", "region", "nulls", "tiny"]
    # the null-rate feature is drawn by the signal that decided, its change against the 0.03 threshold
    assert re.search(r"null rate change 0\.0[5-7]\d* / 0\.03", ranking)
    status = {m[0]: unescape(re.sub(r"<[^>]+>", "", m[1])) for m in
              re.findall(r'<tr data-feature="(\w+)".*?<td class="status">(.*?)</td></tr>', page)}
    assert status["nulls"] == "drift: nulls (also: psi)"
    assert status["shifted"] == "drift: effect, test (also: psi)"
    assert status["tiny"].startswith("ok")


def test_the_cli_table_leads_with_the_effect_size(frames, tmp_path) -> None:
    ref, cur = frames
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur.to_csv(tmp_path / "cur.csv", index=False)
    result = CliRunner().invoke(app, ["drift", str(tmp_path / "cur.csv"), "--reference", str(tmp_path / "ref.csv")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "kind" in line)
    assert header.index("effect vs threshold") < header.index("PSI (context)")
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows][:3] == ["shifted", "region", "nulls"]
    nulls = next(r for r in rows if r.split("│")[1].strip() == "nulls")
    assert "DRIFT nulls (also psi)" in nulls
