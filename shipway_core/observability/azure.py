"""The shared Prometheus rule file as Azure Monitor managed-Prometheus rules.

Azure Monitor evaluates PromQL itself, so the Azure target runs the very expressions the other
targets run (``rules.generate_rules``); only the envelope differs: ISO 8601 ``for``, a numeric
severity (0 critical .. 4 verbose) and no ``for`` at all on burn-rate alerts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SEVERITY = {"page": 1, "ticket": 3}
_DURATION = re.compile(r"^([0-9]+)([smhd])$")


def iso_duration(duration: str) -> str:
    """``2m`` -> ``PT2M``, ``1d`` -> ``P1D`` (the single-unit durations the generator emits)."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"for: {duration!r} is not valid here; use one number and unit such as 5m")
    n, unit = match.groups()
    return f"P{n}D" if unit == "d" else f"PT{n}{unit.upper()}"


def azure_rules(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every rule of every group, in order (recording rules first, as generated), Azure-shaped."""
    out: list[dict[str, Any]] = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                out.append({"record": rule["record"], "expression": rule["expr"]})
                continue
            severity = rule["labels"]["severity"]
            if severity not in SEVERITY:
                raise ValueError(f"severity: {severity!r} is not valid; allowed: {', '.join(SEVERITY)}")
            converted = {
                "alert": rule["alert"],
                "expression": rule["expr"],
                "severity": SEVERITY[severity],
                "labels": dict(rule["labels"]),
                "annotations": dict(rule.get("annotations", {})),
            }
            if "for" in rule:
                converted["for"] = iso_duration(rule["for"])
            out.append(converted)
    return out
