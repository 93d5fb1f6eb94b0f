"""The Azure target: the same capabilities as every target, built on pulumi-azure-native 3.x.

Component tokens are ``shipway:azure:<Noun>``; ``platform.build_platform`` composes them for a
``shipway:cloud: azure`` stack. See docs/targets/azure.md for the resource types per component.
"""

from components.azure._shared import BUILTIN_ROLES, AzureTarget
from components.azure.endpoint import InferenceEndpoint, SecretRefs, WorkspaceRef, traffic_map
from components.azure.identity import DeployIdentity, DeployIdentityArgs, deploy_permissions
from components.azure.network import PrivateNetwork, PrivateNetworkArgs, PrivateTarget
from components.azure.observability import MonitoredResources, Observability
from components.azure.registry import ModelRegistry, ModelRegistryArgs, registry_model_uri
from components.azure.secrets import Secrets
from components.azure.tracking import TrackingServer

__all__ = [
    "BUILTIN_ROLES",
    "AzureTarget",
    "DeployIdentity",
    "DeployIdentityArgs",
    "InferenceEndpoint",
    "ModelRegistry",
    "ModelRegistryArgs",
    "MonitoredResources",
    "Observability",
    "PrivateNetwork",
    "PrivateNetworkArgs",
    "PrivateTarget",
    "SecretRefs",
    "Secrets",
    "TrackingServer",
    "WorkspaceRef",
    "deploy_permissions",
    "registry_model_uri",
    "traffic_map",
]
