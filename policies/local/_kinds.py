"""How the `local` target's dynamic resources identify themselves to policies.

Every local resource is a Pulumi dynamic resource (type ``pulumi-python:dynamic:Resource``);
the component writes an input ``shipwayKind`` so policies can tell a serving endpoint from a
secret file.
"""

from __future__ import annotations

from typing import Any, Final

from policies._core import get

DYNAMIC: Final = "pulumi-python:dynamic:Resource"
KINDS: Final = (
    "TrackingServer",
    "RegistryPin",
    "InferenceEndpoint",
    "Prometheus",
    "SecretFile",
    "Alertmanager",
    "Jaeger",
)
LOOPBACK: Final = "127.0.0.1"


def kind(resource_type: str, props: Any) -> str | None:
    """The Shipway kind of a local resource, or None for anything else."""
    if resource_type != DYNAMIC:
        return None
    value = get(props, "shipwayKind")
    return value if value in KINDS else None
