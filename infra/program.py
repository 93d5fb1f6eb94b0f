"""Parse and validate the stack config, then build the platform for its target cloud."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pulumi

from components.contract import PlatformExports
from shipway_core.config import StackConfig, parse_stack_config, raw_from_pulumi_config, required_secrets


def load_config() -> StackConfig:
    """The current stack's validated config (raises StackConfigError listing every bad key,
    missing secrets included)."""
    raw = raw_from_pulumi_config(pulumi.runtime.get_config_env())
    return parse_stack_config(pulumi.get_stack(), raw, source="engine")


def load_secrets(cfg: StackConfig) -> dict[str, pulumi.Output[str]]:
    """Exactly the secrets the stack's target declares (shipway_core.config.required_secrets)."""
    conf = pulumi.Config("shipway")
    return {key: conf.require_secret(key) for key in required_secrets(cfg.cloud, cfg.kubernetes)}


def build(cfg: StackConfig, secrets: dict[str, pulumi.Output[str]], root: Path) -> PlatformExports:
    """Dispatch to the target's platform builder."""
    if cfg.cloud == "local":
        from components.local.platform import build_platform as build_local

        return build_local(cfg, secrets, root)
    module = importlib.import_module(f"components.{cfg.cloud}.platform")
    platform: PlatformExports = module.build_platform(cfg, secrets)
    return platform


def run() -> dict[str, Any]:
    """The program: config -> the platform -> the contract's outputs (returned for tests)."""
    cfg = load_config()
    exports = build(cfg, load_secrets(cfg), Path(__file__).resolve().parent.parent).exports()
    for key, value in exports.items():
        pulumi.export(key, value)
    return exports
