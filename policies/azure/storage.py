"""Azure Storage rules: TLS-only, private, customer-managed keys, no shared keys."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get

ACCOUNT = "azure-native:storage:StorageAccount"
CONTAINER = "azure-native:storage:BlobContainer"
_MODERN_TLS = ("TLS1_2", "TLS1_3")


def _require_tls(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Model artifacts and captured payloads only travel over TLS 1.2+."""
    if args.resource_type != ACCOUNT:
        return
    if get(args.props, "enableHttpsTrafficOnly") not in (True, UNKNOWN):
        report_violation("enableHttpsTrafficOnly is not true; reject plain HTTP", None)
    tls = get(args.props, "minimumTlsVersion")
    if tls is not UNKNOWN and tls not in _MODERN_TLS:
        report_violation(f"minimumTlsVersion is {tls!r}; use 'TLS1_2' or later", None)


account_require_tls = ResourceValidationPolicy(
    name="azure-storage-account-require-tls",
    description="Storage accounts accept HTTPS only, with TLS 1.2 or later.",
    validate=_require_tls,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Set enable_https_traffic_only=True and minimum_tls_version='TLS1_2' on the "
    "StorageAccount.",
)


def _account_disallow_public_access(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No anonymous blob reads, and the account is reachable from our networks only."""
    if args.resource_type != ACCOUNT:
        return
    if get(args.props, "allowBlobPublicAccess") not in (False, UNKNOWN):
        report_violation("allowBlobPublicAccess is not false; disable anonymous blob access", None)
    network = get(args.props, "publicNetworkAccess")
    if network not in ("Disabled", UNKNOWN):
        report_violation(f"publicNetworkAccess is {network!r}; use 'Disabled' and a private endpoint", None)


account_disallow_public_access = ResourceValidationPolicy(
    name="azure-storage-account-disallow-public-access",
    description="Storage accounts allow no anonymous blob access and no open public network access.",
    validate=_account_disallow_public_access,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.CRITICAL,
    remediation_steps=(
        "Set allow_blob_public_access=False and public_network_access='Disabled'; reach the account "
        "through a "
        "private endpoint in the environment's virtual network."
    ),
)


def _container_disallow_public_access(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """A container-level public setting exposes every blob in it, model artifacts included."""
    if args.resource_type != CONTAINER:
        return
    access = get(args.props, "publicAccess", "None")
    if access not in ("None", UNKNOWN):
        report_violation(f"publicAccess is {access!r}; use 'None'", None)


blobcontainer_disallow_public_access = ResourceValidationPolicy(
    name="azure-storage-blobcontainer-disallow-public-access",
    description="Blob containers are never publicly readable.",
    validate=_container_disallow_public_access,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.CRITICAL,
    remediation_steps="Set public_access='None' on the BlobContainer; grant readers an RBAC role instead.",
)


def _require_cmk_encryption(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Customer-managed keys let us revoke access to every artifact at once."""
    if args.resource_type != ACCOUNT:
        return
    source = get(args.props, "encryption.keySource")
    if source is UNKNOWN:
        return
    if source != "Microsoft.Keyvault":
        report_violation(
            f"encryption.keySource is {source!r}; use 'Microsoft.Keyvault' with a customer-managed key", None
        )
    elif not get(args.props, "encryption.keyVaultProperties.keyName"):
        report_violation("encryption.keyVaultProperties.keyName is not set; name the Key Vault key", None)


account_require_cmk_encryption = ResourceValidationPolicy(
    name="azure-storage-account-require-cmk-encryption",
    description="Storage accounts are encrypted with a customer-managed Key Vault key.",
    validate=_require_cmk_encryption,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Set encryption.key_source='Microsoft.Keyvault' with key_vault_properties (key_vault_uri, key_name) "
        "and a user-assigned identity allowed to wrap/unwrap with the key."
    ),
)


def _disallow_shared_key(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Account keys are long-lived all-powerful credentials; Entra ID tokens are not."""
    if args.resource_type == ACCOUNT and get(args.props, "allowSharedKeyAccess") not in (False, UNKNOWN):
        report_violation("allowSharedKeyAccess is not false; authenticate with Entra ID", None)


account_disallow_shared_key = ResourceValidationPolicy(
    name="azure-storage-account-disallow-shared-key",
    description="Storage accounts disable shared-key (account key) authorization.",
    validate=_disallow_shared_key,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Set allow_shared_key_access=False and grant workloads 'Storage Blob Data Reader/Contributor' "
        "on the container through their managed identity."
    ),
)

POLICIES = [
    account_require_tls,
    account_disallow_public_access,
    blobcontainer_disallow_public_access,
    account_require_cmk_encryption,
    account_disallow_shared_key,
]
