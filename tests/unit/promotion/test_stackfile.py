"""Stack-file pin edits: exactly the pin changes, comments and formatting survive."""

from __future__ import annotations

import difflib
import os
import subprocess
from pathlib import Path

import pytest

from shipway import stackfile
from shipway.stackfile import StackFileError

from .conftest import MODEL, stack_text


def diff(old: str, new: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_changing_a_pin_is_a_one_line_diff_that_keeps_the_comment(repo: Path):
    path = stackfile.stack_path(repo, "dev")
    edit = stackfile.plan_pin(path, MODEL, 4)
    assert diff(edit.old_text, edit.new_text) == [
        "-      version: 1        # pinned exact registry version",
        "+      version: 4        # pinned exact registry version",
    ]
    assert (edit.from_version, edit.to_version) == (1, 4)
    assert path.read_text() == edit.old_text  # planning writes nothing


def test_apply_edit_writes_atomically_and_keeps_the_mode(repo: Path):
    path = stackfile.stack_path(repo, "dev")
    path.chmod(0o640)
    stackfile.apply_edit(stackfile.plan_pin(path, MODEL, 12))
    assert stackfile.read_pins(path) == {MODEL: 12}
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_adding_a_model_to_a_local_stack_pins_its_port_and_freezes_the_existing_ones(repo: Path):
    path = stackfile.stack_path(repo, "dev")
    edit = stackfile.plan_pin(path, "wine-classifier", 2)
    # The model already there keeps the port it has today (8100), now written down; the new
    # model gets the next one, for good.
    assert diff(edit.old_text, edit.new_text) == [
        "+      port: 8100", "+    wine-classifier:", "+      version: 2", "+      port: 8101"]
    lines = edit.new_text.splitlines()
    assert lines[lines.index("    wine-classifier:") + 3] == "  shipway:gates:"
    assert edit.from_version is None


def test_adding_the_first_model_creates_the_models_key_inside_config(repo: Path):
    path = stackfile.stack_path(repo, "test")
    edit = stackfile.plan_pin(path, MODEL, 3)
    assert diff(edit.old_text, edit.new_text) == [
        "+  shipway:models:", f"+    {MODEL}:", "+      version: 3", "+      port: 8100"]
    assert stackfile.load_config(_write(path, edit.new_text)).models[MODEL].version == 3


def test_empty_models_key_gets_the_block_right_under_it(tmp_path: Path):
    text = stack_text("dev", {}).replace("  shipway:models:\n", "  shipway:models:   # none yet\n")
    path = _write(tmp_path / "Pulumi.dev.yaml", text)
    edit = stackfile.plan_pin(path, MODEL, 1)
    new = edit.new_text.splitlines()
    assert new[new.index("  shipway:models:   # none yet") + 1 :][:2] == [f"    {MODEL}:", "      version: 1"]


def test_four_space_files_keep_four_space_indentation(tmp_path: Path):
    text = (
        "config:\n    shipway:cloud: local\n    shipway:models:\n        other-model:\n"
        "            version: 2\n"
    )
    path = _write(tmp_path / "Pulumi.dev.yaml", text)
    new = stackfile.plan_pin(path, MODEL, 5).new_text
    assert new.endswith(f"            version: 2\n            port: 8100\n        {MODEL}:\n            version: 5\n"
                        "            port: 8101\n")


def test_crlf_files_stay_crlf(tmp_path: Path):
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_bytes(stack_text("dev", {MODEL: 1}).replace("\n", "\r\n").encode())
    new = stackfile.plan_pin(path, MODEL, 2).new_text
    assert "version: 2        # pinned exact registry version\r\n" in new
    assert "\n" not in new.replace("\r\n", "")


def test_missing_file_names_the_file(tmp_path: Path):
    path = tmp_path / "stacks" / "Pulumi.prod.yaml"
    with pytest.raises(StackFileError) as err:
        stackfile.plan_pin(path, MODEL, 1)
    assert str(err.value) == f"stack file {path} not found; create it (see docs/promotion.md)"


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path):
    path = _write(tmp_path / "Pulumi.dev.yaml", "config:\n  shipway:models: [unclosed\n  other: 1\n")
    with pytest.raises(StackFileError) as err:
        stackfile.read_pins(path)
    assert str(err.value).startswith(f"stack file {path} is not valid YAML (line ")


