"""Render ``docs/policies.md`` from the rule registry, so the table cannot drift from the code.

Run ``python -m policies.docgen``; a test fails when the checked-in page differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pulumi_policy import Policy, StackValidationPolicy

from policies._core import PROD_ONLY
from policies.envconfig import ENVIRONMENTS

DOC: Final = Path(__file__).resolve().parent.parent / "docs" / "policies.md"

_INTRO = """# Policy pack (`policies/`)

Shipway's CrossGuard pack checks every stack (local, dev, test, prod) before anything changes.
One pack serves every environment; what differs is the **policy config** the stack runs with:

```bash
pulumi preview --policy-pack policies --policy-pack-config policies/config/prod.json
```

| environment | enforcement | min log retention | allowed regions | gate evidence registry |
|---|---|---|---|---|
{env_rows}

*Mandatory* violations stop `pulumi preview`/`up`; *advisory* ones are printed and the run goes on.
Prod-only rules (capacity, data capture, rollback alarms, autoscaling, gate evidence, registry
protection) read `environment` from the same file and do nothing elsewhere.

## Running it for real

`tests/integration/test_policy_preview.py` (marker `integration`) runs the pack through the
project-built CLI (v3.274.1) and its Python language host on throwaway stacks: the real program
on a `local` stack previews with `config/local.json` and no violation at all; the fixture
`tests/integration/fixtures/policy/noncompliant/` (an endpoint on 0.0.0.0 serving `latest`
without tags, a 0644 secret file, an unretained registry pin) is blocked under `test.json` and
`prod.json` and only warned about under `dev.json`. Policy results appear in the CLI's text
output only (`pulumi preview --json` carries none).

## Changing the config

`policies/config/*.json` are generated from `policies/envconfig.py` (`python -m policies.envconfig`);
edit the table there, never the JSON. The format is the Pulumi CLI's:
`{{"all": "mandatory", "<rule>": {{"<setting>": value}}}}`. Settings a rule reads are declared in its
`config_schema` (see `policies/_core.py: SETTINGS`), so the CLI rejects a typo before the pack runs.
The gate-evidence rule asks the registry named by `trackingUri` or, when that is empty, the
stack's own `shipway:registryUri` (http/https only), through MLflow's REST API.

## Writing a rule

One function + one policy object per rule, in the module of its cloud and service
(`policies/aws/s3.py`, `policies/kubernetes/workloads.py`, ...), named
`<cloud>-<service>-<resource>-<verb>-<thing>` (`any-` for cross-cloud rules), with a description,
severity, `enforcement_level=ADVISORY` (environments raise it) and `remediation_steps`. Add it to
the module's `POLICIES`; `policies/registry.py` collects every module. Read props with
`policies._core.get` (values unknown at preview come back as `UNKNOWN`; stay silent on them, the
rule runs again at `up`). Tests in `tests/policies/` start from the compliant baselines in
`tests/policies/baselines.py`, change one property and assert the exact message. Regenerate this
page with `python -m policies.docgen`.

## Conventions the rules rely on

- Served models are named by an exact registry version: `models:/<name>/<N>` in the container env
  `SHIPWAY_MODEL_URI` (or `MLFLOW_MODEL_URI`), a versioned SageMaker model-package ARN, or a versioned
  Azure ML model id; local endpoints pass `modelName` + integer `modelVersion`.
- Prod rollback alarms on SageMaker endpoints have `latency`, `error` and `drift` in their names.
- Local resources are dynamic resources with an input `shipwayKind`.
- Secrets reach resources by reference only (the analyzer sees secrets decrypted, so a literal
  under a secret-looking name is reported whether or not it came from `--secret` config). A name is
  secret-looking when a secret word ends it on a word/camelCase boundary (`dbPassword`, `SASToken`,
  not `bypass`); on/off values (`Enabled`, `Disabled`, `true`, `false`, e.g. Azure Grafana's
  `apiKey: "Disabled"`) are switches, not secrets. The stack config the engine forwards to the
  Python dynamic provider (`pulumi:providers:pulumi-python`, keys `<ns>:<key>`) is the secret store
  itself and is not checked.
- IAM `Resource: "*"` is accepted only for actions AWS authorises on nothing else
  (`policies/aws/iam.py: RESOURCELESS_ACTIONS`: `ecr:GetAuthorizationToken`, the `ec2:Describe*`
  calls SageMaker needs to place VPC ENIs, the CloudWatch metric reads of Managed Grafana's
  dashboard, ...), and never next to a `*`/`service:*` action.
- S3 buckets use SSE-KMS with a customer-managed key, except a bucket that receives another
  bucket's server access logs (`aws:s3/bucketLogging` `targetBucket` in the same stack): S3 log
  delivery supports SSE-S3 only, so such a bucket must use `AES256`.
