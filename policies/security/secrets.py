"""Plaintext-secret rule: secrets reach resources by reference, never as literal input values.

The analyzer receives Pulumi secrets already decrypted and unmarked, so a policy cannot tell a
``pulumi config set --secret`` value from a literal typed into code. The rule therefore enforces
the stronger contract: outside the few resources whose job is to *store* a secret, an input
whose name says "secret" (or an environment variable whose name does) must hold a reference
(an ARN, a Key Vault URI, a file path, ``valueFrom``) and no value anywhere may look like a
credential (AWS keys, private keys, tokens, passwords inside URLs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, decoded, entries, get, items

# Resources whose purpose is to hold a secret value (their value inputs are exempt).
SECRET_STORES: Final = {
    "aws:secretsmanager/secretVersion:SecretVersion": ("secretString", "secretBinary"),
    "azure-native:keyvault:Secret": ("properties",),
    "kubernetes:core/v1:Secret": ("data", "stringData"),
}
LOCAL_SECRET_FILE: Final = ("pulumi-python:dynamic:Resource", "SecretFile")
# The engine hands the Python dynamic provider the whole stack config as its inputs, keyed
# `<namespace>:<key>`. Those values come from the stack file, where `pulumi config set --secret`
# keeps them encrypted (the analyzer sees them decrypted), so they are the secret store itself.
DYNAMIC_PROVIDER: Final = "pulumi:providers:pulumi-python"

# Matched against the key in snake_case ("dbPassword" -> "db_password", "DB_PASSWORD" -> "db_password"),
# so a secret word only counts on a word/camelCase boundary ("bypass", "compass" pass; "userPass"
# does not), and anchored at the end so references ("passwordSecretArn", "apiKeyFile") pass.
_SECRET_NAME = re.compile(
    r"(^|_)(password|passwd|pass|secret|secret_?key|token|api_?key|access_?key|private_?key|client_?secret"
    r"|connection_?string|credentials?|auth_?key|sas_?key|account_?key)$"
)
# Feature switches that happen to carry a secret-looking name (Azure Managed Grafana's
# ``apiKey: "Disabled"``, ``publicNetworkAccess``-style enums): a value from this set turns a
# capability on or off and can never be the secret itself.
_SWITCH_VALUES: Final = frozenset({"enabled", "disabled", "true", "false"})
_REFERENCE_VALUE = re.compile(r"^(arn:aws|https://[^/]+\.vault\.azure\.net/|/subscriptions/|secretref:|\$\{)")
_CREDENTIAL_VALUE: Final = (
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a GitHub token", re.compile(r"\b(ghp|gho|ghs|ghu)_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}")),
    ("a Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("a password inside a URL", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)),
    ("an Azure storage account key", re.compile(r"AccountKey=[A-Za-z0-9+/=]{20,}")),
)


def _walk(value: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """``(path, key, value)`` for every known leaf; Kubernetes ``{name, value}`` env pairs use the name."""
    if isinstance(value, Mapping):
        env_name = get(value, "name")
        pairs = list(entries(value))
        for key, child in pairs:
            key_for_check = env_name if key == "value" and isinstance(env_name, str) else key
            yield from _walk_child(child, f"{path}.{key}" if path else key, key_for_check)
    else:
        for index, child in enumerate(items(value)):
            yield from _walk_child(child, f"{path}[{index}]", "")


def _walk_child(child: Any, path: str, key: str) -> Iterator[tuple[str, str, Any]]:
    if child is UNKNOWN:
        return
    inner = decoded(child)
    if inner is not child and (isinstance(inner, Mapping) or items(inner)):
        # A JSON-encoded document (ECS containerDefinitions, IAM policies): judge what is inside.
        yield from _walk(inner, path)
        return
    if isinstance(child, Mapping) or (not isinstance(child, str) and items(child)):
        yield from _walk(child, path)
    else:
        yield path, key, child


def _snake(key: str) -> str:
    """``dbPassword``/``SASToken``/``db-password`` -> ``db_password``/``sas_token``/``db_password``.

    Word boundaries (camelCase humps, acronym ends, ``-``/``.`` separators) become ``_`` so the
    name pattern can require one before a secret word.
    """
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", key)
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", spaced)
    return re.sub(r"[^A-Za-z0-9]+", "_", spaced).lower()


def _is_reference_or_switch(value: str) -> bool:
    """A pointer to a secret, or an on/off switch value: neither is a secret in plain text."""
    return bool(_REFERENCE_VALUE.match(value)) or value.strip().lower() in _SWITCH_VALUES


def _problem(key: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    for label, pattern in _CREDENTIAL_VALUE:
        if pattern.search(value):
            return f"looks like {label}"
    if _SECRET_NAME.search(_snake(key)) and not _is_reference_or_switch(value):
        return "is a secret-named input with a literal value"
    return None


def _exempt_roots(args: ResourceValidationArgs) -> tuple[str, ...]:
    if args.resource_type == LOCAL_SECRET_FILE[0] and get(args.props, "shipwayKind") == LOCAL_SECRET_FILE[1]:
        return ("value",)
    return SECRET_STORES.get(args.resource_type, ())


def _is_exempt(args: ResourceValidationArgs, path: str, exempt: tuple[str, ...]) -> bool:
    """Inputs whose job is to hold a secret: secret-store values and forwarded stack config."""
    root = path.split(".", 1)[0].split("[", 1)[0]
    if args.resource_type == DYNAMIC_PROVIDER and ":" in root:
        return True
    return root in exempt or path.startswith("__")


def _disallow_plaintext(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Secrets in resource inputs end up in state, plans, logs and process listings."""
    exempt = _exempt_roots(args)
    for path, key, value in _walk(args.props, ""):
        if _is_exempt(args, path, exempt):
            continue
        problem = _problem(key, value)
        if problem:
            report_violation(
                f"{path} {problem}; pass a reference (secret ARN, Key Vault URI, file path or "
                "valueFrom.secretKeyRef) instead",
                None,
            )


input_disallow_plaintext_secrets = ResourceValidationPolicy(
    name="any-security-input-disallow-plaintext-secrets",
    description="No secret-looking value appears in resource inputs or environment variables.",
    validate=_disallow_plaintext,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.CRITICAL,
    remediation_steps=(
        "Store the value in the environment's secret store (Secrets Manager, Key Vault, a Kubernetes Secret "
        "via valueFrom.secretKeyRef, or a local 0600 SecretFile) from `pulumi config set --secret`, and pass "
        "only its reference. For RDS use manage_master_user_password=True instead of password."
    ),
)

POLICIES = [input_disallow_plaintext_secrets]
