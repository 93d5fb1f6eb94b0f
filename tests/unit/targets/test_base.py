"""The adapter framework: dispatch on the stack's cloud, the shared rollback rule, result shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipway.targets import AdapterContext, TargetAdapter, TargetError, adapter_for
from shipway.targets.base import Alarm, Check, VerificationResult, alarm_signal, decide
from shipway.targets.local import LocalAdapter
from shipway_core.config import load_stack_file
from shipway_core.outputs import PlatformOutputs

ROOT = Path(__file__).resolve().parents[3]


def _outputs(cloud: str) -> PlatformOutputs:
    status = {"local": "http://127.0.0.1:1", "aws": "sagemaker:eu-west-1:e", "azure": "azureml:rg/ws/e",
              "kubernetes": "kubernetes:ns/d"}[cloud]
    return PlatformOutputs.from_exports({
        "cloud": cloud, "environment": "dev", "trackingUri": "http://127.0.0.1:5000",
        "registryUri": "http://127.0.0.1:5000",
        "endpoints": {"iris-classifier": {"url": "http://127.0.0.1:1", "version": 1, "status": status}},
    })


def _context(tmp_path: Path) -> AdapterContext:
    return AdapterContext(root=tmp_path, registry_factory=lambda uri: pytest.fail(f"registry opened: {uri}"))


def test_adapter_for_picks_the_local_adapter_by_cloud(tmp_path: Path) -> None:
    adapter = adapter_for(_outputs("local"), load_stack_file(ROOT / "stacks" / "Pulumi.local.yaml"), _context(tmp_path))
    assert isinstance(adapter, LocalAdapter)
    assert isinstance(adapter, TargetAdapter)  # every protocol method is there


def test_adapter_for_names_a_target_without_an_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def missing(name: str, *args: object) -> object:
        if name == "shipway.targets.kubernetes":
            raise ModuleNotFoundError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", missing)
    cfg = load_stack_file(ROOT / "stacks" / "Pulumi.local.yaml")
    with pytest.raises(TargetError, match=r"cloud: 'kubernetes' has no target adapter in this version of Shipway "
                                          r"\(shipway/targets/kubernetes.py\)"):
        adapter_for(_outputs("kubernetes"), cfg, _context(tmp_path))


@pytest.mark.parametrize(("name", "signal"), [
    ("shipway-prod-churn-5xx-errors", "error_rate"),
    ("shipway-prod-churn-latency-p99", "latency_p99"),
    ("iris-classifier-feature-drift", "drift"),
    ("EndpointDown", "other"),
])
def test_alarm_names_map_to_their_guardrail(name: str, signal: str) -> None:
    assert alarm_signal(name) == signal


def test_decision_rolls_back_only_when_an_alarm_fires() -> None:
    quiet = [Alarm("a-errors", "error_rate", "OK"), Alarm("a-latency", "latency_p99", "INSUFFICIENT_DATA")]
    assert decide("m", quiet, 3).rollback is False
    firing = decide("m", [*quiet, Alarm("a-drift", "drift", "ALARM")], 3)
    assert firing.rollback is True
    assert firing.reason == "alarm firing: a-drift (drift); roll back to version 3"
    assert decide("m", [Alarm("x", "error_rate", "ALARM")], None).reason.endswith("no known-good version (pass --to N)")
    assert decide("m", [], 3).reason == "no guardrail alarms are defined for this endpoint"


def test_verification_result_reports_probe_figures_and_first_failure() -> None:
    result = VerificationResult("m", 2, "u", (
        Check("version", True, "ok"),
        Check("smoke", False, "2 of 20 differ"),
        Check("slo", False, "p99 too high", {"requests": 300, "error_rate": 0.0, "p99_ms": 41.5}),
    ))
    assert (result.ok, result.reason) == (False, "2 of 20 differ")
    assert result.as_dict()["probe"] == {"requests": 300, "error_rate": 0.0, "p99_ms": 41.5}
