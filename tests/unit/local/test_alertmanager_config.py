"""The local Alertmanager config: valid for the real amtool, and one notification per incident."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.local.components import alertmanager_config


def test_a_page_holds_the_ticket_of_the_same_alert_and_model() -> None:
    config = yaml.safe_load(alertmanager_config("http://127.0.0.1:9095/alerts"))
    assert config["inhibit_rules"] == [{"source_matchers": ['severity="page"'],
                                        "target_matchers": ['severity="ticket"'],
                                        "equal": ["alertname", "model"]}]
    assert config["route"]["group_by"] == ["alertname", "model"]


def test_the_real_amtool_accepts_the_config(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is missing: the project's setup installs prometheus-alertmanager")
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager_config("http://127.0.0.1:9095/alerts"))
    out = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 inhibit rules" in out.stdout
