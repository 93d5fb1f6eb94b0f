"""Parse and validate the stack config, then build the platform for its target cloud."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pulumi

from shipway_core.config import StackConfig, parse_stack_config, raw_from_pulumi_config

# Secrets the program reads from Pulumi config (never parsed into plain objects).
SECRET_KEYS = ("endpointApiKey",)


def load_config() -> StackConfig:
    """The current stack's validated config (raises StackConfigError listing every bad key)."""
    raw = raw_from_pulumi_config(pulumi.runtime.get_config_env())
    for key in SECRET_KEYS:
        raw.pop(key, None)
    return parse_stack_config(pulumi.get_stack(), raw)


def load_secrets(cfg: StackConfig) -> dict[str, pulumi.Output[str]]:
    conf = pulumi.Config("shipway")
    secrets: dict[str, pulumi.Output[str]] = {}
    for key in SECRET_KEYS:
        value = conf.get_secret(key)
        if value is None:
            raise ValueError(
                f"shipway:{key}: is required; set it with `pulumi config set --secret shipway:{key} <value> "
                f"--stack {cfg.stack}` (never in plain text)")
        secrets[key] = value
    return secrets


def build(cfg: StackConfig, secrets: dict[str, pulumi.Output[str]], root: Path) -> dict[str, Any]:
    """Dispatch to the target's platform builder."""
    if cfg.cloud == "local":
        from components.local.platform import build_platform as build_local

        return build_local(cfg, secrets, root)
    module = importlib.import_module(f"components.{cfg.cloud}.platform")
    return module.build_platform(cfg, secrets)


def run() -> None:
    cfg = load_config()
    outputs = build(cfg, load_secrets(cfg), Path(__file__).resolve().parent.parent)
    for key, value in outputs.items():
        pulumi.export(key, value)
