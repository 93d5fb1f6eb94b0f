"""Target adapters: how the CLI and CI reach a deployed environment on each platform (base.py)."""

from shipway.targets.base import (
    AdapterContext,
    Alarm,
    Check,
    EndpointState,
    PrepareResult,
    RollbackDecision,
    TargetAdapter,
    TargetError,
    VerificationResult,
    adapter_for,
)

__all__ = ["AdapterContext", "Alarm", "Check", "EndpointState", "PrepareResult", "RollbackDecision",
           "TargetAdapter", "TargetError", "VerificationResult", "adapter_for"]
