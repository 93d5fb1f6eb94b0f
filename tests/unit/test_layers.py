"""Layers point one way (docs/architecture.md): a back edge in any import fails this test.

    shipway_core  <-  components  <-  infra
    shipway_core  <-  shipway (runtime)
    shipway_core  <-  policies

Every ``import``/``from ... import`` is read from the source (function-level imports too),
so a lazy import cannot hide a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("shipway_core", "components", "shipway", "infra", "policies")

# package -> the first-party packages it may import (itself included).
ALLOWED = {
    "shipway_core": {"shipway_core"},
    "components": {"components", "shipway_core"},
    "shipway": {"shipway", "shipway_core"},
    "infra": {"infra", "components", "shipway_core"},
    "policies": {"policies", "shipway_core"},
}
# Third-party roots a package may not import: the core stays engine-free.
FORBIDDEN_THIRD_PARTY = {
    "shipway_core": {"pulumi", "pulumi_aws", "pulumi_azure_native", "pulumi_kubernetes", "pulumi_policy",
                     "mlflow", "boto3"},
}


def imported_roots(source: str) -> set[str]:
    """Top-level module names imported anywhere in ``source`` (relative imports excluded)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def violations(package: str, source: str) -> set[str]:
    """Imports of ``source`` (a module of ``package``) that break the layer rule."""
    roots = imported_roots(source)
    bad = {r for r in roots if r in FIRST_PARTY and r not in ALLOWED[package]}
    bad |= roots & FORBIDDEN_THIRD_PARTY.get(package, set())
    return bad


def _modules() -> list[tuple[str, Path]]:
    return [(pkg, path) for pkg in FIRST_PARTY for path in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize(("package", "path"), _modules(), ids=lambda v: str(v).removeprefix(str(ROOT) + "/"))
def test_module_imports_only_lower_layers(package: str, path: Path) -> None:
    bad = violations(package, path.read_text())
    assert not bad, f"{path.relative_to(ROOT)} ({package}) imports {sorted(bad)}; see docs/architecture.md 'Layers'"


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("components", "from shipway.serving.cli import main\n", {"shipway"}),
        ("shipway", "def f():\n    from components.local import process\n", {"components"}),
        ("shipway_core", "import pulumi\n", {"pulumi"}),
        ("infra", "import shipway.promotion\n", {"shipway"}),
        ("policies", "from components.common import REQUIRED_TAGS\n", {"components"}),
        ("components", "from shipway_core.config import StackConfig\nimport pulumi\n", set()),
    ],
)
def test_the_rule_catches_back_edges(package: str, source: str, expected: set[str]) -> None:
    assert violations(package, source) == expected


def test_every_first_party_package_is_checked() -> None:
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert on_disk == set(FIRST_PARTY)
