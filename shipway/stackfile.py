"""Read and edit model pins in ``stacks/Pulumi.<env>.yaml`` without disturbing anything else.

A promotion is reviewed as a diff, so the edit must be exactly the pin: changing a version
rewrites one line (the digits only, trailing comment kept), and adding a model inserts a
minimal ``name:\\n  version: N`` block in the file's own indentation. A YAML round-trip dump
would re-flow comments, quotes and indentation, so ruamel.yaml is only used to *locate* the
pin (line/column of each node); the text is edited line by line and re-parsed to prove the
result says exactly what was intended before it is written (atomically, temp + rename).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipway_core.config import (
    ENVIRONMENTS,
    StackConfig,
    StackConfigError,
    endpoint_ports,
    parse_stack_config,
    platform_ports,
)

MODELS_KEY = "shipway:models"
_CONFLICT = re.compile(r"^(<{7}|={7}|>{7})( |$)", re.MULTILINE)


class StackFileError(ValueError):
    """A stack file is missing, malformed, conflicted or cannot be edited as asked."""


def stack_path(repo_root: Path, env: str) -> Path:
    """Where an environment's stack file lives."""
    return Path(repo_root) / "stacks" / f"Pulumi.{env}.yaml"


def check_env(env: str) -> str:
    """Reject names that are not one of the promotion environments."""
    if env not in ENVIRONMENTS:
        raise StackFileError(f"environment: {env!r} is not valid; allowed: {', '.join(ENVIRONMENTS)}")
    return env


def previous_env(env: str) -> str | None:
    """The environment a model is promoted *from* (None for the first one)."""
    index = ENVIRONMENTS.index(check_env(env))
    return ENVIRONMENTS[index - 1] if index > 0 else None


def _read_text(path: Path) -> str:
    if not path.exists():
        raise StackFileError(f"stack file {path} not found; create it (see docs/promotion.md)")
    with path.open(encoding="utf-8", newline="") as fh:  # keep CRLF files CRLF
        text = fh.read()
    if _CONFLICT.search(text):
        raise StackFileError(f"stack file {path} has unresolved merge conflict markers; resolve them first")
    return text


def _round_trip(text: str, path: Path) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="rt").load(text)
    except YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise StackFileError(f"stack file {path} is not valid YAML{where}: {problem}") from exc
    if doc is None:
        doc = {}
    if not hasattr(doc, "get"):
        raise StackFileError(f"stack file {path} must be a mapping with a top-level 'config' key")
    return doc


def _config_node(doc: Any, path: Path) -> Any:
    config = doc.get("config")
    if config is None or not hasattr(config, "lc"):
        raise StackFileError(f"stack file {path} has no 'config' mapping")
    return config


def read_pins(path: Path) -> dict[str, int]:
    """Model name -> pinned version, from the raw file (validated by :func:`load_config`)."""
    doc = _round_trip(_read_text(path), path)
    models = _config_node(doc, path).get(MODELS_KEY) or {}
    pins: dict[str, int] = {}
    for name, spec in models.items():
        version = spec.get("version") if hasattr(spec, "get") else None
        if isinstance(version, int) and not isinstance(version, bool):
            pins[str(name)] = version
    return pins


def load_config(path: Path) -> StackConfig:
    """Validated stack config; a bad file is reported with its path."""
    doc = _round_trip(_read_text(path), path)
    config = _config_node(doc, path)
    raw = {}
    for key, value in config.items():
        ns, _, name = str(key).partition(":")
        if ns == "shipway" and name:
            raw[name] = _plain(value)
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    try:
        return parse_stack_config(stack, raw)
    except StackConfigError as exc:
        raise StackFileError(f"stack file {path}: {exc}") from exc


