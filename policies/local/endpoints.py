"""Local serving endpoint rules: loopback only, API key from a file, exact registry version."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get, is_version, show
from policies.local._kinds import LOOPBACK, kind

ENDPOINT = "InferenceEndpoint"
# Inputs that would let an endpoint load something other than a pinned registry version.
_UNPINNED_INPUTS = ("modelUri", "modelAlias", "modelPath", "modelStage")


def _bind_loopback(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The local target is a developer machine: nothing it runs is reachable from the network."""
    if kind(args.resource_type, args.props) != ENDPOINT:
        return
    host = get(args.props, "host")
    if host not in (LOOPBACK, UNKNOWN):
        report_violation(f"host is {host!r}; bind the endpoint to {LOOPBACK}", None)


endpoint_bind_loopback = ResourceValidationPolicy(
    name="local-serving-endpoint-bind-loopback",
    description="Local inference endpoints listen on 127.0.0.1 only.",
    validate=_bind_loopback,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Leave the endpoint host at its default '127.0.0.1'; use an SSH tunnel to "
    "reach it remotely.",
)


def _require_api_key(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Even on loopback, other local users and browsers can reach the port; the key is read from a "
    "0600 file."""
    if kind(args.resource_type, args.props) != ENDPOINT:
        return
    if get(args.props, "apiKey") is not None:
        report_violation("apiKey is passed as an input; pass apiKeyFile (a 0600 SecretFile) instead", None)
    path = get(args.props, "apiKeyFile")
    if path is not UNKNOWN and not (isinstance(path, str) and path):
        report_violation("apiKeyFile is not set; require an API key read from a 0600 file", None)


endpoint_require_api_key = ResourceValidationPolicy(
    name="local-serving-endpoint-require-api-key",
    description="Local inference endpoints require an API key read from a 0600 file, never passed "
    "as an input.",
    validate=_require_api_key,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Set the secret config shipway:endpointApiKey (pulumi config set --secret) so the stack writes it to "
        "a SecretFile and passes only its path as apiKeyFile."
    ),
)


def _pin_exact_version(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Local runs the same exact-version contract as prod, so promotion behaves the same everywhere."""
    if kind(args.resource_type, args.props) != ENDPOINT:
        return
    version = get(args.props, "modelVersion")
    if version is not UNKNOWN and not is_version(version):
        report_violation(
            f"modelVersion is {show(version)}; pin an exact registry version (a positive integer)", None
        )
    for key in _UNPINNED_INPUTS:
        if get(args.props, key) is not None:
            report_violation(f"{key} is set; serve modelName at modelVersion from the registry only", None)


endpoint_pin_exact_version = ResourceValidationPolicy(
    name="local-serving-endpoint-pin-exact-version",
    description="Local inference endpoints serve modelName at an exact integer modelVersion from "
    "the registry.",
    validate=_pin_exact_version,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Pin shipway:models.<name>.version to an integer in stacks/Pulumi.local.yaml; "
    "remove any URI/alias.",
)

POLICIES = [endpoint_bind_loopback, endpoint_require_api_key, endpoint_pin_exact_version]
