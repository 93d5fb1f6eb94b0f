"""`shipway new model NAME`: generate a model project on the paved path.

A team's first model should reach `local` with the same commands as the example model, and
pass the gates from its first version. The template (``shipway/templates/model``) therefore
registers exactly what the gates, drift monitoring and deployment verification read: a
signature and input example, run metrics, ``baseline_profile.json`` and ``golden.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from shipway.commands.common import OUTPUT_OPTION, Output, check_model_name, print_json

app = typer.Typer(no_args_is_help=True)

TEMPLATE_PACKAGE = "shipway.templates"
PLACEHOLDER = "{{model_name}}"
SUFFIX = ".tmpl"
# Dotfiles and dot-directories are stored without the dot so packaging and editors do not hide
# them (and this repo's own workflow lint does not mistake the template for one of its workflows).
_RENAMES = {"gitignore": ".gitignore", "github": ".github"}

DIR_OPTION = typer.Option(None, "--dir", help="Where to create the project (default: ./NAME); must not exist.")


class ProjectExistsError(ValueError):
    """The destination exists: generating into it could overwrite someone's work."""


@dataclass(frozen=True)
class Generated:
    """What `new model` wrote."""

    name: str
    root: Path
    files: tuple[Path, ...]


def template_root(kind: str = "model") -> Traversable:
    return files(TEMPLATE_PACKAGE).joinpath(kind)


def _walk(node: Traversable, prefix: Path = Path()) -> list[tuple[Path, Traversable]]:
    """Every template file with its path relative to the template root, sorted."""
    out: list[tuple[Path, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            out += _walk(child, prefix / _RENAMES.get(child.name, child.name))
        elif child.name.endswith(SUFFIX):
            stem = child.name.removesuffix(SUFFIX)
            out.append((prefix / _RENAMES.get(stem, stem), child))
    return out


def render(text: str, name: str) -> str:
    return text.replace(PLACEHOLDER, name)


def generate_model_project(name: str, dest: Path) -> Generated:
    """Render the model template for ``name`` into ``dest``, which must not exist yet."""
    if dest.exists():
        raise ProjectExistsError(
            f"--dir: {str(dest)!r} already exists; choose a new directory (nothing is overwritten)"
        )
    written: list[Path] = []
    for relative, source in _walk(template_root("model")):
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(source.read_text(encoding="utf-8"), name), encoding="utf-8")
        written.append(target)
    return Generated(name=name, root=dest, files=tuple(written))


def next_steps(gen: Generated) -> list[str]:
    """The commands that take the new project to `local` (printed; also in its README)."""
    return [
        f"cd {gen.root}",
        "python -m pytest",
        "python train.py --tracking-uri http://127.0.0.1:5000",
        f"shipway model promote {gen.name} --to local --version <N printed by train.py> --apply",
    ]


@app.command("model")
def model(
    name: str = typer.Argument(..., help="Model name: lowercase letters, digits and '-', e.g. churn-classifier."),
    directory: Path | None = DIR_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Generate a model project: training with MLflow tracking, baseline profile, golden set, gates, tests, CI.

    Example:

        shipway new model churn-classifier --dir ~/src/churn-classifier
    """
    check_model_name(name)
    dest = directory if directory is not None else Path(name)
    try:
        gen = generate_model_project(name, dest)
    except ProjectExistsError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--dir: "), param_hint="--dir") from exc
    if output is Output.json:
        print_json({"ok": True, "name": name, "dir": str(gen.root),
                    "files": [str(p.relative_to(gen.root)) for p in gen.files], "next": next_steps(gen)})
        return
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"created model project [bold]{escape(name)}[/] in {escape(str(gen.root))}:")
    for path in gen.files:
        console.print(f"  {escape(str(path.relative_to(gen.root)))}")
    console.print("next:")
    for line in next_steps(gen):
        console.print(f"  {escape(line)}")