def _plain(value: Any) -> Any:
    """ruamel's commented containers -> plain dicts/lists for the typed parser."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------- editing


@dataclass(frozen=True)
class PinEdit:
    """The result of editing one pin: the new text and what changed."""

    path: Path
    old_text: str
    new_text: str
    model: str
    from_version: int | None
    to_version: int


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], start: int, parent_col: int) -> int:
    """Index of the last content line of the block whose key is at ``start`` (column ``parent_col``)."""
    last = start
    for i in range(start + 1, len(lines)):
        if not _is_content(lines[i]):
            continue
        if _indent(lines[i]) <= parent_col:
            break
        last = i
    return last


def _replace_version(lines: list[str], spec: Any, path: Path, model: str, version: int) -> None:
    line_no, col = spec.lc.value("version")
    line = lines[line_no]
    match = re.compile(r"\d+").match(line, col)
    if match is None:
        raise StackFileError(
            f"stack file {path}: cannot find the version number of '{model}' on line {line_no + 1}"
        )
    lines[line_no] = line[: match.start()] + str(version) + line[match.end() :]


def _check_models_block(lines: list[str], config: Any, path: Path) -> None:
    """``shipway:models`` must be a block mapping (or absent) for a line-by-line edit."""
    models = config.get(MODELS_KEY)
    if MODELS_KEY in config and models is not None and not hasattr(models, "lc"):
        raise StackFileError(
            f"stack file {path}: '{MODELS_KEY}' must be a mapping of model name -> {{version: N}}"
        )
    if MODELS_KEY in config and _is_flow(lines, config):
        raise StackFileError(
            f"stack file {path}: '{MODELS_KEY}' is written in flow style ({{...}}); "
            "write it as a block mapping so pins can be edited line by line"
        )


def _insert_model(lines: list[str], config: Any, path: Path, model: str, version: int,
                  port: int | None = None) -> None:
    """Add ``model: {version: N[, port: P]}`` as a block, in the indentation the file already uses."""
    _check_models_block(lines, config, path)
    models = config.get(MODELS_KEY)
    step = _indent_step(lines, config)
    if MODELS_KEY not in config:
        end, block = _new_models_key(lines, config, model, version, step)
        inner = len(block[-1]) - len(block[-1].lstrip(" "))
    else:
        key_line, key_col = config.lc.key(MODELS_KEY)
        if models:
            first = next(iter(models))
            name_col = models.lc.key(first)[1]
            inner = _inner_indent(models[first], name_col, step)
            end = _block_end(lines, key_line, key_col)
            block = [f"{' ' * name_col}{model}:", f"{' ' * inner}version: {version}"]
        else:  # `shipway:models:` with nothing under it yet
            end = key_line
            inner = key_col + 2 * step
            block = [f"{' ' * (key_col + step)}{model}:", f"{' ' * inner}version: {version}"]
    if port is not None:
        block.append(f"{' ' * inner}port: {port}")
    lines[end + 1 : end + 1] = block


def _new_models_key(
    lines: list[str], config: Any, model: str, version: int, step: int
) -> tuple[int, list[str]]:
    """No ``shipway:models`` yet: append it as the last key of ``config``."""
    cfg_line, cfg_col = config.lc.key(next(iter(config)))
    config_key_line = _find_config_line(lines, cfg_line)
    end = _block_end(lines, config_key_line, _indent(lines[config_key_line]))
    return end, [
        f"{' ' * cfg_col}{MODELS_KEY}:",
        f"{' ' * (cfg_col + step)}{model}:",
        f"{' ' * (cfg_col + 2 * step)}version: {version}",
    ]


def _is_flow(lines: list[str], config: Any) -> bool:
    """``shipway:models: {...}`` cannot take a block entry; detect it from the source text."""
    line_no, col = config.lc.value(MODELS_KEY)
    return lines[line_no][col : col + 1] == "{"


def _inner_indent(spec: Any, name_col: int, step: int) -> int:
    if hasattr(spec, "lc") and len(spec):
        return spec.lc.key(next(iter(spec)))[1]
    return name_col + step


def _indent_step(lines: list[str], config: Any) -> int:
    """The file's indentation step (columns of the config keys, 2 if unknowable)."""
    first_key = next(iter(config), None)
    if first_key is None:
        return 2
    col = config.lc.key(first_key)[1]
    return col if col > 0 else 2


def _find_config_line(lines: list[str], first_key_line: int) -> int:
    """The ``config:`` line is the nearest content line above the first config key."""
    for i in range(first_key_line - 1, -1, -1):
        if _is_content(lines[i]):
            return i
    return 0


def _is_local(config: Any) -> bool:
    return _plain(config.get("shipway:cloud")) == "local"


def _local_ports(path: Path, text: str) -> tuple[dict[str, int], set[int], int]:
    """(each model's current endpoint port, ports taken by the platform, base port) of a local stack."""
    doc = _round_trip(text, path)
    raw = {str(k).partition(":")[2]: _plain(v) for k, v in _config_node(doc, path).items()
           if str(k).startswith("shipway:")}
    # Only what decides ports is validated here (load_config checks the whole file).
    ports_only: dict[str, Any] = {"cloud": "local", "environment": "local", "owner": "-", "costCenter": "-",
                  "dataClassification": "internal", **{k: raw[k] for k in ("models", "local") if k in raw}}
    try:
        cfg = parse_stack_config("local", ports_only)
    except StackConfigError as exc:
        raise StackFileError(f"stack file {path}: {exc}") from exc
    return (endpoint_ports(cfg.models, cfg.local), set(platform_ports(cfg.local).values()),
            cfg.local.endpoint_base_port)


