"""The real Pulumi engine on this machine: the project-built CLI, language host and
dynamic-provider plugin drive a throwaway stack through preview, up and destroy."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from shipway import engine

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = '''
import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class FileProvider(ResourceProvider):
    def create(self, props):
        with open(props["path"], "w") as fh:
            fh.write(props["text"])
        return CreateResult(id_=props["path"], outs=props)

    def delete(self, id_, props):
        import os
        os.remove(props["path"])


class File(Resource):
    def __init__(self, name, path, text):
        super().__init__(FileProvider(), name, {"path": path, "text": text})


f = File("greeting", pulumi.Config().require("path"), "hello from the real engine")
pulumi.export("path", f.id)
'''


def pulumi(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(engine.pulumi_binary(ROOT)), *args, "--non-interactive"], cwd=cwd, env=env,
                          text=True, capture_output=True, timeout=300, check=False)


def test_built_cli_reports_its_pinned_version():
    out = subprocess.run([str(engine.pulumi_binary(ROOT)), "version"], text=True, capture_output=True, check=True)
    assert out.stdout.strip() == f"v{engine.PULUMI_VERSION}"


def test_throwaway_stack_preview_up_destroy(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
        name: throwaway
        runtime:
          name: python
          options:
            toolchain: pip
            virtualenv: {ROOT / '.venv'}
        """))
    (project / "__main__.py").write_text(PROGRAM)
    target = tmp_path / "greeting.txt"
    env = engine.pulumi_env("t-engine", ROOT)
    env["PULUMI_BACKEND_URL"] = f"file://{tmp_path / 'state'}"
    (tmp_path / "state").mkdir()

    assert pulumi(["stack", "init", "t-engine"], project, env).returncode == 0
    assert pulumi(["config", "set", "path", str(target)], project, env).returncode == 0

    preview = pulumi(["preview", "--json"], project, env)
    assert preview.returncode == 0, preview.stderr
    steps = json.loads(preview.stdout)["steps"]
    assert [(s["op"], s["urn"].rsplit("::", 1)[-1]) for s in steps if "dynamic" in s["urn"]] == [
        ("create", "greeting")]
    assert not target.exists(), "preview must not change anything"

    up = pulumi(["up", "--yes"], project, env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert target.read_text() == "hello from the real engine"
    outputs = json.loads(pulumi(["stack", "output", "--json"], project, env).stdout)
    assert outputs == {"path": str(target)}

    again = pulumi(["preview", "--json"], project, env)
    assert {s["op"] for s in json.loads(again.stdout)["steps"]} == {"same"}

    down = pulumi(["destroy", "--yes"], project, env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not target.exists()
