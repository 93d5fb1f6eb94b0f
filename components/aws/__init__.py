"""AWS target: the same capabilities as every target, built from real pulumi-aws resources.

``build_platform`` (``components/aws/platform.py``) assembles them for a validated stack; the
components can also be used one by one. See docs/targets/aws.md for the resource types each
creates and the security decisions behind them.
"""

from components.aws.endpoint import InferenceEndpoint
from components.aws.identity import DeployIdentity, DeployIdentityArgs
from components.aws.kms import PlatformKey, PlatformKeyArgs
from components.aws.observability import Observability
from components.aws.secrets import Secrets
from components.aws.tracking import TrackingServer

__all__ = [
    "DeployIdentity",
    "DeployIdentityArgs",
    "InferenceEndpoint",
    "Observability",
    "PlatformKey",
    "PlatformKeyArgs",
    "Secrets",
    "TrackingServer",
]
