"""The `local` target: the whole platform as processes on 127.0.0.1, managed by Pulumi.

Same capabilities and Args as the cloud targets (components/common.py); each resource is a
Python dynamic provider that really starts, updates, checks and stops a process.
"""

from components.local.components import InferenceEndpoint, Observability, Secrets, TrackingServer

__all__ = ["InferenceEndpoint", "Observability", "Secrets", "TrackingServer"]
