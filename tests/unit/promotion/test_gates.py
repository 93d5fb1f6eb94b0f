"""Quality gates: every pass and fail case, with the exact message a reviewer reads.

The registry-backed cases score real sklearn models loaded with mlflow.pyfunc; the pure
cases (thresholds, signatures, PSI, nulls, ranges) use small hand-made inputs.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from shipway import gates
from shipway.gates import GateInputs, ModelUnderTest
from shipway.lazymodel import LazyModel as _LazyModel
from shipway.promotion import load_golden
from shipway.registry import MAX_TAG_VALUE, truncate_tag
from shipway_core.config import GateSettings

from .conftest import MODEL

NO_METRICS = GateSettings(min_metrics={})


def registry_inputs(
    registry, candidate: int, current: int | None, settings: GateSettings = NO_METRICS
) -> GateInputs:
    info = registry.version(MODEL, candidate)
    frame, source = load_golden(registry, info, None)
    cur = _LazyModel(registry, registry.version(MODEL, current)).under_test() if current else None
    return GateInputs(
        env="dev",
        settings=settings,
        candidate=_LazyModel(registry, info).under_test(),
        current=cur,
        golden=frame,
        golden_source=source,
        baseline=registry.load_json(info, gates.BASELINE_ARTIFACT),
    )


def sig(*cols: tuple[str, str, bool]) -> ModelSignature:
    return ModelSignature(inputs=Schema([ColSpec(t, n, required=r) for n, t, r in cols]))


def fake(version: int, *, metrics=None, signature=None, predict=None) -> ModelUnderTest:
    return ModelUnderTest(
        name=MODEL,
        version=version,
        run_id="run-1",
        metrics=metrics or {},
        signature=signature,
        predict=predict or (lambda f: np.zeros(len(f), dtype=int)),
    )


def pure_inputs(
    candidate: ModelUnderTest,
    current: ModelUnderTest | None = None,
    *,
    settings: GateSettings = NO_METRICS,
    golden: pd.DataFrame | None = None,
    baseline=None,
) -> GateInputs:
    return GateInputs(
        env="dev",
        settings=settings,
        candidate=candidate,
        current=current,
        golden=golden,
        golden_source="golden.csv of version 2",
        baseline=baseline,
    )


# ------------------------------------------------------- real models from the registry


def test_good_candidate_passes_every_gate(registry, iris_registry):
    report = gates.run_gates(registry_inputs(registry, iris_registry.versions["good2"], 1, GateSettings()))
    assert report.passed
    assert [r.message for r in report.results] == [
        "gate 'metric-thresholds' passed: accuracy 1.0000 >= 0.8000",
        "gate 'no-regression' passed: golden accuracy 1.0000 vs current 1.0000 "
        "(drop 0.0000 <= allowed 0.0100)",
        "gate 'signature-compatibility' passed: version 4 accepts every input of version 1",
        "gate 'data-consistency' passed: 4 features match the baseline (max PSI 0.0027 <= allowed 0.2500)",
    ]


def test_shuffled_label_model_fails_no_regression_scored_on_golden_set(registry, iris_registry):
    result = gates.regression_gate(registry_inputs(registry, iris_registry.versions["shuffled"], 1))
    assert not result.passed
    assert result.message == (
        "gate 'no-regression' failed: golden accuracy 0.7667 vs current 1.0000 (drop 0.2333 > allowed 0.0100)"
    )
    assert result.evidence["rows"] == 30
    assert result.evidence["current_version"] == 1


def test_shuffled_label_model_fails_metric_threshold_from_its_run(registry, iris_registry):
    result = gates.metric_gate(
        registry_inputs(
            registry, iris_registry.versions["shuffled"], 1, GateSettings(min_metrics={"accuracy": 0.9})
        )
    )
    assert result.message == "gate 'metric-thresholds' failed: accuracy 0.7667 < required minimum 0.9000"


def test_narrower_signature_fails_compatibility_and_current_cannot_score_its_golden(registry, iris_registry):
    report = gates.run_gates(registry_inputs(registry, iris_registry.versions["narrow"], 1))
    by_gate = {r.gate: r for r in report.results}
    assert by_gate["signature-compatibility"].message == (
        "gate 'signature-compatibility' failed: input 'petal width (cm)' (double) of version 1 is missing "
        "from version 3"
    )
    assert by_gate["no-regression"].message.startswith(
        "gate 'no-regression' failed: current version 1 cannot score the golden dataset: MlflowException: "
    )
    assert [r.gate for r in report.failures] == ["no-regression", "signature-compatibility"]


def test_first_version_in_an_env_has_nothing_to_regress_against(registry):
    report = gates.run_gates(registry_inputs(registry, 1, None))
    assert report.passed
    assert report.results[1].message == (
        "gate 'no-regression' passed: golden accuracy 1.0000; no version pinned in dev to compare with"
    )
    assert report.results[2].message == (
        "gate 'signature-compatibility' passed: no version pinned in dev to compare with"
    )


def test_report_tags_carry_each_verdict_and_the_evidence(registry, iris_registry):
    report = gates.run_gates(registry_inputs(registry, iris_registry.versions["shuffled"], 1))
    tags = report.tags()
    assert tags["shipway.gates.no-regression"] == "fail"
    assert tags["shipway.gates.metric-thresholds"] == "pass"
    assert tags["shipway.gates.passed"] == "false"
    assert tags["shipway.gates.env"] == "dev"
    evidence = json.loads(tags["shipway.gates.evidence"])
    assert evidence["gates"]["no-regression"]["drop"] == pytest.approx(0.2333, abs=1e-4)


# ------------------------------------------------------------------ metric thresholds


@pytest.mark.parametrize(
    ("metrics", "minimums", "passed", "message"),
    [
        (
            {"accuracy": 0.95},
            {"accuracy": 0.9},
            True,
            "gate 'metric-thresholds' passed: accuracy 0.9500 >= 0.9000",
        ),
        (
            {"accuracy": 0.9},
            {"accuracy": 0.9},
            True,
            "gate 'metric-thresholds' passed: accuracy 0.9000 >= 0.9000",
        ),
        (
            {"accuracy": 0.5},
            {"accuracy": 0.8},
            False,
            "gate 'metric-thresholds' failed: accuracy 0.5000 < required minimum 0.8000",
        ),
        (
            {"accuracy": 0.95},
            {"accuracy": 0.8, "f1": 0.7},
            False,
            "gate 'metric-thresholds' failed: metric 'f1' is not logged on run run-1 of version 2 "
            "(required minimum 0.7000)",
        ),
        ({}, {}, True, "gate 'metric-thresholds' passed: no minimum metrics configured"),
    ],
)
def test_metric_gate(metrics, minimums, passed, message):
    result = gates.metric_gate(
        pure_inputs(fake(2, metrics=metrics), settings=GateSettings(min_metrics=minimums))
    )
    assert (result.passed, result.message) == (passed, message)


# ------------------------------------------------------------------------- regression

GOLDEN = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "label": [0, 1, 1, 0]})


def test_regression_within_allowance_passes_and_beyond_fails():
    perfect = fake(1, predict=lambda f: np.array([0, 1, 1, 0]))
    three_of_four = fake(2, predict=lambda f: np.array([0, 1, 1, 1]))
    ok = gates.regression_gate(
        pure_inputs(
            three_of_four, perfect, golden=GOLDEN, settings=GateSettings(min_metrics={}, max_regression=0.25)
        )
    )
    assert ok.message == (
        "gate 'no-regression' passed: golden accuracy 0.7500 vs current 1.0000 "
        "(drop 0.2500 <= allowed 0.2500)"
    )
    bad = gates.regression_gate(pure_inputs(three_of_four, perfect, golden=GOLDEN))
    assert bad.message == (
        "gate 'no-regression' failed: golden accuracy 0.7500 vs current 1.0000 (drop 0.2500 > allowed 0.0100)"
    )


@pytest.mark.parametrize(
    ("golden", "message"),
    [
        (
            None,
            "gate 'no-regression' failed: no golden dataset (golden.csv of version 2); pass --golden PATH",
        ),
        (
            GOLDEN.drop(columns=["label"]),
            "gate 'no-regression' failed: golden dataset golden.csv of version 2 has no 'label' column",
        ),
        (GOLDEN.iloc[0:0], "gate 'no-regression' failed: golden dataset golden.csv of version 2 has no rows"),
    ],
)
def test_regression_needs_a_labelled_golden_set(golden, message):
    assert gates.regression_gate(pure_inputs(fake(2), fake(1), golden=golden)).message == message


# Issue 18, honest gates: the candidate predicts the label from x perfectly only on the easy rows
# it ships (x <= 2); on the champion's set it gets half right, the champion all of them.
EASY = pd.DataFrame({"x": [1.0, 2.0], "label": [1, 1]})
CHAMPION_SET = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "label": [1, 1, 0, 0]})
_easy_model = fake(2, predict=lambda f: np.ones(len(f), dtype=int))
_champion = fake(1, predict=lambda f: (f["x"].to_numpy() <= 2).astype(int))


def _honest(golden: pd.DataFrame, source: str, owner: str | None) -> GateInputs:
    return GateInputs(
        env="prod",
        settings=NO_METRICS,
        candidate=_easy_model,
        current=_champion,
        golden=golden,
        golden_source=source,
        baseline=None,
        golden_owner=owner,
    )


def test_candidate_scoring_only_on_its_own_easy_set_fails_when_a_champion_exists():
    result = gates.regression_gate(_honest(EASY, "golden.csv of version 2", "candidate"))
    assert not result.passed
    assert result.message == (
        "gate 'no-regression' failed: evaluation set golden.csv of version 2 belongs to the candidate; "
        "score both versions on the environment's or version 1's set (an easy set of its own proves nothing)"
    )
    assert result.evidence["golden_owner"] == "candidate"


def test_both_versions_are_scored_on_the_champions_set_and_its_hash_is_evidence():
    frame, source, owner = gates.select_evaluation_set(
        None, (CHAMPION_SET, "golden.csv of version 1"), (EASY, "golden.csv of version 2")
    )
    assert (source, owner) == ("golden.csv of version 1", "champion")
    result = gates.regression_gate(_honest(frame, source, owner))
    assert result.message == (
        "gate 'no-regression' failed: golden accuracy 0.5000 vs current 1.0000 (drop 0.5000 > allowed 0.0100)"
    )
    assert result.evidence["golden"] == "golden.csv of version 1"
    assert result.evidence["golden_owner"] == "champion"
    assert result.evidence["golden_sha256"] == gates.dataset_sha256(CHAMPION_SET)
    assert gates.dataset_sha256(CHAMPION_SET) != gates.dataset_sha256(CHAMPION_SET.assign(label=[1, 1, 0, 1]))
    assert json.loads(json.dumps(result.evidence))["golden_sha256"] == result.evidence["golden_sha256"]


def test_the_environments_set_wins_over_the_champions_and_the_candidates():
    env_set = (CHAMPION_SET.iloc[:3], "stacks/eval/prod.csv")
    frame, source, owner = gates.select_evaluation_set(
        env_set, (CHAMPION_SET, "golden.csv of version 1"), (EASY, "golden.csv of version 2")
    )
    assert (source, owner, len(frame)) == ("stacks/eval/prod.csv", "environment", 3)
    # A first promotion has no champion: the candidate's own set is all there is, and it is allowed.
    frame, source, owner = gates.select_evaluation_set(None, None, (EASY, "golden.csv of version 2"))
    assert owner == "candidate"
    first = gates.regression_gate(
        GateInputs("prod", NO_METRICS, _easy_model, None, frame, source, None, golden_owner=owner)
    )
    assert first.passed and first.evidence["golden_owner"] == "candidate"
    assert gates.select_evaluation_set(None, None, None)[0] is None


def test_unknown_evaluation_owner_is_named():
    with pytest.raises(ValueError, match="golden_owner: 'ops' is not valid; allowed: environment, champion, candidate"):
        gates.regression_gate(_honest(CHAMPION_SET, "x.csv", "ops"))


def test_candidate_that_cannot_score_fails_with_the_error():
    def broken(_frame):
        raise ValueError("expected 5 features\nsecond line")

    result = gates.regression_gate(pure_inputs(fake(2, predict=broken), fake(1), golden=GOLDEN))
    assert result.message == (
        "gate 'no-regression' failed: version 2 cannot score the golden dataset: "
        "ValueError: expected 5 features"
    )


# ---------------------------------------------------------------------- signatures

BASE_SIG = sig(("a", "double", True), ("b", "string", True))


@pytest.mark.parametrize(
    ("candidate", "problems"),
    [
        (BASE_SIG, []),
        (sig(("a", "double", True), ("b", "string", True), ("note", "string", False)), []),
        (sig(("b", "string", True), ("a", "double", True)), []),
        (sig(("a", "double", True)), ["input 'b' (string) of version 1 is missing from version 2"]),
        (
            sig(("a", "long", True), ("b", "string", True)),
            ["input 'a' is double in version 1 but long in version 2"],
        ),
        (
            sig(("a", "double", True), ("b", "string", True), ("c", "double", True)),
            ["version 2 adds required input 'c' (double) that callers of version 1 do not send"],
        ),
    ],
)
def test_signature_compatibility_table(candidate, problems):
    assert gates.signature_problems(BASE_SIG, candidate, 1, 2) == problems
    result = gates.signature_gate(pure_inputs(fake(2, signature=candidate), fake(1, signature=BASE_SIG)))
    assert result.passed is (not problems)
    if problems:
        assert result.message == "gate 'signature-compatibility' failed: " + "; ".join(problems)


def test_missing_signatures_fail():
    no_sig = gates.signature_gate(pure_inputs(fake(2), fake(1, signature=BASE_SIG)))
    assert no_sig.message == "gate 'signature-compatibility' failed: version 2 has no input signature"
    cur_no_sig = gates.signature_gate(pure_inputs(fake(2, signature=BASE_SIG), fake(1)))
    assert cur_no_sig.message == (
        "gate 'signature-compatibility' failed: current version 1 has no input signature to compare with"
    )


# ----------------------------------------------------------------- data consistency

TRAIN = pd.DataFrame({"x": np.linspace(0.0, 10.0, 101), "c": ["red", "blue"] * 50 + ["red"]})
BASELINE = gates.build_profile(TRAIN, bins=5)


def golden_like(**changes) -> pd.DataFrame:
    frame = pd.DataFrame({"x": np.linspace(0.0, 10.0, 41), "c": ["red", "blue"] * 20 + ["red"], "label": 0})
    for key, value in changes.items():
        frame[key] = value
    return frame


def consistency(golden: pd.DataFrame, baseline=BASELINE, **settings) -> gates.GateResult:
    return gates.consistency_gate(
        pure_inputs(
            fake(2), golden=golden, baseline=baseline, settings=GateSettings(min_metrics={}, **settings)
        )
    )


def test_profile_format_matches_the_documented_shape():
    assert BASELINE["format"] == 1 and BASELINE["n_rows"] == 101
    x = BASELINE["features"]["x"]
    assert x["kind"] == "numeric" and x["edges"][0] is None and x["edges"][-1] is None
    assert len(x["fractions"]) == len(x["edges"]) - 1 and sum(x["fractions"]) == pytest.approx(1.0)
    assert (x["min"], x["max"], x["null_rate"]) == (0.0, 10.0, 0.0)
    assert BASELINE["features"]["c"] == {
        "kind": "categorical",
        "null_rate": 0.0,
        "fractions": {"red": 51 / 101, "blue": 50 / 101},
    }


def test_matching_data_passes():
    result = consistency(golden_like())
    assert result.passed, result.message
    assert result.message.startswith(
        "gate 'data-consistency' passed: 2 features match the baseline (max PSI "
    )


def test_shifted_distribution_fails_on_psi():
    shifted = np.concatenate([np.full(35, 9.5), np.linspace(0, 10, 6)])
    result = consistency(golden_like(x=shifted))
    psi_value = result.evidence["features"]["x"]["psi"]
    assert (
        result.message == f"gate 'data-consistency' failed: feature 'x' PSI {psi_value:.4f} > allowed 0.2500"
    )
    assert psi_value > 0.25


def test_null_rate_jump_fails():
    x = np.linspace(0.0, 10.0, 41)
    x[::4] = np.nan  # 11 of 41 null
    result = consistency(golden_like(x=x), max_psi=10.0)
    assert result.message == (
        "gate 'data-consistency' failed: feature 'x' null rate 0.2683 vs baseline 0.0000 "
        "(delta 0.2683 > allowed 0.0500)"
    )


def test_values_beyond_the_training_range_fail():
    x = np.linspace(0.0, 10.0, 41)
    x[:3] = [20.0, 30.0, -5.0]
    result = consistency(golden_like(x=x), max_psi=10.0)
    assert result.message == (
        "gate 'data-consistency' failed: feature 'x' has 3 of 41 golden values outside "
        "the training range [0.0000, 10.0000] (+10% margin)"
    )


def test_values_just_beyond_the_range_are_within_the_margin():
    x = np.linspace(0.0, 10.0, 41)
    x[0] = 10.9
    assert consistency(golden_like(x=x), max_psi=10.0).passed


def test_missing_feature_and_kind_change_fail():
    missing = consistency(golden_like().drop(columns=["c"]))
    assert missing.message == (
        "gate 'data-consistency' failed: feature 'c' is in the baseline but missing from the golden data"
    )
    kind = consistency(golden_like(c=1.0))
    assert kind.message == (
        "gate 'data-consistency' failed: feature 'c' is categorical in the baseline but "
        "numeric in the golden data"
    )


def test_unseen_category_raises_categorical_psi():
    result = consistency(golden_like(c=["green"] * 41))
    assert not result.passed
    assert result.message.startswith("gate 'data-consistency' failed: feature 'c' PSI ")


def test_missing_or_malformed_baseline_fails():
    assert consistency(golden_like(), baseline=None).message == (
        "gate 'data-consistency' failed: version 2 has no baseline_profile.json artifact"
    )
    assert consistency(golden_like(), baseline={"format": 2, "features": {}}).message == (
        "gate 'data-consistency' failed: baseline_profile.json of version 2 is not a format-1 profile with a "
        "'features' mapping"
    )


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=2, max_size=12))
def test_psi_is_zero_against_itself_and_never_negative(weights):
    expected = np.array(weights) / sum(weights)
    assert gates.psi(expected, expected) == pytest.approx(0.0, abs=1e-12)
    assert gates.psi(expected, expected[::-1]) >= 0.0


def test_numeric_fractions_use_left_closed_bins_with_open_ends():
    edges = [None, 1.0, 2.0, None]
    assert gates.numeric_fractions(pd.Series([0.5, 1.0, 1.5, 2.0, 9.0, np.nan]), edges).tolist() == [
        0.2,
        0.4,
        0.4,
    ]


def test_evidence_tag_is_cut_to_the_registry_limit():
    long = "x" * (MAX_TAG_VALUE + 100)
    cut = truncate_tag(long)
    assert len(cut) == MAX_TAG_VALUE and cut.endswith("...[truncated]")
    assert truncate_tag("short") == "short"


def test_small_golden_sets_compare_merged_bins():
    import numpy as np

    from shipway.gates import coarsen_bins

    expected = np.full(10, 0.1)
    actual = np.array([0.2, 0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    e, a, k = coarsen_bins(expected, actual, n_rows=45)  # 4.5 rows per bin: merged until >= 10
    assert k == 3
    assert e.tolist() == pytest.approx([0.3, 0.3, 0.4])
    assert a.tolist() == pytest.approx([0.3, 0.3, 0.4])
    e, a, k = coarsen_bins(expected, actual, n_rows=10_000)  # plenty of rows: bins untouched
    assert k == 10 and a.tolist() == actual.tolist()


# ------------------------------------------------------------------- non-functional evidence


@pytest.mark.parametrize(
    ("tags", "passed", "message"),
    [
        ({}, False, "gate 'non-functional' failed: load: no evidence; run `shipway test load MODEL --version N`; "
                    "security: no evidence; run `shipway test security MODEL --version N`"),
        ({"shipway.nft.load": '{"passed": true}', "shipway.nft.security": '{"passed": false}'}, False,
         "gate 'non-functional' failed: security: the last run failed (tag shipway.nft.security)"),
        ({"shipway.nft.load": '{"passed": true}', "shipway.nft.security": '{"passed": true}'}, True,
         "gate 'non-functional' passed: load, security evidence passed on version 3"),
    ],
)
def test_required_non_functional_evidence_is_a_gate(tags, passed, message):
    settings = GateSettings(min_metrics={}, require_nonfunctional=("load", "security"))
    cand = ModelUnderTest(MODEL, 3, None, {}, None, lambda frame: [0] * len(frame), tags=tags)
    report = gates.run_gates(pure_inputs(cand, settings=settings))
    result = {r.gate: r for r in report.results}["non-functional"]
    assert (result.passed, result.message) == (passed, message)


def test_no_non_functional_gate_unless_the_environment_requires_one():
    cand = ModelUnderTest(MODEL, 3, None, {}, None, lambda frame: [0] * len(frame))
    assert "non-functional" not in {r.gate for r in gates.run_gates(pure_inputs(cand)).results}
