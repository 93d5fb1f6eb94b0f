"""Parse IAM policy documents as the engine sends them (a JSON string or an object)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from policies._core import UNKNOWN, entries, get, is_list, items


def document(value: Any) -> Any:
    """The policy document as plain data; None when absent or unparsable, UNKNOWN at preview."""
    if value is UNKNOWN or value is None:
        return value
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def statements(doc: Any) -> list[Mapping[str, Any]]:
    """The statements of a document (a single statement object is a list of one)."""
    raw = get(doc, "Statement")
    if isinstance(raw, Mapping):
        return [raw]
    return [s for s in items(raw) if isinstance(s, Mapping)]


def as_strings(value: Any) -> list[str]:
    """An IAM ``Action``/``Resource``/principal value as a list of strings."""
    if isinstance(value, str):
        return [value]
    return [v for v in items(value) if isinstance(v, str)] if is_list(value) else []


def conditions(statement: Any) -> dict[str, dict[str, list[str]]]:
    """``{operator: {key: [values]}}`` with single values widened to lists."""
    out: dict[str, dict[str, list[str]]] = {}
    for operator, block in entries(get(statement, "Condition")):
        out[operator] = {
            key: as_strings(val) if not isinstance(val, bool) else [str(val).lower()]
            for key, val in entries(block)
        }
    return out
