"""shipway.engine's `up` and `stack_outputs` against the real pulumi CLI and a file backend.

Promote and rollback call ``engine.up`` without an output callback: one `pulumi up --json` and
one outputs read instead of the Automation API's select + up + three reads. These tests pin what
that path must keep: a missing stack is created, the summary and outputs have the same shape,
and a failed program raises with the engine's own error.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shipway import engine

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _project(root: Path, program: str) -> Path:
    (root / "infra").mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
        name: engine-probe
        main: infra/
        runtime:
          name: python
          options:
            toolchain: pip
            virtualenv: {ROOT / '.venv'}
        """))
    (root / "infra" / "__main__.py").write_text(textwrap.dedent(program))
    return root


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PULUMI_BACKEND_URL", "PULUMI_HOME", "PULUMI_CONFIG_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)


def test_up_creates_a_missing_stack_then_updates_it_through_the_json_run(tmp_path: Path, isolated: None,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path / "p", """\
        import pulumi
        pulumi.export("url", "http://127.0.0.1:1")
        pulumi.export("nested", {"a": [1, 2]})
        """)
    with pytest.raises(RuntimeError, match="no stack named 't-engine'"):
        engine.stack_outputs("t-engine", root)
    first = engine.up("t-engine", "first", root=root)  # no stack yet: the Automation API creates it
    assert first["result"] == "succeeded"
    assert first["outputs"] == {"url": "http://127.0.0.1:1", "nested": {"a": [1, 2]}}
    runs: list[tuple[str, ...]] = []
    plain = engine._pulumi
    monkeypatch.setattr(engine, "_pulumi", lambda *a, **k: runs.append(a[2:]) or plain(*a, **k))
    second = engine.up("t-engine", "again", root=root)  # the stack exists: the one-run path
    assert second == {"result": "succeeded", "resourceChanges": {"same": 1},
                      "outputs": {"url": "http://127.0.0.1:1", "nested": {"a": [1, 2]}}}
    assert [r[0] for r in runs] == ["up"]  # the outputs came with its events
    assert engine.stack_outputs("t-engine", root) == second["outputs"]


def test_a_secret_output_is_read_in_plain_after_the_json_run(tmp_path: Path, isolated: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path / "p", """\
        import pulumi
        pulumi.export("url", "http://127.0.0.1:1")
        pulumi.export("token", pulumi.Output.secret("s3cret"))
        """)
    engine.up("t-engine", "first", root=root)
    runs: list[tuple[str, ...]] = []
    plain = engine._pulumi
    monkeypatch.setattr(engine, "_pulumi", lambda *a, **k: runs.append(a[2:]) or plain(*a, **k))
    again = engine.up("t-engine", "again", root=root)
    assert again["outputs"] == {"url": "http://127.0.0.1:1", "token": "s3cret"}
    assert [r[:2] for r in runs] == [("up", "--yes"), ("stack", "output")]  # events masked it


def test_a_failing_program_raises_with_the_engines_error(tmp_path: Path, isolated: None) -> None:
    root = _project(tmp_path / "p", """\
        import pulumi
        pulumi.export("url", "x")
        """)
    engine.up("t-engine", "first", root=root)
    (root / "infra" / "__main__.py").write_text("raise ValueError('models.iris: version 0 is not valid')\n")
    with pytest.raises(RuntimeError, match=r"(?s)pulumi up --stack t-engine failed: .*version 0 is not valid"):
        engine.up("t-engine", "broken", root=root)
