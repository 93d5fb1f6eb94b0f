"""Load balancer rules: TLS-only listeners with a modern TLS policy."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get, items

LISTENER = "aws:lb/listener:Listener"
# TLS 1.2+ only policies (the TLS13 family and FS-1-2 policies).
MODERN_SSL_POLICY_PREFIXES = (
    "ELBSecurityPolicy-TLS13-",
    "ELBSecurityPolicy-FS-1-2-",
    "ELBSecurityPolicy-TLS-1-2-",
)


def _require_tls(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Inference payloads and API keys never cross the network in clear text."""
    if args.resource_type != LISTENER:
        return
    protocol = get(args.props, "protocol")
    if protocol in ("HTTPS", "TLS"):
        policy = get(args.props, "sslPolicy")
        if policy is not UNKNOWN and not (
            isinstance(policy, str) and policy.startswith(MODERN_SSL_POLICY_PREFIXES)
        ):
            report_violation(
                f"sslPolicy is {policy!r}; use a TLS 1.2+ policy such as "
                "'ELBSecurityPolicy-TLS13-1-2-2021-06'",
                None,
            )
        return
    if protocol is UNKNOWN:
        return
    raw_actions = get(args.props, "defaultActions")
    if raw_actions is UNKNOWN:
        return
    actions = items(raw_actions)
    redirects = actions and all(
        get(a, "type") == "redirect" and get(a, "redirect.protocol") == "HTTPS" for a in actions
    )
    if not redirects:
        report_violation(f"protocol is {protocol!r}; use HTTPS/TLS or redirect every request to HTTPS", None)


listener_require_tls = ResourceValidationPolicy(
    name="aws-lb-listener-require-tls",
    description="Load balancer listeners serve HTTPS/TLS only (plain HTTP may only redirect to HTTPS).",
    validate=_require_tls,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Use protocol='HTTPS' with certificate_arn and ssl_policy='ELBSecurityPolicy-TLS13-1-2-2021-06'; "
        "an HTTP listener may only have a redirect default action to HTTPS (status HTTP_301)."
    ),
)

POLICIES = [listener_require_tls]
