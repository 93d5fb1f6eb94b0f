"""Kubernetes target: the platform in any conformant cluster (EKS, AKS, kind...).

Components (type tokens ``shipway:kubernetes:<Noun>``) take the shared Args from
``components.common`` plus ``KubernetesSettings``; ``build_platform`` wires them for a stack.
"""

from components.kubernetes.endpoint import InferenceEndpoint
from components.kubernetes.namespace import EnvironmentNamespace, EnvironmentNamespaceArgs
from components.kubernetes.observability import Observability
from components.kubernetes.platform import build_platform
from components.kubernetes.secrets import Secrets
from components.kubernetes.tracking import TrackingServer

__all__ = [
    "EnvironmentNamespace",
    "EnvironmentNamespaceArgs",
    "InferenceEndpoint",
    "Observability",
    "Secrets",
    "TrackingServer",
    "build_platform",
]
