"""Build the argument objects the engine hands to policies, without the engine.

Props go through ``unknown_checking_proxy`` exactly as in ``pulumi_policy``'s analyzer, so
rules are exercised against Mapping/Sequence proxies (not dicts) and real unknowns.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format, struct_pb2
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

DELETE = object()
UNKNOWN_STR = UNKNOWN_STRING_VALUE


def engine_view(props: Mapping[str, Any]) -> Any:
    """Props as the analyzer sees them: through a protobuf Struct (numbers become floats), proxied."""
    struct = struct_pb2.Struct()
    struct.update(copy.deepcopy(dict(props)))
    return unknown_checking_proxy(json_format.MessageToDict(struct))


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:test::shipway::{type_}::{name}"


def opts(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def mutate(props: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``props`` with ``a.b.0.c`` set to ``value`` (or removed with DELETE)."""
    out = copy.deepcopy(dict(props))
    parts = path.split(".")
    node: Any = out
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return out


def check(
    policy: ResourceValidationPolicy,
    type_: str,
    props: Mapping[str, Any],
    *,
    config: Mapping[str, Any] | None = None,
    protect: bool = False,
    name: str = "res",
    provider: Mapping[str, Any] | None = None,
) -> list[str]:
    """Run a resource policy; return the violation messages it reported."""
    messages: list[str] = []
    prov = None
    if provider is not None:
        prov = PolicyProviderResource(
            "pulumi:providers:aws", engine_view(provider), urn("pulumi:providers:aws", "default"), "default"
        )
    args = ResourceValidationArgs(
        type_, engine_view(props), urn(type_, name), name, opts(protect), prov, dict(config or {})
    )
    policy.validate(args, lambda message, _urn=None: messages.append(message))
    return messages


@dataclass
class Res:
    """One resource of a stack under test; ``deps`` maps a prop to the names it depends on."""

    type: str
    name: str
    props: dict[str, Any]
    protect: bool = False
    deps: dict[str, list[str]] = field(default_factory=dict)


def check_stack(
    policy: StackValidationPolicy, resources: list[Res], *, config: Mapping[str, Any] | None = None
) -> list[tuple[str, str | None]]:
    """Run a stack policy; return ``(message, resource name or None)`` per violation."""
    built = {
        r.name: PolicyResource(
            r.type, engine_view(r.props), urn(r.type, r.name), r.name, opts(r.protect), None, None, [], {}
        )
        for r in resources
    }
    for r in resources:
        for prop, names in r.deps.items():
            built[r.name].property_dependencies[prop] = [built[n] for n in names]
            built[r.name].dependencies.extend(built[n] for n in names)
    by_urn = {res.urn: name for name, res in built.items()}
    found: list[tuple[str, str | None]] = []
    args = StackValidationArgs(list(built.values()), dict(config or {}))
    policy.validate(args, lambda message, u=None: found.append((message, by_urn.get(u) if u else None)))
    return found


REMOVE = object()


@dataclass
class Case:
    """Change one property of a baseline resource; the rule must report exactly ``messages``."""

    policy: str
    baseline: str
    path: str
    value: Any
    messages: list[str]
    config: Mapping[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.policy}:{self.baseline}.{self.path}"


@dataclass
class StackCase:
    """Change one property of one resource in a baseline stack (or remove the resource)."""

    policy: str
    target: str
    resource: str
    path: str | None
    value: Any
    found: list[tuple[str, str | None]]
    config: Mapping[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.policy}:{self.target}/{self.resource}.{self.path or 'removed'}"


def apply_stack_case(resources: list[Res], case: StackCase) -> list[Res]:
    """The stack with the case's single change applied."""
    if case.path is None:
        return [r for r in resources if r.name != case.resource]
    out = []
    for r in resources:
        if r.name == case.resource:
            r = Res(r.type, r.name, mutate(r.props, case.path, case.value), r.protect, r.deps)
        out.append(r)
    return out
