"""The policy pack run by the real engine: `pulumi preview --policy-pack policies`.

The unit tests under tests/policies call the rule functions directly; these tests prove the
same rules load and judge real previews through the project-built CLI, its Python language
host and pulumi-policy's analyzer, with the per-environment configs in policies/config/:

- the real Shipway program on a throwaway `local` stack passes with no violation at all;
- a deliberately non-compliant program (tests/integration/fixtures/policy/noncompliant/)
  is blocked by the test/prod config (mandatory) and only warned about by the dev config
  (advisory), with the exact rule names, resources and messages.

Preview starts no process: the local stack's dynamic resources only run check/diff.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from shipway import engine
from tests.integration.conftest import make_project

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policies"
NONCOMPLIANT = Path(__file__).resolve().parent / "fixtures" / "policy" / "noncompliant"

# `- [mandatory] [severity: high]  <rule>  (<type>: <name>)`, then the rule's description, then
# the violation message (the CLI's text output; `--json` carries no policy results).
_VIOLATION = re.compile(
    r"^\s*- \[(?P<level>advisory|mandatory)\] \[severity: (?P<severity>\w+)\]\s+(?P<rule>\S+)\s+"
    r"\((?P<type>[^:]+:[^:]+:[^:]+): (?P<name>[^)]+)\)\s*$"
)


@dataclass(frozen=True)
class Violation:
    """One policy violation as the CLI printed it."""

    level: str
    rule: str
    resource: str
    message: str


def violations(output: str) -> set[Violation]:
    """Every violation in a preview's text output."""
    lines = output.splitlines()
    found: set[Violation] = set()
    for index, line in enumerate(lines):
        match = _VIOLATION.match(line)
        if match and index + 2 < len(lines):
            found.add(Violation(match["level"], match["rule"], match["name"], lines[index + 2].strip()))
    return found


def preview(cwd: Path, stack: str, env: dict[str, str], config: str) -> subprocess.CompletedProcess[str]:
    """`pulumi preview` with the pack and ``policies/config/<config>.json``."""
    return subprocess.run(
        [str(engine.pulumi_binary(ROOT)), "preview", "--stack", stack, "--non-interactive",
         "--policy-pack", str(PACK), "--policy-pack-config", str(PACK / "config" / f"{config}.json")],
        cwd=cwd, env=env, text=True, capture_output=True, timeout=600, check=False,
    )


# ------------------------------------------------------------------ compliant: the real program


def test_real_local_stack_passes_the_pack_with_no_violation(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    project.pin("churn", 3)  # so the preview has an endpoint, a registry pin and a secret file
    out = preview(project.dir, project.stack, project.env, "local")
    assert out.returncode == 0, out.stdout + out.stderr
    # The pack judged the real program's resources, not an empty stack...
    for resource in ("tracking-server", "secrets-endpoint-api-key", "churn-pin-alias", "churn-server",
                     "observability-prometheus"):
        assert f"pulumi-python:dynamic:Resource {resource} create" in out.stdout
    # ...and found nothing, not even advisory findings.
    assert "✅ shipway-policies@v0.0.1" in out.stdout
    assert violations(out.stdout) == set()
    assert "[advisory]" not in out.stdout and "[mandatory]" not in out.stdout


# ------------------------------------------------------------------ non-compliant fixture

ALWAYS = {
    ("local-serving-endpoint-bind-loopback", "bad-endpoint",
     "host is '0.0.0.0'; bind the endpoint to 127.0.0.1"),
    ("local-serving-endpoint-pin-exact-version", "bad-endpoint",
     "modelVersion is 'latest'; pin an exact registry version (a positive integer)"),
    ("any-compliance-resource-require-tags", "bad-endpoint",
     "missing required tags: cost-center, environment, data-classification"),
    ("local-secret-file-restrict-mode", "bad-secret",
     "mode is '0644'; secret files are written with mode '0600'"),
}
PROD_ONLY = {
    ("local-registry-pin-retain-in-prod", "bad-pin",
     "retainOnDelete is not true and the resource is not protected; prod registry pins survive "
     "pulumi destroy"),
}


@dataclass
class Fixture:
    dir: Path
    stack: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def noncompliant(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    """The fixture program copied to a temp dir with its own stack and file backend."""
    tmp = tmp_path_factory.mktemp("policy-noncompliant")
    project = tmp / "project"
    shutil.copytree(NONCOMPLIANT, project)
    manifest = yaml.safe_load((project / "Pulumi.yaml").read_text())
    manifest["runtime"]["options"]["virtualenv"] = str(ROOT / ".venv")
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    stack = "t-noncompliant"
    env = engine.pulumi_env(stack, ROOT)
    (tmp / "state").mkdir()
    env["PULUMI_BACKEND_URL"] = f"file://{tmp / 'state'}"
    init = subprocess.run([str(engine.pulumi_binary(ROOT)), "stack", "init", stack, "--non-interactive"],
                          cwd=project, env=env, text=True, capture_output=True, check=False)
    assert init.returncode == 0, init.stderr
    return Fixture(project, stack, env)


def _found(out: subprocess.CompletedProcess[str], level: str) -> set[tuple[str, str, str]]:
    found = violations(out.stdout)
    assert {v.level for v in found} == {level}, out.stdout
    return {(v.rule, v.resource, v.message) for v in found}


@pytest.mark.parametrize("config", ["test", "prod"])
def test_mandatory_config_blocks_the_noncompliant_program(noncompliant: Fixture, config: str) -> None:
    out = preview(noncompliant.dir, noncompliant.stack, noncompliant.env, config)
    assert out.returncode != 0, out.stdout
    assert "❌ shipway-policies@v0.0.1" in out.stdout
    expected = ALWAYS | (PROD_ONLY if config == "prod" else set())
    assert _found(out, "mandatory") == expected


def test_advisory_dev_config_reports_but_does_not_block(noncompliant: Fixture) -> None:
    out = preview(noncompliant.dir, noncompliant.stack, noncompliant.env, "dev")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "⚠️ shipway-policies@v0.0.1" in out.stdout
    # The prod-only retention rule stays quiet outside prod.
    assert _found(out, "advisory") == ALWAYS