- A SageMaker `modelDataUrl` is accepted only when its path holds `models/<name>/<N>/` and the
  same container's `SHIPWAY_MODEL_URI` is exactly `models:/<name>/<N>` (same name and version);
  any other raw artifact path, or one next to a floating/alias/mismatched pin, is reported.

## What the pack cannot see (and what covers it instead)

- **Secretness.** The engine hands policies secret inputs already decrypted and unmarked, so the
  local `SecretFile`'s `value` cannot be checked for being a Pulumi secret; the component and its
  recording-mock tests own that guarantee.
- **`retainOnDelete` on cloud resources.** Resource options visible to policies include `protect`
  but not `retain_on_delete`; `any-mlops-registry-protect-from-delete` therefore requires
  `protect=True` on cloud registry resources (local registry resources may use their
  `retainOnDelete` input instead).
- **Values unknown at preview.** A rule that needs a computed value (an id, an ARN) stays silent
  during `pulumi preview` and judges it during `pulumi up`, where the engine runs the pack again.
- **Gate evidence without a registry.** With no `trackingUri` and no `shipway:registryUri`, the
  gate-evidence rule has nothing to ask and does nothing; an unreachable registry blocks prod
  (`requireReachableRegistry: true`) and is skipped on local/dev.

## Coverage: which types each rule family judges

[`docs/policy-coverage.md`](policy-coverage.md) is the table of every resource type the
components create (found by recording-mock runs of `infra` on every target and option set) and
the common alternatives, against each rule family (encryption, exposure, privilege, audit,
hardening, pinning, capacity, images, retention, tags). `policies/coverage.py` holds the
families and, from the rule modules' own type constants, the types each rule judges;
`tests/policies/test_coverage.py` fails when a component starts creating a type no family
claims, when a family's type is judged by none of its rules, or when the table is stale
(regenerate with `python -m tests.policies.coverage_table`). Known gaps are listed there as such.

## What the rules read

- **Inside JSON strings.** Some inputs arrive as JSON *strings* (an ECS task definition's
  `containerDefinitions`, IAM documents, the AWS provider's `defaultTags`); the secrets, image and
  tag rules parse them and judge what is inside.
- **Every spelling of a model pin.** Besides `SHIPWAY_MODEL_URI`/`MLFLOW_MODEL_URI`, any env var
  named `*_MODEL_URI`/`modelUri`/`*MODEL_REF` is judged as a reference and any `*_MODEL_VERSION`/
  `modelVersion` as a version number (`latest`, `Production` are moving). A raw artifact URL is
  accepted only as `models/<name>/<N>/` of the pinned version and, when the rule's `artifactRoot`
  setting is given (e.g. `s3://shipway-prod-models/`), only under that registry location.
- **Images by digest.** `any-container-image-pin-digest` requires `<repo>@sha256:<digest>` in test
  and prod on Kubernetes workloads and KServe, SageMaker models, ECS task definitions, Azure ML
  environments/deployments, Container Apps and Container Instances; dev accepts a tag but never
  `latest` or no tag. It is built and tested but *pending* (not yet served, see
  `policies/registry.py`) until the Kubernetes tracking Postgres default image is pinned by digest.
- **Provider default tags.** Tags from the AWS provider's `defaultTags` count as the resource's
  own. Azure has no provider-level default tags in azure-native; tags come from the component.

## Rules ({count})

| rule | kind | severity | local | dev | test | prod | checks | remediation |
|---|---|---|---|---|---|---|---|---|
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(policies: Sequence[Policy]) -> str:
    """The page text."""
    env_rows = "\n".join(
        f"| {env} | {s.enforcement} | {s.min_retention_days} days | "
        f"{', '.join(s.allowed_regions) or 'any'} | {s.tracking_uri or 'stack shipway:registryUri'} |"
        for env, s in ENVIRONMENTS.items()
    )
    lines = [_INTRO.format(env_rows=env_rows, count=len(policies))]
    for policy in sorted(policies, key=lambda p: p.name):
        kind = "stack" if isinstance(policy, StackValidationPolicy) else "resource"
        severity = policy.severity.value if policy.severity else "-"
        prod_only = PROD_ONLY in (policy.tags or [])
        levels = [
            "-" if prod_only and env != "prod" else ENVIRONMENTS[env].enforcement
            for env in ("local", "dev", "test", "prod")
        ]
        lines.append(
            f"| `{policy.name}` | {kind} | {severity} | {' | '.join(levels)} | {_cell(policy.description)} | "
            f"{_cell(policy.remediation_steps or '')} |\n"
        )
    lines.append("\n`-` = the rule applies in prod only.\n")
    return "".join(lines)


def main() -> None:
    """Write ``docs/policies.md``."""
    from policies.registry import ALL_POLICIES

    DOC.write_text(render(ALL_POLICIES))


if __name__ == "__main__":
    main()
