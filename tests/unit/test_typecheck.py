"""mypy over the whole tree, with the project's own [tool.mypy] config, reports zero errors.

The config keeps the provider SDKs (~10,000 generated modules) out of the analysis except
the AWS/Azure services the components use, so constructor calls stay checked against the
SDK signatures while a cold run takes ~50 s instead of ~17 min. The fast tests here pin
that shape; the mypy runs themselves are marked integration because a cold cache (a fresh
CI machine) costs ~50 s, more than the unit suite's budget; warm runs take ~4 s.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "pyproject.toml"
PACKAGES = ("shipway_core", "shipway", "infra", "components", "policies")
# SDKs whose used services must stay typed. pulumi_kubernetes is skipped on purpose (see the
# config comment: its nested TypedDict unions make mypy's inference explode on our pod specs).
TYPED_SDKS = ("pulumi_aws", "pulumi_azure_native")
HUGE_SDKS = ("pulumi_aws", "pulumi_azure_native", "pulumi_kubernetes")
ERROR_LINE = re.compile(r"^(?P<path>[^:\s]+\.py):(?P<line>\d+): error: (?P<message>.*)$")
CHECKED = re.compile(r"(?:in|checked) (\d+) source files?")


def mypy_config(path: Path = CONFIG) -> dict[str, Any]:
    return tomllib.loads(path.read_text())["tool"]["mypy"]


def follow_imports(config: dict[str, Any], module: str) -> str:
    """The follow_imports mypy applies to ``module``: the most specific matching override wins
    (exact name over ``a.b.*`` over ``a.*``), as in mypy's own config resolution."""
    best, best_rank = config.get("follow_imports", "normal"), (-1, -1)
    for override in config.get("overrides", []):
        if "follow_imports" not in override:
            continue
        patterns = override["module"] if isinstance(override["module"], list) else [override["module"]]
        for pattern in patterns:
            if pattern == module:
                rank = (1, len(pattern))
            elif pattern.endswith(".*") and (module == pattern[:-2] or module.startswith(pattern[:-1])):
                rank = (0, len(pattern))
            else:
                continue
            if rank > best_rank:
                best, best_rank = override["follow_imports"], rank
    return best


def sdk_dir(sdk: str) -> Path:
    """The installed SDK's directory, found without importing it (importing pulumi_aws takes seconds)."""
    spec = importlib.util.find_spec(sdk)
    assert spec is not None and spec.submodule_search_locations, f"{sdk} is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def used_services(source: str) -> Iterator[tuple[str, str]]:
    """(sdk, service) for every ``aws.<service>`` / ``from pulumi_aws import <service>`` in a file."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in TYPED_SDKS:
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module in TYPED_SDKS:
            for alias in node.names:
                yield node.module, alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            yield aliases[node.value.id], node.attr


def services_in_tree() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for package in ("components", "infra"):
        for path in sorted((ROOT / package).rglob("*.py")):
            found.update(used_services(path.read_text()))
    # Only subpackages are services; top-level functions (get_caller_identity...) are modules
    # the config lists one by one.
    return {(sdk, name) for sdk, name in found if (sdk_dir(sdk) / name / "__init__.py").is_file()}


def run_mypy(*args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(CONFIG), "--no-color-output", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    return proc.returncode, proc.stdout + proc.stderr


def require_fast_config() -> None:
    """Without the SDK overrides a run analyses every provider module (~17 min, ~20 GB): refuse."""
    config = mypy_config()
    unskipped = [sdk for sdk in HUGE_SDKS if follow_imports(config, f"{sdk}.anything_unused") != "skip"]
    if unskipped:
        pytest.fail(f"[tool.mypy] in pyproject.toml: follow_imports for {', '.join(unskipped)}.* is not 'skip'; "
                    "add the overrides: follow_imports = 'skip' for pulumi_aws.*, pulumi_azure_native.*, "
                    "pulumi_kubernetes.*, and 'silent' for the AWS/Azure services the components use")


def test_unused_provider_services_are_skipped() -> None:
    require_fast_config()


@pytest.mark.parametrize(
    ("config", "module", "expected"),
    [
        ({"overrides": [{"module": ["a.*"], "follow_imports": "skip"}]}, "a.b.c", "skip"),
        ({"overrides": [{"module": ["a.*"], "follow_imports": "skip"}]}, "a", "skip"),
        ({"overrides": [{"module": ["a.*"], "follow_imports": "skip"}]}, "ab", "normal"),
        ({"overrides": [{"module": ["a.*"], "follow_imports": "skip"},
                        {"module": ["a.b.*"], "follow_imports": "silent"}]}, "a.b.c", "silent"),
        ({"overrides": [{"module": ["a.b.*"], "follow_imports": "silent"},
                        {"module": ["a.*"], "follow_imports": "skip"}]}, "a.c", "skip"),
        ({"overrides": [{"module": ["a.*"], "follow_imports": "skip"},
                        {"module": "a", "follow_imports": "silent"}]}, "a", "silent"),
    ],
)
def test_follow_imports_resolution_prefers_the_most_specific_pattern(
    config: dict[str, Any], module: str, expected: str
) -> None:
    assert follow_imports(config, module) == expected


def test_every_aws_and_azure_service_the_components_use_is_type_checked() -> None:
    config = mypy_config()
    services = services_in_tree()
    # The scan must see the services we know are there, or it proves nothing.
    assert {("pulumi_aws", "s3"), ("pulumi_aws", "sagemaker"), ("pulumi_azure_native", "keyvault")} <= services
    skipped = sorted(f"{sdk}.{service}" for sdk, service in services
                     if follow_imports(config, f"{sdk}.{service}.x") == "skip"
                     or follow_imports(config, f"{sdk}.{service}") == "skip")
    assert not skipped, (f"components use {skipped} but [tool.mypy] skips them (calls typed as Any); "
                         "add '<module>.*' to the follow_imports = \"silent\" override in pyproject.toml")


def test_used_service_scan_reads_aliases_and_from_imports() -> None:
    source = "import pulumi_aws as aws\nfrom pulumi_azure_native import storage as st\naws.s3.Bucket('b')\n"
    assert set(used_services(source)) == {("pulumi_aws", "s3"), ("pulumi_azure_native", "storage")}


def parse_errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if ERROR_LINE.match(line)]


@pytest.mark.integration
def test_mypy_reports_no_errors_over_every_package() -> None:
    require_fast_config()
    code, output = run_mypy()
    errors = parse_errors(output)
    assert not errors, f"mypy found {len(errors)} error(s):\n" + "\n".join(errors)
    assert code == 0, output
    # The run covered the whole tree: a package silently dropped from the config would pass.
    expected = sum(1 for package in PACKAGES for _ in (ROOT / package).rglob("*.py"))
    checked = CHECKED.search(output)
    assert checked is not None, output
    assert int(checked.group(1)) >= expected, output


@pytest.mark.integration
def test_mypy_with_the_project_config_catches_bad_sdk_calls(tmp_path: Path) -> None:
    """The harness can fail: a wrong type and a wrong AWS constructor argument are both reported."""
    require_fast_config()
    bad = tmp_path / "bad_typing_probe.py"
    bad.write_text(
        "import pulumi_aws as aws\n"
        "count: int = 'three'\n"
        "aws.s3.Bucket('b', versioning_everything=True)\n"
    )
    code, output = run_mypy(str(bad))
    errors = [ERROR_LINE.match(line) for line in parse_errors(output)]
    assert code == 1, output
    assert {int(m.group("line")) for m in errors if m} == {2, 3}, output
