"""The HTML drift report rendered by a real headless Chromium (Debian package `chromium`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipway.drift.html import render_html
from shipway.drift.report import compute_drift

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: run the project setup (it installs the Debian package "
            "'chromium'), or `apt-get install -y chromium`"
        )
    return path


def _dump_dom(page: Path, profile_dir: Path) -> tuple[str, str]:
    proc = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def test_report_renders_all_plots_without_console_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    ref = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 4000),
            "income": rng.lognormal(10, 1, 4000),
            "plan": rng.choice(["free", "pro", "team"], 4000),
            "odd <name>": rng.normal(0, 1, 4000),
        }
    )
    cur = ref.assign(age=rng.normal(48, 10, 4000), plan=rng.choice(["free", "pro", "team", "new"], 4000))
    report = compute_drift(ref, cur)
    page = tmp_path / "drift.html"
    page.write_text(render_html(report))

    dom, log = _dump_dom(page, tmp_path / "chromium-profile")

    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert console == [], "the page logged to the console (script error or CSP violation):\n" + "\n".join(console)
    # the inline script ran (it is only allowed by its CSP hash) and counted the plots it found
    assert re.search(r'<body[^>]*data-report-ready="true"', dom)
    assert re.search(r'<body[^>]*data-plots="5"', dom)
    assert len(re.findall(r"<svg\b", dom)) == 5  # effect-size ranking + one per feature
    assert len(re.findall(r"<rect\b", dom)) >= 4 + 2 * 10
    assert "odd &lt;name&gt;" in dom  # feature names are escaped, not injected
    assert 'data-feature="age" data-drifted="true"' in dom


def test_a_script_error_would_be_caught(tmp_path: Path) -> None:
    """Guards the guard: a failing inline script does show up as a CONSOLE line."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><script>throw new Error('boom')</script></body></html>")
    _, log = _dump_dom(page, tmp_path / "chromium-profile")
    assert any(":CONSOLE" in line and "boom" in line for line in log.splitlines())
