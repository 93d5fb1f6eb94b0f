"""The deploy role can make every call its workflows make, and nothing more.

The calls come from ``tests/support/aws_calls.py`` (derived from deploy-env.yml and the code it
runs); the boto3 methods of the AWS adapter are read from the source here, so a new call without a
table entry fails. The policy is the one ``DeployIdentity`` creates under recording mocks, with
the state backend docs/gitops.md prescribes (``aws.stateBucket``/``aws.stateKeyArn``).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from components.aws.identity import DeployIdentity, DeployIdentityArgs
from tests.support.aws_calls import (
    ACCOUNT,
    BOTO3_METHODS,
    DEPLOY_ROLE_CALLS,
    READ_ONLY_ROLE_METHODS,
    REGION,
    SOURCE,
    STATE,
    Call,
)
from tests.support.recording import FAKE_ACCOUNT, record
from tests.unit.aws.support import KEY_ARN, SETTINGS, TAGS, doc, outputs

ROOT = Path(__file__).resolve().parents[3]
STATE_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/state"
SOURCE_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/source"


def _policy(**settings: Any) -> list[dict[str, Any]]:
    configured = replace(SETTINGS, **{"promotion_source_bucket": SOURCE, "promotion_source_key_arn": SOURCE_KEY,
                                      "state_bucket": STATE, "state_key_arn": STATE_KEY, **settings})
    rec = record(lambda: DeployIdentity(
        "deploy", DeployIdentityArgs("prod", TAGS), configured, artifact_bucket="shipway-prod-artifacts-mock",
        kms_key_arn=KEY_ARN, endpoint_role_arns=[f"arn:aws:iam::{FAKE_ACCOUNT}:role/churn-role"],
        tracking_server_arn=f"arn:aws:sagemaker:{REGION}:{FAKE_ACCOUNT}:mlflow-tracking-server/shipway-prod-mlflow",
    ), outputs=outputs)
    statements: list[dict[str, Any]] = doc(rec.named("deploy-policy"), "policy")["Statement"]
    return statements


def _matches(condition: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, keys in condition.items():
        for key, wanted in keys.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            got = context.get(key)
            if got is None:
                return False
            if operator == "StringLike" and not any(fnmatch.fnmatchcase(got, v) for v in values):
                return False
            if operator in ("StringEquals", "Bool") and got not in values:
                return False
    return True


def allowed(statements: list[dict[str, Any]], call: Call) -> bool:
    """IAM's evaluation for Allow statements: action listed, resource pattern matches, conditions hold."""
    return any(
        s["Effect"] == "Allow" and call.action in s["Action"]
        and any(fnmatch.fnmatchcase(call.resource, r) for r in s["Resource"])
        and _matches(s.get("Condition", {}), call.context)
        for s in statements
    )


@pytest.mark.parametrize("call", DEPLOY_ROLE_CALLS, ids=lambda c: f"{c.by}: {c.action} {c.resource.split(':')[-1]}")
def test_every_call_of_the_deploy_workflows_is_allowed(call: Call) -> None:
    assert allowed(_policy(), call), f"{call.by} needs {call.action} on {call.resource} {call.context}"


def test_the_deploy_role_holds_no_permission_its_workflows_do_not_use() -> None:
    statements = _policy()
    granted = {a for s in statements for a in s["Action"]}
    used = {c.action for c in DEPLOY_ROLE_CALLS}
    assert granted - used == set()
    for s in statements:
        assert not any(a == "*" or a.endswith(":*") for a in s["Action"]), s["Sid"]
        assert "*" not in s["Resource"], s["Sid"]


def test_state_access_is_this_environments_stack_only() -> None:
    statements = _policy()
    other_stack = Call("x", "s3:PutObject", f"arn:aws:s3:::{STATE}/shipway/.pulumi/stacks/shipway/dev.json")
    other_prefix = Call("x", "s3:GetObject", f"arn:aws:s3:::{STATE}/other-project/.pulumi/stacks/x/prod.json")
    other_key_use = Call("x", "kms:Decrypt", SOURCE_KEY)  # the source key only through S3
    assert not any(allowed(statements, c) for c in (other_stack, other_prefix, other_key_use))
    without = {s["Sid"] for s in _policy(state_bucket=None, state_key_arn=None)}
    assert not without & {"ListOwnStackState", "ReadWriteOwnStackState", "StateKeyViaS3", "StackSecretsProvider"}


def _boto3_methods() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "shipway" / "targets" / "aws.py", ROOT / "shipway" / "aws_ops.py"):
        text = path.read_text()
        found |= set(re.findall(r"\b(?:sm|s3|runtime)\.([a-z_0-9]+)\(", text))
        found |= set(re.findall(r"_client\(\"[a-z-]+\"\)\.([a-z_0-9]+)\(", text))
        found |= set(re.findall(r"get_paginator\(\"([a-z_0-9]+)\"\)", text))
    return found - {"get_paginator", "paginate"}


def test_the_call_table_covers_every_boto3_method_the_adapter_calls() -> None:
    methods = _boto3_methods()
    assert methods == set(BOTO3_METHODS), "update tests/support/aws_calls.py (and the deploy role if needed)"
    deploy_actions = {c.action for c in DEPLOY_ROLE_CALLS}
    for method in methods - READ_ONLY_ROLE_METHODS:
        assert set(BOTO3_METHODS[method]) <= deploy_actions, method
