"""`shipway new model`: name validation, no overwrites, and a fully rendered template (fast, no MLflow)."""

from __future__ import annotations

import ast
import json
import re
import subprocess

import pytest
from typer.testing import CliRunner

from shipway.cli import app
from shipway.commands.new import ProjectExistsError, generate_model_project
from tests.unit.gitops.actionlint import ROOT, actionlint_binary

EXPECTED = [".github/workflows/ci.yml", ".gitignore", "README.md", "ci.sh", "pyproject.toml", "stack-snippet.yaml",
    "tests/test_model.py", "train.py"]


def invoke(*args: str):
    return CliRunner().invoke(app, ["new", "model", *args], env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"})


def plain(output: str) -> str:
    """The error text without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def test_generates_every_template_file_with_the_name_substituted(tmp_path):
    gen = generate_model_project("fraud-scorer", tmp_path / "proj")
    assert sorted(str(p.relative_to(gen.root)) for p in gen.files) == EXPECTED
    for path in gen.files:
        text = path.read_text()
        assert "{{model_name}}" not in text, path
        if path.suffix != ".yml":  # a workflow's ${{ ... }} expressions are GitHub's, not ours
            assert "{{" not in text, path
    train = (gen.root / "train.py").read_text()
    assert 'MODEL_NAME = "fraud-scorer"' in train
    ast.parse(train)
    ast.parse((gen.root / "tests" / "test_model.py").read_text())
    assert "fraud-scorer:\n      version: 1" in (gen.root / "stack-snippet.yaml").read_text()


def test_the_training_script_logs_what_the_gates_read(tmp_path):
    train = (generate_model_project("fraud-scorer", tmp_path / "p").root / "train.py").read_text()
    for needle in ("signature=signature", "input_example=", "baseline_profile.json", "golden.csv",
                   "mlflow.log_metrics", "register_model", "build_profile", '"--tracking-uri"'):
        assert needle in train, needle


def test_json_output_lists_files_and_next_steps(tmp_path):
    out = invoke("fraud-scorer", "--dir", str(tmp_path / "p"), "--output", "json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["ok"] is True and sorted(doc["files"]) == EXPECTED
    assert doc["next"][-1] == "shipway model promote fraud-scorer --to local --version <N printed by train.py> --apply"


def test_default_directory_is_the_model_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("fraud-scorer").exit_code == 0
    assert (tmp_path / "fraud-scorer" / "train.py").is_file()


@pytest.mark.parametrize("name", ["Fraud", "f", "9lives", "fraud_scorer", "a" * 64])
def test_rejects_names_the_stack_config_would_reject(tmp_path, name):
    out = invoke(name, "--dir", str(tmp_path / "p"))
    assert out.exit_code == 2
    assert f"{name!r} is not a valid model name; use lowercase letters, digits and '-'" in plain(out.output)
    assert not (tmp_path / "p").exists()


def test_refuses_an_existing_directory_and_leaves_it_untouched(tmp_path):
    dest = tmp_path / "p"
    dest.mkdir()
    (dest / "train.py").write_text("mine\n")
    with pytest.raises(ProjectExistsError, match=r"^--dir: '.*/p' already exists; choose a new directory"):
        generate_model_project("fraud-scorer", dest)
    out = invoke("fraud-scorer", "--dir", str(dest))
    assert out.exit_code == 2
    assert f"Invalid value for --dir: '{dest}' already exists; choose a new directory" in plain(out.output)
    assert [p.name for p in dest.iterdir()] == ["train.py"] and (dest / "train.py").read_text() == "mine\n"


# ----------------------------------------------------------------------------- the project's CI


def _pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"uses:\s*([^\s@]+)@([0-9a-f]{40})", text))


def test_the_generated_workflow_is_actionlint_clean_and_runs_ci_sh(tmp_path):
    gen = generate_model_project("fraud-scorer", tmp_path / "p")
    workflow = gen.root / ".github" / "workflows" / "ci.yml"
    proc = subprocess.run([str(actionlint_binary()), "-format", "{{json .}}", str(workflow)], cwd=gen.root,
                          capture_output=True, text=True, timeout=120)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr

    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(workflow.read_text())
    job = doc["jobs"]["ci"]
    assert doc["permissions"] == {} and job["permissions"] == {"contents": "read"}
    assert [s["run"] for s in job["steps"] if "ci.sh" in str(s.get("run", ""))] == ["bash ci.sh"]
    # ci.sh reads these; the workflow provides every one (and shipway finds the stacks via SHIPWAY_ROOT)
    ci_sh = (gen.root / "ci.sh").read_text()
    for var in ("TRACKING_URI", "SHIPWAY_ENV"):
        assert f"${{{var}:-" in ci_sh and var in job["env"], var
    assert job["env"]["SHIPWAY_ROOT"].endswith("/.shipway-platform")
    checkout = [s for s in job["steps"] if s.get("with", {}).get("path") == ".shipway-platform"]
    assert len(checkout) == 1 and checkout[0]["with"]["persist-credentials"] is False


def test_the_generated_workflow_uses_the_same_action_pins_as_the_platform(tmp_path):
    """One action, one pin: bumping an action in Shipway's workflows must bump the template too."""
    gen = generate_model_project("fraud-scorer", tmp_path / "p")
    template_pins = _pins((gen.root / ".github" / "workflows" / "ci.yml").read_text())
    platform_pins: dict[str, str] = {}
    for path in (ROOT / ".github" / "workflows").glob("*.yml"):
        platform_pins.update(_pins(path.read_text()))
    assert template_pins and {a: p for a, p in template_pins.items() if platform_pins.get(a) != p} == {}


def test_actionlint_flags_a_broken_template_workflow(tmp_path):
    """The lint above can fail on a generated project: a bad expression in the same file is reported."""
    gen = generate_model_project("fraud-scorer", tmp_path / "p")
    workflow = gen.root / ".github" / "workflows" / "ci.yml"
    workflow.write_text(workflow.read_text().replace("${{ vars.SHIPWAY_REF || 'main' }}",
                                                     "${{ vars.SHIPWAY_REF.nope( }}"))
    proc = subprocess.run([str(actionlint_binary()), "-format", "{{json .}}", str(workflow)], cwd=gen.root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and json.loads(proc.stdout)
