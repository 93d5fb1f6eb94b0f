"""Per-environment policy config: one pack, one config file per stack environment.

``policies/config/<env>.json`` are generated from :data:`ENVIRONMENTS` by
``python -m policies.envconfig`` (a test fails when a file drifts from this table). The CLI
format is ``{"all": "<level>", "<policy-name>": {"<setting>": value}}``: ``all`` sets every
rule's enforcement, and each rule receives only the settings its config schema declares
(the CLI validates them against that schema).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pulumi_policy import Policy

CONFIG_DIR: Final = Path(__file__).resolve().parent / "config"
ALLOWED_REGIONS: Final = ("eu-west-1", "eu-central-1", "westeurope", "northeurope")


@dataclass(frozen=True)
class EnvPolicySettings:
    """How strictly, and with which parameters, the pack runs for one environment."""

    enforcement: str
    min_retention_days: int
    allowed_regions: tuple[str, ...]
    tracking_uri: str
    require_reachable_registry: bool
    # The registry's artifact store differs per deployment, so it is set in the policy config a
    # stack is checked with (empty here = not checked; the pinned-path check still applies).
    artifact_root: str = ""

    def values(self, environment: str) -> dict[str, Any]:
        """Setting name (as in ``policies._core.SETTINGS``) -> value."""
        return {
            "environment": environment,
            "minRetentionDays": self.min_retention_days,
            "allowedRegions": list(self.allowed_regions),
            "trackingUri": self.tracking_uri,
            "requireReachableRegistry": self.require_reachable_registry,
            "artifactRoot": self.artifact_root,
        }


ENVIRONMENTS: Final[Mapping[str, EnvPolicySettings]] = {
    # Developer machines: report, never block; the registry is the stack's own tracking server.
    "local": EnvPolicySettings("advisory", 7, (), "http://127.0.0.1:5000", False),
    "dev": EnvPolicySettings("advisory", 30, ALLOWED_REGIONS, "", False),
    "test": EnvPolicySettings("mandatory", 90, ALLOWED_REGIONS, "", True),
    "prod": EnvPolicySettings("mandatory", 365, ALLOWED_REGIONS, "", True),
}


def build_config(environment: str, policies: Sequence[Policy]) -> dict[str, Any]:
    """The policy-config document for ``environment``."""
    env = ENVIRONMENTS[environment]
    values = env.values(environment)
    config: dict[str, Any] = {"all": env.enforcement}
    for policy in sorted(policies, key=lambda p: p.name):
        if policy.config_schema is None:
            continue
        config[policy.name] = {key: values[key] for key in sorted(policy.config_schema.properties)}
    return config


def render(environment: str, policies: Sequence[Policy]) -> str:
    """The file text for ``policies/config/<environment>.json``."""
    return json.dumps(build_config(environment, policies), indent=2) + "\n"


def main() -> None:
    """Regenerate every ``policies/config/<env>.json``."""
    from policies.registry import ALL_POLICIES

    CONFIG_DIR.mkdir(exist_ok=True)
    for environment in ENVIRONMENTS:
        (CONFIG_DIR / f"{environment}.json").write_text(render(environment, ALL_POLICIES))


if __name__ == "__main__":
    main()
