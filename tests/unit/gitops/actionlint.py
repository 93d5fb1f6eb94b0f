"""Find or build actionlint (pinned in tools/actionlint/go.mod) for the workflow tests.

scripts/setup.sh builds it into .shipway/tools/bin; a checkout whose setup predates that gets
it built here on first use, with the same command, so the lint test never silently skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MODULE = ROOT / "tools" / "actionlint"
BINARY = ROOT / ".shipway" / "tools" / "bin" / "actionlint"
VERSION = "v1.7.12"
PACKAGE = "github.com/rhysd/actionlint/cmd/actionlint"


def build_command(output: Path = BINARY) -> list[str]:
    """The build line setup.sh uses: module-pinned, reproducible, no cgo."""
    return [
        "go", "build", "-trimpath",
        "-ldflags", f"-s -w -X github.com/rhysd/actionlint.version={VERSION}",
        "-o", str(output), PACKAGE,
    ]


def actionlint_binary() -> Path:
    """The built binary, building it when it is missing or older than the module pin."""
    if BINARY.exists() and BINARY.stat().st_mtime >= (MODULE / "go.mod").stat().st_mtime:
        return BINARY
    if shutil.which("go") is None:
        raise RuntimeError("actionlint is not built and Go is missing: run `make setup`")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    subprocess.run(build_command(), cwd=MODULE, env=env, check=True, capture_output=True, timeout=600)
    return BINARY
