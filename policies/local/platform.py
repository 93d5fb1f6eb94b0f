"""Local platform rules: the tracking server, registry pins, secret files and observability processes."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get, is_prod, is_version, prod_only, show
from policies.local._kinds import LOOPBACK, kind

_SERVICES = ("TrackingServer", "Prometheus", "Alertmanager", "Jaeger", "Collector", "LogStore", "DeliveryMetrics")
OWNER_ONLY_MODE = "0600"


def _services_bind_loopback(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The registry and telemetry have no auth of their own on local: loopback is their only fence."""
    which = kind(args.resource_type, args.props)
    if which not in _SERVICES:
        return
    host = get(args.props, "host")
    if host is not None and host not in (LOOPBACK, UNKNOWN):
        report_violation(f"{which} host is {host!r}; bind it to {LOOPBACK}", None)


service_bind_loopback = ResourceValidationPolicy(
    name="local-platform-service-bind-loopback",
    description="The local tracking server, Prometheus, Alertmanager, Jaeger, the OpenTelemetry Collector, "
    "the log store and the delivery-metrics exporter listen on 127.0.0.1 only.",
    validate=_services_bind_loopback,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Leave the service host at '127.0.0.1' (the local target never binds 0.0.0.0).",
)


def _secret_file_restrict_mode(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Secrets on disk are readable by their owner only."""
    if kind(args.resource_type, args.props) != "SecretFile":
        return
    mode = get(args.props, "mode")
    if mode not in (OWNER_ONLY_MODE, UNKNOWN):
        report_violation(f"mode is {mode!r}; secret files are written with mode '{OWNER_ONLY_MODE}'", None)


secret_file_restrict_mode = ResourceValidationPolicy(
    name="local-secret-file-restrict-mode",
    description="Local secret files are created with mode 0600.",
    validate=_secret_file_restrict_mode,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Create the SecretFile with mode='0600' (the component default); never widen it.",
)


def _registry_pin_retain_in_prod(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """`pulumi destroy` on prod must not delete the registry alias that says what prod serves."""
    if kind(args.resource_type, args.props) != "RegistryPin" or not is_prod(args):
        return
    retain = get(args.props, "retainOnDelete")
    if retain is not True and retain is not UNKNOWN and not args.opts.protect:
        report_violation(
            "retainOnDelete is not true and the resource is not protected; prod registry pins "
            "survive pulumi destroy",
            None,
        )


registry_pin_retain_in_prod = ResourceValidationPolicy(
    name="local-registry-pin-retain-in-prod",
    description="Prod registry pins are retained on delete (retainOnDelete) or protected.",
    validate=_registry_pin_retain_in_prod,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    **prod_only(),
    remediation_steps="Keep shipway:protectRegistry true in stacks/Pulumi.prod.yaml (retainOnDelete=True).",
)


def _registry_pin_exact_version(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The alias points at one exact version; an alias of an alias would float."""
    if kind(args.resource_type, args.props) != "RegistryPin":
        return
    version = get(args.props, "version")
    if version is not UNKNOWN and not is_version(version):
        report_violation(
            f"version is {show(version)}; pin an exact registry version (a positive integer)", None
        )


registry_pin_require_exact_version = ResourceValidationPolicy(
    name="local-registry-pin-require-exact-version",
    description="Registry pins point their alias at an exact integer version.",
    validate=_registry_pin_exact_version,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Pin shipway:models.<name>.version to an integer in the stack file.",
)

POLICIES = [
    service_bind_loopback,
    secret_file_restrict_mode,
    registry_pin_retain_in_prod,
    registry_pin_require_exact_version,
]
