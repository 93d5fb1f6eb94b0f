"""Issue 25's evidence in the real promotion flow (real registry + gates, fake engine): a stack
that requires non-functional evidence refuses a version without it and pins it once `shipway
test` results are on the version; the promotion's audit record links the version's global
explanation."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipway import stackfile
from shipway.audit import AuditLog
from shipway.explain import GLOBAL_TAG, global_tag_value
from shipway.promotion import GateFailure, Promoter, PromoteRequest, Services
from shipway.registry import Registry

from .conftest import MODEL

VERSION = 4
NFT_TAGS = {"shipway.nft.load": json.dumps({"kind": "load", "passed": True}),
            "shipway.nft.security": json.dumps({"kind": "security", "passed": True})}


@pytest.fixture
def tagged(registry: Registry) -> Iterator[dict[str, str]]:
    """Version 4 carries `shipway test` results and a global explanation for one test, then neither."""
    tags = {**NFT_TAGS, GLOBAL_TAG: global_tag_value({"petal length (cm)": 0.4, "sepal width (cm)": 0.1}, rows=30)}
    client = registry.client
    try:
        yield tags
    finally:
        for key in tags:
            with contextlib.suppress(Exception):  # a tag the test never got to set
                client.delete_model_version_tag(MODEL, str(VERSION), key)


def require_nonfunctional(repo: Path, env: str, kinds: str) -> None:
    path = stackfile.stack_path(repo, env)
    gates = "  shipway:gates:\n"
    path.write_text(path.read_text().replace(gates, f"{gates}    requireNonFunctional: {kinds}\n"))


def test_required_non_functional_evidence_stops_then_admits_a_promotion_with_its_explanation_linked(
        services: Services, repo: Path, registry: Registry, tagged: dict[str, str]) -> None:
    require_nonfunctional(repo, "dev", "[load, security]")
    before = stackfile.stack_path(repo, "dev").read_text()

    with pytest.raises(GateFailure) as err:
        Promoter(services).promote(PromoteRequest(MODEL, "dev", version=VERSION))
    assert str(err.value) == ("gate 'non-functional' failed: load: no evidence; run `shipway test load MODEL "
                              "--version N`; security: no evidence; run `shipway test security MODEL --version N`")
    assert stackfile.stack_path(repo, "dev").read_text() == before

    for key, value in tagged.items():
        registry.client.set_model_version_tag(MODEL, str(VERSION), key, value)
    outcome = Promoter(services).promote(PromoteRequest(MODEL, "dev", version=VERSION, reason="nft passed"))
    assert outcome.status == "pinned" and outcome.to_version == VERSION

    rejected, promoted = AuditLog(repo / ".shipway" / "audit" / "audit.jsonl").records()
    assert (rejected["outcome"], promoted["outcome"]) == ("rejected", "pinned")
    assert promoted["gates"]["gates"]["non-functional"]["passed"] is True
    assert promoted["details"]["explanation"] == {
        "tag": GLOBAL_TAG, "model_version": f"models:/{MODEL}/{VERSION}", "registry": registry.tracking_uri,
        "top_features": ["petal length (cm)", "sepal width (cm)"]}
    assert not (rejected["details"] or {}).get("explanation")  # a rejected version links nothing