def new_model_port(current: dict[str, int], platform: set[int], base: int) -> int:
    """A port no model has held and no platform process uses: after the highest one in use.

    Never the lowest free one: a port a removed model held may still be in a client's config.
    """
    port = max([base - 1, *current.values()]) + 1
    while port in platform or port in current.values():
        port += 1
    if port > 65535:
        raise StackFileError(f"no free endpoint port above {base}; set models.<name>.port by hand")
    return port


def _freeze_ports(lines: list[str], models: Any, current: dict[str, int]) -> None:
    """Write ``port: P`` under every model that has none, so adding a model never moves it."""
    inserts = []
    for name, spec in models.items():
        if hasattr(spec, "lc") and "version" in spec and "port" not in spec and str(name) in current:
            line_no = spec.lc.value("version")[0]
            col = spec.lc.key("version")[1]
            inserts.append((line_no, f"{' ' * col}port: {current[str(name)]}"))
    for line_no, text in sorted(inserts, reverse=True):  # bottom-up keeps earlier line numbers valid
        lines.insert(line_no + 1, text)


def plan_pin(path: Path, model: str, version: int) -> PinEdit:
    """Compute the edit that pins ``model`` to ``version`` (nothing is written)."""
    text = _read_text(path)
    doc = _round_trip(text, path)
    config = _config_node(doc, path)
    if len(config) == 0:
        raise StackFileError(f"stack file {path} has an empty 'config' mapping")
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.split(newline)
    models = config.get(MODELS_KEY) or {}
    spec = models.get(model) if hasattr(models, "get") else None
    old_pins = read_pins(path)
    current = old_pins.get(model)
    if spec is not None and hasattr(spec, "lc") and "version" in spec:
        _replace_version(lines, spec, path, model, version)
    elif spec is not None:
        raise StackFileError(f"stack file {path}: '{model}' has no 'version' key to edit; fix it by hand")
    elif _is_local(config):
        # A new model on the local target gets its own port for good, and every model already
        # there gets its current port written down: nobody's address depends on name order.
        _check_models_block(lines, config, path)
        held, platform, base = _local_ports(path, text)
        _insert_model(lines, config, path, model, version, new_model_port(held, platform, base))
        _freeze_ports(lines, models, held)
    else:
        _insert_model(lines, config, path, model, version)
    new_text = newline.join(lines)
    _check_result(path, new_text, old_pins, model, version)
    if spec is None and _is_local(config):
        after, _, _ = _local_ports(path, new_text)
        moved = {m: (p, after.get(m)) for m, p in held.items() if after.get(m) != p}
        if moved:
            raise StackFileError(f"stack file {path}: adding '{model}' would move {moved}; edit the file by hand")
    return PinEdit(
        path=path, old_text=text, new_text=new_text, model=model, from_version=current, to_version=version
    )


def _check_result(path: Path, new_text: str, old_pins: dict[str, int], model: str, version: int) -> None:
    """The edited text must parse and differ from the old pins in exactly this one pin."""
    doc = _round_trip(new_text, path)
    models = _config_node(doc, path).get(MODELS_KEY) or {}
    got = {str(k): v.get("version") for k, v in models.items() if hasattr(v, "get")}
    want = {**old_pins, model: version}
    if got != want:
        raise StackFileError(
            f"stack file {path}: editing the pin of '{model}' would not give the expected "
            f"pins {want} (got {got}); edit the file by hand"
        )


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory + rename: readers see the old or the new file, never half."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_edit(edit: PinEdit) -> None:
    """Write the planned edit, refusing if the file changed since it was planned."""
    if _read_text(edit.path) != edit.old_text:
        raise StackFileError(f"stack file {edit.path} changed while the promotion was running; run it again")
    write_atomic(edit.path, edit.new_text)


def revert_edit(edit: PinEdit) -> None:
    """Put the pre-edit text back (used when a rollback has no better target)."""
    write_atomic(edit.path, edit.old_text)


def git_dirty(path: Path) -> bool:
    """True when git reports uncommitted changes to ``path`` (False outside a git repo)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path.parent), "status", "--porcelain", "--untracked-files=no", "--", path.name],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def check_clean(path: Path, allow_dirty: bool) -> None:
    """Refuse to edit a stack file that already has uncommitted changes: the diff must be ours alone."""
    if not allow_dirty and git_dirty(path):
        raise StackFileError(
            f"stack file {path} has uncommitted changes; commit or discard them, or pass --allow-dirty"
        )
