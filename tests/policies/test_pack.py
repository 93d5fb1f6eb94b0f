"""The pack as a whole: rule metadata, per-environment config files, the runtime entry point."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy
from ruamel.yaml import YAML

import policies
from policies._core import NAME_RE, SETTINGS
from policies.compliance.tags import TAGGABLE
from policies.envconfig import ENVIRONMENTS, render
from policies.registry import ALL_POLICIES, PENDING_POLICIES, by_name
from tests.policies.baselines import RESOURCES
from tests.policies.support import UNKNOWN_STR, check, mutate

PACK_DIR = Path(policies.__file__).resolve().parent
REPO = PACK_DIR.parent


def test_the_pack_has_at_least_25_rules_with_unique_stable_names() -> None:
    names = [p.name for p in ALL_POLICIES]
    assert len(names) >= 25
    assert len(set(names)) == len(names)
    assert [n for n in names if not NAME_RE.match(n)] == []


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=lambda p: p.name)
def test_every_rule_documents_itself(policy: Any) -> None:
    assert policy.description.endswith(".")
    assert policy.remediation_steps and len(policy.remediation_steps) > 40
    assert policy.severity is not None
    # Enforcement is decided per environment by policies/config/<env>.json, never hard-coded mandatory.
    assert policy.enforcement_level == EnforcementLevel.ADVISORY
    if policy.config_schema is not None:
        assert set(policy.config_schema.properties) <= set(SETTINGS)


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_config_files_are_generated_from_the_environment_table(env: str) -> None:
    path = PACK_DIR / "config" / f"{env}.json"
    assert path.read_text() == render(env, ALL_POLICIES), "run: python -m policies.envconfig"


@pytest.mark.parametrize(
    ("env", "level"),
    [("local", "advisory"), ("dev", "advisory"), ("test", "mandatory"), ("prod", "mandatory")],
)
def test_enforcement_per_environment(env: str, level: str) -> None:
    config = json.loads((PACK_DIR / "config" / f"{env}.json").read_text())
    assert config["all"] == level
    assert {v["environment"] for k, v in config.items() if isinstance(v, dict) and "environment" in v} == {
        env
    }


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_config_values_match_each_rules_schema(env: str) -> None:
    """What the CLI checks before starting the pack: known rule names, declared and well-typed settings."""
    json_types = {"string": str, "integer": int, "boolean": bool, "array": list}
    config = json.loads((PACK_DIR / "config" / f"{env}.json").read_text())
    for name, values in config.items():
        if name == "all":
            continue
        schema = by_name(name).config_schema
        assert schema is not None and set(values) == set(schema.properties), name
        for key, value in values.items():
            spec = schema.properties[key]
            assert isinstance(value, json_types[spec["type"]]), (name, key)
            assert "enum" not in spec or value in spec["enum"]


def test_policy_pack_yaml_runs_python_in_the_project_venv() -> None:
    doc = YAML(typ="safe").load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert doc["runtime"] == {"name": "python", "options": {"virtualenv": "../.venv"}}
    assert doc["description"]
    assert (PACK_DIR / doc["runtime"]["options"]["virtualenv"]).resolve() == REPO / ".venv"


def test_main_builds_the_advisory_shipway_pack_from_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}
    import pulumi_policy

    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: built.update(kwargs))
    monkeypatch.setattr(sys, "path", list(sys.path))  # __main__ re-roots sys.path for the runtime
    runpy.run_path(str(PACK_DIR), run_name="__main__")
    assert built["name"] == "shipway-policies"
    assert built["enforcement_level"] == EnforcementLevel.ADVISORY
    assert [p.name for p in built["policies"]] == [p.name for p in ALL_POLICIES]


def _sdk_file(token: str) -> Path:
    """The generated SDK module defining a resource type token."""
    package, module, cls = token.split(":")
    module = module.split("/")
    root = {"aws": "pulumi_aws", "azure-native": "pulumi_azure_native"}[package]
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", module[-1] if len(module) > 1 else cls).lower()
    site = Path(pulumi_policy_site())
    return site / root / module[0] / f"{name}.py"


def pulumi_policy_site() -> str:
    import pulumi_aws

    return str(Path(pulumi_aws.__file__).resolve().parent.parent)


@pytest.mark.parametrize("token", sorted(TAGGABLE))
def test_taggable_types_exist_and_take_tags_in_the_installed_sdks(token: str) -> None:
    path = _sdk_file(token)
    text = path.read_text()
    assert f"'{token}'" in text or f'"{token}"' in text, path
    assert re.search(r"^\s+tags: pulumi\.Input", text, re.MULTILINE), path


@pytest.mark.parametrize("key", ["sm-endpoint-config", "storage-account", "k8s-serving", "local-endpoint"])
def test_rules_stay_silent_on_values_unknown_at_preview(key: str) -> None:
    """At preview, computed inputs are unknown; rules judge them at `pulumi up` instead of failing."""
    base = RESOURCES[key]
    paths = {
        "sm-endpoint-config": ["kmsKeyArn", "dataCaptureConfig", "productionVariants.0.initialInstanceCount"],
        "storage-account": ["publicNetworkAccess", "encryption.keySource", "minimumTlsVersion", "tags"],
        "k8s-serving": ["spec.template.spec.containers.0.env.0.value", "spec.replicas"],
        "local-endpoint": ["host", "modelVersion", "apiKeyFile"],
    }[key]
    props = base.props
    for path in paths:
        props = mutate(props, path, UNKNOWN_STR)
    rules = [
        p
        for p in ALL_POLICIES
        if isinstance(p, ResourceValidationPolicy) and p.name != "any-mlops-endpoint-require-gate-evidence"
    ]
    assert {p.name: check(p, base.type, props) for p in rules if check(p, base.type, props)} == {}


def test_docs_table_is_generated_from_the_registry() -> None:
    from policies.docgen import DOC
    from policies.docgen import render as render_doc

    assert DOC.read_text() == render_doc(ALL_POLICIES), "run: python -m policies.docgen"
    for policy in ALL_POLICIES:
        assert f"| `{policy.name}` |" in DOC.read_text()


def test_prod_only_rules_are_exactly_the_environment_dependent_ones() -> None:
    prod_only = {p.name for p in ALL_POLICIES if "prod-only" in (p.tags or [])}
    env_aware = {
        p.name
        for p in [*ALL_POLICIES, *PENDING_POLICIES]
        if p.config_schema is not None and "environment" in p.config_schema.properties
    }
    # The tag rule reads the environment only to compare it with the `environment` tag; the image
    # rule to know whether a tag alone is enough (dev) or a digest is required (test, prod).
    assert env_aware - prod_only == {"any-compliance-resource-require-tags", "any-container-image-pin-digest"}
    assert len(prod_only) == 12


def test_the_policy_runtime_starts_the_pack_from_any_working_directory(tmp_path: Path) -> None:
    """`python -m pulumi.policy <engine> policies` (what the language host runs) serves the pack on a port."""
    import subprocess

    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and pack
        [sys.executable, "-m", "pulumi.policy", "127.0.0.1:1", str(PACK_DIR)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.isdigit(), proc.stderr.read() if proc.stderr else first
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("target", "resource", "path"),
    [
        ("kubernetes", "default-deny", "spec.policyTypes"),
        ("kubernetes", "churn-hpa", "spec.minReplicas"),
        ("azure", "key-vault-diagnostics", "logs"),
        ("aws", "models-sse", "rules"),
        ("aws", "models-pab", "blockPublicAcls"),
        ("aws", "models-tls", "policy"),
        ("aws", "churn-scaling", "minCapacity"),
    ],
)
def test_stack_rules_stay_silent_on_values_unknown_at_preview(target: str, resource: str, path: str) -> None:
    from pulumi_policy import StackValidationPolicy

    from tests.policies.baselines import PROD, STACKS
    from tests.policies.support import StackCase, apply_stack_case, check_stack

    resources = apply_stack_case(STACKS[target](), StackCase("", target, resource, path, UNKNOWN_STR, []))
    rules = [p for p in ALL_POLICIES if isinstance(p, StackValidationPolicy)]
    found = {p.name: check_stack(p, resources, config=PROD) for p in rules}
    assert {name: f for name, f in found.items() if f} == {}


def test_every_rule_has_a_mutation_case() -> None:
    """Each rule is exercised by a baseline-plus-one-change case, or by its dedicated tests below."""
    import importlib

    dedicated = {
        "any-mlops-endpoint-require-gate-evidence": "test_gate_evidence.py (fake registry lookups)",
        "any-mlops-registry-protect-from-delete": "test_cross_cloud_rules.py (protect is an option)",
        "aws-iam-accesskey-disallow-creation": "test_aws_rules.py (no compliant access key exists)",
    }
    covered = set()
    for module in ("aws", "azure", "kubernetes", "local", "cross_cloud"):
        tests = importlib.import_module(f"tests.policies.test_{module}_rules")
        covered |= {c.policy for c in [*getattr(tests, "CASES", []), *getattr(tests, "STACK_CASES", [])]}
    assert {p.name for p in ALL_POLICIES} - covered == set(dedicated)
