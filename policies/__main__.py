"""Entry point the Pulumi policy runtime executes (``python -m pulumi.policy ... policies``).

Only this file builds the ``PolicyPack``: constructing one starts the analyzer's gRPC server
and blocks, so everything testable lives in the rule modules (see ``policies/registry.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# The runtime puts this directory first on sys.path, where `policies/kubernetes` and friends
# would shadow real top-level packages. Import the rules as the `policies` package from the
# repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies.registry import ALL_POLICIES  # noqa: E402

PolicyPack(
    name="shipway-policies",
    policies=ALL_POLICIES,
    # Advisory unless a stack's policy config says otherwise (test and prod make everything mandatory).
    enforcement_level=EnforcementLevel.ADVISORY,
    description="Shipway guardrails for AWS, Azure, Kubernetes and local stacks.",
)
