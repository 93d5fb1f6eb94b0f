"""IAM rules: least privilege, no long-lived keys, CI deploys through OIDC."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
)

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get, items
from policies.aws.iam_documents import as_strings, conditions, document, statements

POLICY_DOCUMENTS = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
ATTACHMENTS = (
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
)
# The exclusive variants attach a whole list at once (`policyArns`).
EXCLUSIVE_ATTACHMENTS = (
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive",
    "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive",
    "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive",
)
ROLE = "aws:iam/role:Role"
ACCESS_KEY = "aws:iam/accessKey:AccessKey"

# Actions AWS only grants on Resource "*" (no resource-level permissions exist for them). The
# ec2:Describe* set is what a SageMaker endpoint in a VPC needs to place its ENIs (see
# components/aws/endpoint.py "DescribeVpcForEnis"); creating and deleting ENIs stays scoped.
RESOURCELESS_ACTIONS = frozenset(
    {
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        # metric reads of Managed Grafana's CloudWatch data source (components/aws/observability.py)
        "cloudwatch:GetMetricData",
        "cloudwatch:GetMetricStatistics",
        "cloudwatch:ListMetrics",
        "sts:GetCallerIdentity",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "logs:DescribeLogGroups",
    }
)
_BROAD_MANAGED = ("AdministratorAccess", "PowerUserAccess", "IAMFullAccess")
GITHUB_OIDC = "token.actions.githubusercontent.com"


def _wildcard_problem(statement: Any) -> str | None:
    """Why an Allow statement is too broad (None when it is not)."""
    if get(statement, "Effect") != "Allow":
        return None
    actions = as_strings(get(statement, "Action"))
    wild_actions = [a for a in actions if a == "*" or a.endswith(":*")]
    if wild_actions:
        return f"allows wildcard action {wild_actions[0]!r}"
    if get(statement, "NotAction") is not None:
        return "allows NotAction (everything except a list)"
    if "*" in as_strings(get(statement, "Resource")) and not set(actions) <= RESOURCELESS_ACTIONS:
        return f"allows {', '.join(sorted(actions))} on Resource '*'"
    return None


def _disallow_wildcards(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A leaked workload credential can only do what its policy names, on what it names."""
    for where, doc in _documents(args):
        if doc is UNKNOWN:
            continue
        for index, statement in enumerate(statements(doc)):
            problem = _wildcard_problem(statement)
            if problem:
                sid = get(statement, "Sid") or f"#{index}"
                report_violation(
                    f"{where}statement {sid} {problem}; name the exact actions and resource ARNs", None
                )


policy_disallow_wildcards = ResourceValidationPolicy(
    name="aws-iam-policy-disallow-wildcards",
    description="IAM policies name exact actions and resources: no '*' or 'service:*'.",
    validate=_disallow_wildcards,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Replace '*' / 'service:*' actions with the specific API actions the workload calls, and "
        "Resource '*' with the ARNs of the buckets, endpoints, keys and log groups it uses. Only "
        "actions without resource-level permissions (e.g. ecr:GetAuthorizationToken) may use '*'."
    ),
)


def _attached_arns(args: ResourceValidationArgs) -> list[Any]:
    if args.resource_type in ATTACHMENTS:
        return [get(args.props, "policyArn")]
    if args.resource_type in EXCLUSIVE_ATTACHMENTS:
        return items(get(args.props, "policyArns"))
    if args.resource_type == ROLE:
        return items(get(args.props, "managedPolicyArns"))
    return []


def _documents(args: ResourceValidationArgs) -> list[tuple[str, Any]]:
    """``(where, policy document)`` for the resource's permission documents.

    Besides the policy resources, a Role may carry policies inline (``inlinePolicies[].policy``):
    the same permissions by another spelling, so they are judged the same way.
    """
    prop = POLICY_DOCUMENTS.get(args.resource_type)
    if prop is not None:
        return [("", document(get(args.props, prop)))]
    if args.resource_type == ROLE:
        return [
            (f"inlinePolicies[{get(inline, 'name', index)}] ", document(get(inline, "policy")))
            for index, inline in enumerate(items(get(args.props, "inlinePolicies")))
        ]
    return []


