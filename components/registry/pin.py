"""`shipway:registry:ModelPin`: an environment's alias pointing at the pinned exact version.

The alias (named after the environment) makes `models:/<name>@<env>` equal what the stack
pins. Creating or updating the pin is also the deploy-time pre-flight: a version that
does not exist or is not READY fails here, before any endpoint is touched (endpoints
depend on their pin). The registry is an MLflow server's http(s) URL (local, Kubernetes,
self-hosted) or a SageMaker MLflow tracking server's ARN (components/registry/sagemaker.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from components.common import validate_model_pin
from components.registry import sagemaker  # noqa: F401 - registers SageMaker MLflow ARNs as a registry scheme
from shipway_core import registry_rest as rest


class ModelPinProvider(ResourceProvider):
    """Point the alias at the version (after the pre-flight); remove it on delete unless retained."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """The pre-flight at preview time too: ``pulumi preview`` of a pin to a version the registry
        does not have (or that is not READY) fails here, naming the version and what exists.

        Runs only when the registry address is already known (an unknown output during a first
        preview, or a registry not reachable from here, leaves the check to create/update)."""
        uri, version = news.get("trackingUri"), news.get("version")
        if isinstance(uri, str) and rest.is_supported(uri) and isinstance(version, int | float):
            try:
                rest.require_ready(uri, news["modelName"], int(version))
            except rest.PinError as exc:
                return CheckResult(news, [CheckFailure("version", str(exc))])
            except rest.RegistryError:
                pass
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._apply(props)
        return CreateResult(id_=f"{outs['modelName']}@{outs['alias']}", outs=outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._apply(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("trackingUri", "modelName", "version", "alias", "retainOnDelete")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        drifted = olds.get("aliasTarget") is not None and olds.get("aliasTarget") != olds.get("version")
        replaces: list[str] = [k for k in ("modelName", "alias", "trackingUri") if k in changed]
        return DiffResult(changes=bool(changed) or drifted, replaces=replaces, stables=[],
                          delete_before_replace=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        target = rest.get_alias(props["trackingUri"], props["modelName"], props["alias"])
        return ReadResult(id_=id_, outs={**props, "aliasTarget": target})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if props.get("retainOnDelete"):
            return
        # The registry (e.g. the local tracking server) may already be gone on destroy.
        with contextlib.suppress(rest.RegistryError):
            rest.delete_alias(props["trackingUri"], props["modelName"], props["alias"])

    @staticmethod
    def _apply(props: dict[str, Any]) -> dict[str, Any]:
        props = {k: v for k, v in props.items() if not k.startswith("__")}
        uri, name, version, alias = props["trackingUri"], props["modelName"], int(props["version"]), props["alias"]
        record = rest.require_ready(uri, name, version)
        rest.set_alias(uri, name, alias, version)
        return {**props, "aliasTarget": version, "source": record.get("source", ""),
                "runId": record.get("run_id", "")}


@dataclass
class ModelPinArgs:
    """Which version of which model an environment serves."""

    tracking_uri: pulumi.Input[str]
    model_name: str
    version: int
    environment: str
    # Keep the alias when the stack is destroyed (always true in prod).
    retain_on_delete: bool = False


class _ModelPinResource(Resource):
    alias_target: pulumi.Output[int]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions):
        super().__init__(ModelPinProvider(), name, {**props, "aliasTarget": None, "source": None, "runId": None}, opts)


class ModelPin(pulumi.ComponentResource):
    """The environment alias of one model, pointed at the stack's pinned version."""

    model_name: pulumi.Output[str]
    """Registered model name."""
    version: pulumi.Output[int]
    """The pinned exact registry version."""
    alias: pulumi.Output[str]
    """The alias set to that version (the environment name)."""
    source: pulumi.Output[str]
    """The version's artifact source URI in the registry."""

    def __init__(self, name: str, args: ModelPinArgs, opts: pulumi.ResourceOptions | None = None):
        validate_model_pin(args.model_name, args.version)
        super().__init__("shipway:registry:ModelPin", name, None, opts)
        child_opts = pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_on_delete)
        self._pin = _ModelPinResource(f"{name}-alias", {
            "shipwayKind": "RegistryPin",
            "trackingUri": args.tracking_uri,
            "modelName": args.model_name,
            "version": args.version,
            "alias": args.environment,
            "retainOnDelete": args.retain_on_delete,
        }, child_opts)
        self.model_name = pulumi.Output.from_input(args.model_name)
        self.version = self._pin.version  # type: ignore[attr-defined]
        self.alias = pulumi.Output.from_input(args.environment)
        self.source = self._pin.source  # type: ignore[attr-defined]
        self.register_outputs({"model_name": self.model_name, "version": self.version, "alias": self.alias,
                               "source": self.source})
