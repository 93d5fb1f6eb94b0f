"""The Azure ML registry dev, test and prod share: one model version, one set of bytes.

A workspace's own models are per environment, so "version 4" in prod would be a different
upload from "version 4" in dev. Every environment's deployments instead reference
``azureml://registries/<registry>/models/<model>/versions/<N>``: promotion changes a pin, never
copies or re-registers a model, and the version prod pins is the version dev verified.
Exactly one stack (``azure.createRegistry: true``) owns the registry; the others name it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget, access
from components.common import validate_model_pin, validate_tags

_REGISTRY_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$")


def validate_registry_name(registry_name: str) -> None:
    """Azure ML registry names: 3-33 letters, digits, ``-`` or ``_``, starting alphanumeric."""
    if not isinstance(registry_name, str) or not _REGISTRY_NAME.match(registry_name):
        raise ValueError(f"registry_name: {registry_name!r} is not valid; use 3-33 letters, digits, - or _ "
                         "starting with a letter or digit (the registry shared by dev, test and prod)")


def registry_model_uri(registry_name: str, model_name: str, version: int) -> str:
    """The asset id an online deployment pins: the same string in every environment."""
    validate_registry_name(registry_name)
    validate_model_pin(model_name, version)
    return f"azureml://registries/{registry_name}/models/{model_name}/versions/{version}"


def registry_resource_id(subscription_id: pulumi.Input[str], resource_group: pulumi.Input[str],
                         registry_name: str) -> pulumi.Output[str]:
    """ARM id of a registry (private-endpoint target and role scope), owned here or elsewhere."""
    return pulumi.Output.concat("/subscriptions/", subscription_id, "/resourceGroups/", resource_group,
                                "/providers/Microsoft.MachineLearningServices/registries/", registry_name)


@dataclass
class ModelRegistryArgs:
    """The shared registry: its name and the regions its assets replicate to."""

    environment: str
    tags: Mapping[str, str]
    registry_name: str
    regions: Sequence[str] = field(default_factory=list)  # empty: the target's location only
    protect: bool = True


class ModelRegistry(pulumi.ComponentResource):
    """An Azure ML registry, private unless the stack turned public access on, never destroyed.

    The registry outlives every environment that reads from it, so it is always ``protect`` and
    ``retainOnDelete``: destroying the owning stack leaves the models other stacks pin.
    """

    registry_id: pulumi.Output[str]
    """ARM id of the registry."""
    registry_name: pulumi.Output[str]
    """Name used in azureml://registries/<name>/... model ids."""
    mlflow_registry_uri: pulumi.Output[str]
    """MLflow registry URI of the registry (azureml-mlflow plugin)."""

    def __init__(self, name: str, args: ModelRegistryArgs, target: AzureTarget,
                 opts: pulumi.ResourceOptions | None = None):
        validate_tags(args.tags)
        validate_registry_name(args.registry_name)
        super().__init__("shipway:azure:ModelRegistry", name, None, opts)
        regions: list[pulumi.Input[str]] = list(args.regions) or [target.location]
        self.registry = azure_native.machinelearningservices.Registry(
            f"{name}-registry",
            registry_name=args.registry_name,
            resource_group_name=target.resource_group_name,
            location=target.location,
            identity=azure_native.machinelearningservices.ManagedServiceIdentityArgs(type="SystemAssigned"),
            public_network_access=access(target.private),
            region_details=[
                azure_native.machinelearningservices.RegistryRegionArmDetailsArgs(
                    location=region,
                    acr_details=[azure_native.machinelearningservices.AcrDetailsArgs(
                        system_created_acr_account=azure_native.machinelearningservices.SystemCreatedAcrAccountArgs(
                            acr_account_sku="Premium"))],
                    storage_account_details=[azure_native.machinelearningservices.StorageAccountDetailsArgs(
                        system_created_storage_account=azure_native.machinelearningservices.SystemCreatedStorageAccountArgs(  # noqa: E501
                            storage_account_type="Standard_ZRS", storage_account_hns_enabled=False,
                            allow_blob_public_access=False))],
                )
                for region in regions
            ],
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=True),
        )
        self.registry_id = self.registry.id
        self.registry_name = pulumi.Output.from_input(args.registry_name)
        self.mlflow_registry_uri = self.registry.ml_flow_registry_uri.apply(lambda u: u or "")
        self.register_outputs({
            "registry_id": self.registry_id,
            "registry_name": self.registry_name,
            "mlflow_registry_uri": self.mlflow_registry_uri,
        })