def _disallow_full_access(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """AWS-managed *FullAccess / admin policies grant far more than any Shipway workload needs."""
    for arn in _attached_arns(args):
        if not isinstance(arn, str):
            continue
        policy_name = arn.rsplit("/", 1)[-1]
        if policy_name.endswith("FullAccess") or policy_name in _BROAD_MANAGED:
            report_violation(
                f"attaches managed policy {policy_name!r}; attach a least-privilege "
                "customer-managed policy instead",
                None,
            )


role_disallow_full_access = ResourceValidationPolicy(
    name="aws-iam-role-disallow-full-access",
    description="No *FullAccess, AdministratorAccess or PowerUserAccess managed policy is attached.",
    validate=_disallow_full_access,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Detach the AWS-managed broad policy and attach an aws.iam.Policy listing the exact actions "
        "and resources the role uses (see the component's generated least-privilege policy)."
    ),
)


def _disallow_access_keys(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Long-lived access keys leak; CI and workloads use roles (OIDC, instance/task roles)."""
    if args.resource_type == ACCESS_KEY:
        report_violation(
            "aws:iam/accessKey:AccessKey creates a long-lived credential; "
            "use an IAM role assumed through OIDC instead",
            None,
        )


accesskey_disallow_creation = ResourceValidationPolicy(
    name="aws-iam-accesskey-disallow-creation",
    description="IAM access keys are never created; deployers and workloads assume roles.",
    validate=_disallow_access_keys,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.CRITICAL,
    remediation_steps=(
        "Delete the aws.iam.AccessKey. For CI, create an aws.iam.OpenIdConnectProvider for "
        "token.actions.githubusercontent.com and a deploy role whose trust policy pins the repository "
        "('repo:<owner>/<name>:...'); for workloads, use the execution/task role."
    ),
)


def _oidc_problem(statement: Any) -> str | None:
    """Why a GitHub OIDC trust statement lets more than one repository in."""
    if GITHUB_OIDC not in " ".join(as_strings(get(statement, "Principal.Federated"))):
        return None
    if "sts:AssumeRoleWithWebIdentity" not in as_strings(get(statement, "Action")):
        return "trusts GitHub OIDC without sts:AssumeRoleWithWebIdentity"
    merged: dict[str, list[str]] = {}
    for block in conditions(statement).values():
        for key, values in block.items():
            merged.setdefault(key, []).extend(values)
    if merged.get(f"{GITHUB_OIDC}:aud") != ["sts.amazonaws.com"]:
        return f"does not require {GITHUB_OIDC}:aud = 'sts.amazonaws.com'"
    subjects = merged.get(f"{GITHUB_OIDC}:sub", [])
    if not subjects:
        return f"does not restrict {GITHUB_OIDC}:sub to a repository"
    for subject in subjects:
        repo = subject.split(":")[1] if subject.startswith("repo:") and subject.count(":") >= 2 else ""
        if not repo or "*" in repo or "/" not in repo:
            return f"allows subject {subject!r}; pin 'repo:<owner>/<name>:<ref or environment>'"
    return None


def _restrict_oidc_trust(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A deploy role trusted by 'any GitHub repository' is an open door to the account."""
    if args.resource_type != ROLE:
        return
    doc = document(get(args.props, "assumeRolePolicy"))
    if doc is UNKNOWN:
        return
    for statement in statements(doc):
        problem = _oidc_problem(statement)
        if problem:
            report_violation(f"trust policy {problem}", None)


role_restrict_oidc_trust = ResourceValidationPolicy(
    name="aws-iam-role-restrict-oidc-trust",
    description="CI deploy roles trust GitHub OIDC only for the pinned repository and audience.",
    validate=_restrict_oidc_trust,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.CRITICAL,
    remediation_steps=(
        "In the role's assume_role_policy use Action sts:AssumeRoleWithWebIdentity with conditions "
        "StringEquals token.actions.githubusercontent.com:aud = sts.amazonaws.com and "
        "StringLike token.actions.githubusercontent.com:sub = repo:<owner>/<name>:environment:<env>."
    ),
)

POLICIES = [
    policy_disallow_wildcards,
    role_disallow_full_access,
    accesskey_disallow_creation,
    role_restrict_oidc_trust,
]