def test_merge_conflict_markers_are_refused(tmp_path: Path):
    text = stack_text("dev", {MODEL: 1}).replace(
        "      version: 1", "<<<<<<< HEAD\n      version: 1\n=======\n      version: 2\n>>>>>>> branch"
    )
    path = _write(tmp_path / "Pulumi.dev.yaml", text)
    with pytest.raises(StackFileError, match="unresolved merge conflict markers"):
        stackfile.plan_pin(path, MODEL, 3)


def test_flow_style_models_are_refused_rather_than_reformatted(tmp_path: Path):
    path = _write(tmp_path / "Pulumi.dev.yaml", "config:\n  shipway:cloud: local\n  shipway:models: {}\n")
    with pytest.raises(StackFileError) as err:
        stackfile.plan_pin(path, MODEL, 1)
    assert "is written in flow style" in str(err.value)


def test_invalid_stack_config_names_the_file(tmp_path: Path):
    path = _write(
        tmp_path / "Pulumi.dev.yaml", stack_text("dev", {MODEL: 1}).replace("internal", "secretish")
    )
    with pytest.raises(StackFileError) as err:
        stackfile.load_config(path)
    assert str(err.value).startswith(f"stack file {path}: stack 'dev' has 1 invalid config key")
    assert "shipway:dataClassification: 'secretish' is not valid" in str(err.value)


def test_apply_refuses_when_the_file_changed_after_planning(repo: Path):
    path = stackfile.stack_path(repo, "dev")
    edit = stackfile.plan_pin(path, MODEL, 4)
    path.write_text(path.read_text() + "# someone else\n")
    with pytest.raises(StackFileError, match="changed while the promotion was running"):
        stackfile.apply_edit(edit)
    assert stackfile.read_pins(path) == {MODEL: 1}


def test_previous_env_follows_the_promotion_order():
    assert [stackfile.previous_env(e) for e in ("local", "dev", "test", "prod")] == [
        None,
        "local",
        "dev",
        "test",
    ]
    with pytest.raises(StackFileError) as err:
        stackfile.check_env("staging")
    assert str(err.value) == "environment: 'staging' is not valid; allowed: local, dev, test, prod"


def test_uncommitted_changes_are_refused_unless_allowed(repo: Path):
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run([*git, "init", "-q"], check=True, env=env)
    subprocess.run([*git, "add", "stacks"], check=True, env=env)
    subprocess.run([*git, "commit", "-qm", "stacks"], check=True, env=env)
    path = stackfile.stack_path(repo, "dev")
    stackfile.check_clean(path, allow_dirty=False)  # clean: no error
    path.write_text(path.read_text().replace("version: 1", "version: 2"))
    with pytest.raises(StackFileError) as err:
        stackfile.check_clean(path, allow_dirty=False)
    assert str(err.value) == (
        f"stack file {path} has uncommitted changes; commit or discard them, or pass --allow-dirty"
    )
    stackfile.check_clean(path, allow_dirty=True)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("added", [["fraud-scorer", "anomaly-model"], ["fraud-scorer", "churn-model", "anomaly-model"]])
def test_models_added_in_an_order_that_sorts_first_never_move_the_existing_endpoints(repo: Path, added):
    from shipway_core.config import endpoint_ports

    path = stackfile.stack_path(repo, "dev")
    seen: dict[str, int] = dict(endpoint_ports(stackfile.load_config(path).models,
                                               stackfile.load_config(path).local))
    for version, model in enumerate(added, start=1):
        stackfile.apply_edit(stackfile.plan_pin(path, model, version))
        cfg = stackfile.load_config(path)
        ports = endpoint_ports(cfg.models, cfg.local)
        assert {m: ports[m] for m in seen} == seen  # nobody moved
        assert all(pin.port is not None for pin in cfg.models.values())  # nobody relies on name order
        seen[model] = ports[model]
    assert sorted(seen.values()) == list(range(8100, 8100 + len(added) + 1))
    assert seen[MODEL] == 8100


def test_a_removed_models_port_is_not_handed_to_the_next_new_model():
    assert stackfile.new_model_port({"a-model": 8100, "c-model": 8102}, {9090}, 8100) == 8103
    assert stackfile.new_model_port({}, {8100}, 8100) == 8101  # never a platform port


def test_cloud_stacks_get_no_port(tmp_path: Path):
    text = stack_text("dev", {MODEL: 1}).replace("shipway:cloud: local", "shipway:cloud: aws")
    path = _write(tmp_path / "Pulumi.dev.yaml", text)
    edit = stackfile.plan_pin(path, "wine-classifier", 2)
    assert diff(edit.old_text, edit.new_text) == ["+    wine-classifier:", "+      version: 2"]
