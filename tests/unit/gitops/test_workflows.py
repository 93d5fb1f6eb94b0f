"""The GitHub Actions workflows: actionlint-clean, SHA-pinned, OIDC-only, least privilege, ordered.

Structural rules are asserted on the parsed YAML; the shell that decides *what* to preview or
deploy is executed for real against throwaway git repositories, and every `shipway` invocation
is checked against the CLI's actual options so a renamed flag breaks this test, not a deploy.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main
from ruamel.yaml import YAML

from shipway.cli import app as shipway_app
from shipway_core.config import ENVIRONMENTS
from tests.unit.gitops.actionlint import ROOT, actionlint_binary

WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
CLOUD_ENVS = [e for e in ENVIRONMENTS if e != "local"]  # the stacks CI previews and deploys
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\s*$")
AWS_CREDENTIALS_ACTION = "aws-actions/configure-aws-credentials"


def load(name: str) -> dict[str, Any]:
    return YAML(typ="safe").load((WORKFLOWS / name).read_text())


def jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return doc["jobs"]


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def step(job: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in steps(job) if s.get("id") == step_id)


def uses_aws_credentials(job: dict[str, Any]) -> bool:
    return any(str(s.get("uses", "")).startswith(AWS_CREDENTIALS_ACTION + "@") for s in steps(job))


def all_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    return [(f.name, name, job) for f in FILES for name, job in jobs(load(f.name)).items()]


def test_the_expected_workflows_exist():
    assert {f.name for f in FILES} == {
        "pull-request.yml", "merge-to-main.yml", "deploy-env.yml", "rollback-pr.yml", "promote.yml",
        "drift-watch.yml", "release-image.yml",
    }


# ----------------------------------------------------------------------------- actionlint


def test_actionlint_reports_no_findings():
    binary = actionlint_binary()
    proc = subprocess.run([str(binary), "-format", "{{json .}}", *map(str, FILES)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"{f['filepath']}:{f['line']}: {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr


def test_actionlint_flags_a_broken_workflow(tmp_path):
    """The lint test above can fail: the same invocation reports a bad expression."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope.nope }}\n")
    proc = subprocess.run([str(actionlint_binary()), "-format", "{{json .}}", str(bad)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert any("nope" in f["message"] for f in json.loads(proc.stdout))


# ------------------------------------------------------------------------- supply chain


def test_every_action_is_pinned_by_a_full_commit_sha_with_a_version_comment():
    problems = []
    for path in FILES:
        for no, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if not match or match.group(1).startswith("./"):
                continue
            ref, rest = match.groups()
            if not SHA_PIN.match(ref) or not VERSION_COMMENT.search(rest):
                problems.append(f"{path.name}:{no}: {line.strip()}")
    assert problems == []


def test_one_action_has_one_pin_across_all_workflows():
    pins: dict[str, set[str]] = {}
    for path in FILES:
        for ref in re.findall(r"uses:\s*([^\s.][^\s@]*)@([0-9a-f]{40})", path.read_text()):
            pins.setdefault(ref[0], set()).add(ref[1])
    assert pins and {a: s for a, s in pins.items() if len(s) > 1} == {}


def test_local_reusable_workflows_exist():
    for path in FILES:
        for ref in re.findall(r"uses:\s*\./(\S+)", path.read_text()):
            assert (ROOT / ref).is_file(), f"{path.name}: {ref} does not exist"


# ------------------------------------------------------------------- credentials and IAM


def test_no_long_lived_aws_keys_anywhere():
    for path in FILES:
        text = path.read_text()
        for needle in ("aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY_ID",
                       "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            assert needle not in text, f"{path.name} mentions {needle}"


def test_aws_credentials_come_from_oidc_roles_held_in_variables():
    seen = 0
    for wf, name, job in all_jobs():
        for s in steps(job):
            if str(s.get("uses", "")).startswith(AWS_CREDENTIALS_ACTION + "@"):
                seen += 1
                role = s["with"]["role-to-assume"]
                assert re.fullmatch(r"\$\{\{ .*vars\.AWS_[A-Z_]*ROLE_ARN.* \}\}", role), (wf, name, role)
                assert set(s["with"]) <= {"role-to-assume", "aws-region", "role-session-name"}, (wf, name)
    # PR preview, deploy (one step used for dev, test and prod), promotion gates, drift watch.
    assert seen == 4


def test_workflows_grant_nothing_by_default_and_every_job_declares_its_permissions():
    for path in FILES:
        doc = load(path.name)
        assert doc["permissions"] == {}, path.name
        for name, job in jobs(doc).items():
            assert "permissions" in job, f"{path.name}:{name} has no permissions block"
            assert "write-all" not in str(job["permissions"]), f"{path.name}:{name}"


def test_id_token_write_only_on_jobs_that_assume_an_aws_role():
    for wf, name, job in all_jobs():
        wants_token = job["permissions"].get("id-token") == "write"
        calls_deploy = job.get("uses") == "./.github/workflows/deploy-env.yml"
        assert wants_token == (uses_aws_credentials(job) or calls_deploy), f"{wf}:{name}"


def test_jobs_that_assume_a_role_run_in_a_github_environment():
    """The deploy role trusts `repo:<owner>/<name>:environment:<env>` tokens only (identity.py)."""
    for wf, name, job in all_jobs():
        if uses_aws_credentials(job):
            assert job["environment"]["name"].startswith("${{"), f"{wf}:{name}"


def test_jobs_with_write_tokens_have_no_cloud_credentials():
    for wf, name, job in all_jobs():
        perms = job["permissions"]
        if "write" in {perms.get("contents"), perms.get("pull-requests"), perms.get("issues")}:
            assert not uses_aws_credentials(job) and perms.get("id-token") != "write", f"{wf}:{name}"


def test_checkouts_do_not_persist_the_token():
    for wf, name, job in all_jobs():
        for s in steps(job):
            if str(s.get("uses", "")).startswith("actions/checkout@"):
                assert s["with"]["persist-credentials"] is False, f"{wf}:{name}"


# ----------------------------------------------------------------------- deploy ordering


def test_merge_deploys_dev_then_test_then_prod_through_needs():
    merge = jobs(load("merge-to-main.yml"))
    deploys = {job["with"]["environment"]: name for name, job in merge.items()
               if job.get("uses") == "./.github/workflows/deploy-env.yml"}
    assert list(deploys) == CLOUD_ENVS
    for before, after in zip(CLOUD_ENVS, CLOUD_ENVS[1:], strict=False):
        needs = merge[deploys[after]]["needs"]
        assert deploys[before] in (needs if isinstance(needs, list) else [needs])
    assert "deploy" not in str(merge[deploys["dev"]]["needs"])


def test_each_environment_deploys_in_its_own_non_cancelling_concurrency_group():
    merge = jobs(load("merge-to-main.yml"))
    groups = {}
    for job in merge.values():
        if job.get("uses") == "./.github/workflows/deploy-env.yml":
            env = job["with"]["environment"]
            assert job["concurrency"]["cancel-in-progress"] is False  # never kill a running `up`
            groups[env] = job["concurrency"]["group"]
    assert groups == {e: f"shipway-deploy-{e}" for e in CLOUD_ENVS}


def test_deploy_job_runs_in_the_environment_it_deploys_so_prod_approvals_apply():
    deploy = jobs(load("deploy-env.yml"))["deploy"]
    assert deploy["environment"] == {"name": "${{ inputs.environment }}"}
    merge = jobs(load("merge-to-main.yml"))
    assert merge["deploy-prod"]["with"]["environment"] == "prod"


def test_deploy_runs_up_with_the_env_policy_pack_then_verifies_and_rolls_back_on_failure():
    deploy = jobs(load("deploy-env.yml"))["deploy"]
    up = step(deploy, "up")["run"]
    assert "pulumi up --stack \"$STACK\"" in up
    assert up.index('shipway env preflight "$STACK"') < up.index("pulumi up")  # pins READY before every up
    assert '--policy-pack policies --policy-pack-config "policies/config/$STACK.json"' in up
    assert 'shipway env verify "$STACK"' in step(deploy, "verify")["run"]
    rollback = step(deploy, "rollback-pins")
    assert rollback["if"] == "failure() && (steps.up.outcome == 'failure' || steps.verify.outcome == 'failure')"
    assert 'shipway env revert-pins "$STACK" --since "$BEFORE_SHA"' in rollback["run"]
    names = [s.get("name", "") for s in steps(deploy)]
    assert names.index("pulumi up the rolled-back pins") > names.index(rollback["name"])


def test_rollback_prs_are_opened_only_after_a_rollback():
    merge = jobs(load("merge-to-main.yml"))
    for env in CLOUD_ENVS:
        job = merge[f"rollback-pr-{env}"]
        assert job["needs"] == f"deploy-{env}"
        assert job["if"] == f"failure() && needs.deploy-{env}.outputs.rolled-back == 'true'"


# ------------------------------------------------------------ which stacks a PR previews


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path):
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "config", "user.email", "t@example.invalid")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "README.md").write_text("x\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def _commit(repo: Path, files: list[str]) -> str:
    for f in files:
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        (repo / f).write_text(f"changed {f}\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "change")
    return _git(repo, "rev-parse", "HEAD")


def _run_step(script: str, repo: Path, env: dict[str, str]) -> dict[str, str]:
    out = repo / "gh-output"
    out.write_text("")
    subprocess.run(["bash", "-e", "-c", script], cwd=repo, check=True, capture_output=True, text=True,
                   env={"PATH": "/usr/bin:/bin:/usr/local/bin", "GITHUB_OUTPUT": str(out), **env})
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


@pytest.mark.parametrize(("files", "expected"), [
    (["stacks/Pulumi.test.yaml"], ["test"]),
    (["stacks/Pulumi.dev.yaml", "stacks/Pulumi.prod.yaml"], ["dev", "prod"]),
    (["stacks/Pulumi.local.yaml", "docs/x.md"], []),
    (["components/aws/endpoint.py"], ["dev", "test", "prod"]),
    (["policies/config/prod.json"], ["dev", "test", "prod"]),
    (["infra/program.py", "stacks/Pulumi.dev.yaml"], ["dev", "test", "prod"]),
])
def test_pr_previews_the_stacks_its_changes_touch(repo, files, expected):
    base = _git(repo, "rev-parse", "HEAD")
    head = _commit(repo, files)
    script = step(jobs(load("pull-request.yml"))["changes"], "envs")["run"]
    assert json.loads(_run_step(script, repo, {"BASE_SHA": base, "HEAD_SHA": head})["envs"]) == expected


@pytest.mark.parametrize(("files", "platform"), [
    (["stacks/Pulumi.dev.yaml"], "false"),
    (["stacks/Pulumi.dev.yaml", "components/aws/endpoint.py"], "true"),
    (["shipway/promotion.py"], "true"),
])
def test_merge_chooses_the_platform_role_unless_only_pins_changed(repo, files, platform):
    before = _git(repo, "rev-parse", "HEAD")
    _commit(repo, files)
    script = step(jobs(load("merge-to-main.yml"))["changes"], "kind")["run"]
    assert _run_step(script, repo, {"BEFORE_SHA": before})["platform"] == platform


def test_merge_with_an_unknown_before_commit_is_treated_as_a_platform_change(repo):
    script = step(jobs(load("merge-to-main.yml"))["changes"], "kind")["run"]
    assert _run_step(script, repo, {"BEFORE_SHA": "0" * 40})["platform"] == "true"


def test_preview_runs_the_policy_pack_with_the_env_config_and_comments_on_the_pr():
    pr = jobs(load("pull-request.yml"))
    preview = pr["preview"]
    assert preview["strategy"]["matrix"]["env"] == "${{ fromJSON(needs.changes.outputs.envs) }}"
    script = "\n".join(s.get("run", "") for s in steps(preview))
    assert '--policy-pack policies --policy-pack-config "policies/config/$STACK.json"' in script
    for env in CLOUD_ENVS:
        assert (ROOT / "policies" / "config" / f"{env}.json").is_file()
    comment = pr["comment"]
    assert comment["permissions"] == {"pull-requests": "write"}
    assert "createComment" in steps(comment)[-1]["with"]["script"]
    assert {"lint", "typecheck", "test"} <= set(pr)
    assert "make test" in steps(pr["test"])[-1]["run"]


# ---------------------------------------------------------------- promotion and drift


def test_promote_dispatch_inputs_and_gate_evidence_in_the_pr():
    doc = load("promote.yml")
    inputs = doc["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"model", "to", "version", "reason"}
    assert inputs["to"]["options"] == CLOUD_ENVS
    gates = jobs(doc)["gates"]
    promote = step(gates, "promote")["run"]
    assert "shipway model promote" in promote and "--output json" in promote and "--apply" not in promote
    body = steps(jobs(doc)["pull-request"])[-1]["run"]
    assert "gh pr create" in body and ".gates.gates" in body


def test_inputs_reach_shell_scripts_only_through_env_variables():
    """`${{ inputs.* }}` or event text inside `run:` is script injection; env vars are not."""
    for wf, name, job in all_jobs():
        for s in steps(job):
            run = s.get("run", "")
            assert not re.search(r"\$\{\{\s*(inputs|github\.event)\.", run), f"{wf}:{name}: {s.get('name')}"


def test_drift_watch_runs_on_a_schedule_for_every_cloud_env_and_files_issues():
    doc = load("drift-watch.yml")
    assert doc["on"]["schedule"] and "workflow_dispatch" in doc["on"]
    drift = jobs(doc)["drift"]
    assert drift["strategy"]["matrix"]["env"] == CLOUD_ENVS
    script = "\n".join(s.get("run", "") for s in steps(drift))
    assert "shipway monitor drift" in script and "--fail-on-drift" in script
    assert jobs(doc)["issue"]["permissions"] == {"issues": "write"}


# ------------------------------------------------------------ CLI calls match the CLI


def _shipway_calls() -> list[tuple[str, list[str]]]:
    calls = []
    for path in FILES:
        text = path.read_text().replace("\\\n", " ")
        for match in re.finditer(r"\bshipway (model|env|monitor|audit|platform) ([a-z][a-z-]*)([^\n]*)", text):
            noun, verb, rest = match.groups()
            flags = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest)
            calls.append((f"{noun} {verb}", flags))
    return calls


def test_every_shipway_invocation_uses_real_commands_and_options():
    root = typer.main.get_command(shipway_app)
    calls = _shipway_calls()
    assert {c for c, _ in calls} >= {"model promote", "env preflight", "env verify", "env revert-pins", "env status",
                                     "env capture", "monitor drift"}
    for command, flags in calls:
        noun, verb = command.split()
        group = root.commands[noun]  # type: ignore[attr-defined]
        group = group.load() if hasattr(group, "load") else group  # nouns are imported lazily (shipway/cli.py)
        cmd = group.commands.get(verb)
        assert cmd is not None, f"`shipway {command}` does not exist"
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        assert set(flags) <= known, f"`shipway {command}`: unknown {sorted(set(flags) - known)}"


def test_shlex_quoting_of_rollback_reason_survives_spaces():
    """The rollback reason is passed as one quoted argument, never word-split."""
    rollback = step(jobs(load("deploy-env.yml"))["deploy"], "rollback-pins")["run"]
    line = next(x for x in rollback.splitlines() if "--reason" in x)
    assert '--reason "$REASON"' in line and shlex.split(line)


def test_workflows_call_the_shipway_cli_and_carry_no_python_pipelines():
    """Verification, rollback and data capture are `shipway` commands (the same code path as a laptop):
    no heredoc scripts, no `python -` stdin programs, no shipway imports inside YAML."""
    for path in FILES:
        text = path.read_text()
        for marker in ("<<'PY'", '<<"PY"', "<<PY", "python -  ", "python - ", "from shipway", "import shipway"):
            assert marker not in text, f"{path.name}: {marker!r} (move the logic into a shipway command)"
