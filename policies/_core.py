"""Shared plumbing for the rule modules: safe property access, per-env settings, naming.

Why this exists: the engine hands policies *proxies*, not dicts. During ``pulumi preview`` any
value that depends on another resource's output is unknown, and touching it raises
``UnknownValueError``. A rule that cannot judge a value at preview must stay quiet (the engine
runs the same rule again at ``pulumi up`` with the real value), so every rule reads props
through :func:`get`, which turns "unknown" into the :data:`UNKNOWN` sentinel instead of
aborting the whole rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UnknownValueError

ENVIRONMENTS: Final = ("local", "dev", "test", "prod")

# `<cloud>-<service>-<resource>-<verb>-<thing>`; `any` is the cross-cloud prefix.
CLOUDS: Final = ("aws", "azure", "kubernetes", "local", "any")
VERBS: Final = (
    "require",
    "disallow",
    "enable",
    "restrict",
    "pin",
    "retain",
    "bind",
    "attach",
    "protect",
)
NAME_RE: Final = re.compile(
    rf"^({'|'.join(CLOUDS)})-[a-z0-9]+-[a-z0-9]+-({'|'.join(VERBS)})-[a-z0-9]+(-[a-z0-9]+)*$"
)

# Policy tag marking rules that only act when the configured environment is prod.
PROD_ONLY: Final = "prod-only"

# Prod serving never runs on one instance/replica (an outage on every deploy or node loss);
# every cloud's capacity and autoscaling-floor rules hold this one number.
MIN_PROD_INSTANCES: Final = 2

# Every rule starts advisory; `policies/config/<env>.json` raises test and prod to mandatory.
DEFAULT_ENFORCEMENT: Final = EnforcementLevel.ADVISORY


class _Unknown:
    """A value that is not known until the resource it depends on exists."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()
_MISSING = object()


def get(props: Any, path: str, default: Any = None) -> Any:
    """Read ``a.b.0.c`` from engine props; :data:`UNKNOWN` when unknown at preview, else default."""
    current = props
    for part in path.split("."):
        try:
            if isinstance(current, Mapping):
                current = current.get(part, _MISSING)
            elif is_list(current) and part.isdigit():
                index = int(part)
                current = current[index] if index < len(current) else _MISSING
            else:
                return default
        except UnknownValueError:
            return UNKNOWN
        if current is _MISSING or current is None:
            return default
    return current


def decoded(value: Any) -> Any:
    """A JSON-encoded object/array string parsed to its value; anything else unchanged.

    Why: the engine presents some inputs as JSON *strings*, not objects (an ECS task
    definition's ``containerDefinitions``, the AWS provider's ``defaultTags``). A rule that
    only reads objects would never look inside them.
    """
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def is_list(value: Any) -> bool:
    """A JSON array (proxies are Sequences, not lists; strings are not arrays here)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def items(value: Any) -> list[Any]:
    """The known elements of an array-valued prop (unknown elements are skipped)."""
    if not is_list(value):
        return []
    out: list[Any] = []
    for index in range(len(value)):
        try:
            out.append(value[index])
        except UnknownValueError:
            continue
    return out


def entries(value: Any) -> Iterator[tuple[str, Any]]:
    """The known ``(key, value)`` pairs of an object-valued prop."""
    if not isinstance(value, Mapping):
        return
    for key in list(value):
        try:
            yield key, value[key]
        except UnknownValueError:
            yield key, UNKNOWN


def as_int(value: Any) -> int | None:
    """An integral number as int; the engine sends every number as a float (3 arrives as 3.0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if float(value).is_integer() else None


def is_version(value: Any) -> bool:
    """A registry version number: a positive integer (the engine may send it as 3.0)."""
    number = as_int(value)
    return number is not None and number >= 1


def show(value: Any) -> str:
    """A prop value for a message, printing integral floats as ints (3.0 -> 3)."""
    number = as_int(value)
    return str(number) if number is not None else repr(value)


# ------------------------------------------------------------------ per-env settings

# JSON-schema fragments for the settings rules read from `policies/config/<env>.json`.
SETTINGS: Final[Mapping[str, dict[str, Any]]] = {
    "environment": {
        "type": "string",
        "enum": list(ENVIRONMENTS),
        # Unconfigured means strictest: the prod-only checks run.
        "default": "prod",
        "description": "Environment of the stack being checked; prod-only rules run when 'prod'.",
    },
    "minRetentionDays": {
        "type": "integer",
        "minimum": 1,
        "default": 365,
        "description": "Minimum log retention in days for this environment.",
    },
    "allowedRegions": {
        "type": "array",
        "items": {"type": "string"},
        "default": [],
        "description": "Regions/locations resources may be created in; empty disables the check.",
    },
    "trackingUri": {
        "type": "string",
        "default": "",
        "description": "MLflow tracking URI holding the model registry; empty skips registry lookups.",
    },
    "artifactRoot": {
        "type": "string",
        "default": "",
        "description": "URL prefix of this environment's registry artifact store (e.g. "
        "'s3://shipway-prod-models/'); a raw model artifact URL elsewhere is a violation. Empty skips it.",
    },
    "requireReachableRegistry": {
        "type": "boolean",
        "default": True,
        "description": "Report a violation (instead of skipping) when the registry cannot be reached.",
    },
}


def schema(*names: str) -> PolicyConfigSchema:
    """The config schema for a rule that reads the given settings."""
    return PolicyConfigSchema(properties={name: dict(SETTINGS[name]) for name in names})


def setting(args: ResourceValidationArgs | StackValidationArgs, name: str) -> Any:
    """A setting from the policy config, falling back to the schema default.

    The engine sends config through protobuf Structs, so integers arrive as floats; callers
    that need an int convert explicitly.
    """
    config = args.get_config() or {}
    value = config.get(name) if isinstance(config, Mapping) else None
    return SETTINGS[name]["default"] if value is None else value


def environment(args: ResourceValidationArgs | StackValidationArgs) -> str:
    """The configured environment of the stack under check."""
    return str(setting(args, "environment"))


def retention_shortfall(args: ResourceValidationArgs, days: Any, unset: str) -> str | None:
    """Why a log retention of ``days`` is below the environment's ``minRetentionDays``, or None.

    Why shared: AWS log groups and Azure Log Analytics workspaces answer to the same per-env
    minimum, so they report a short retention in the same words; ``unset`` says what an unset
    value means on that cloud. An unknown value is judged at ``pulumi up``.
    """
    if days is UNKNOWN:
        return None
    minimum = int(setting(args, "minRetentionDays"))
    if days is None or days < minimum:
        shown = unset if days is None else f"{int(days)} days"
        return f"retentionInDays is {shown}; this environment keeps logs at least {minimum} days"
    return None


def is_prod(args: ResourceValidationArgs | StackValidationArgs) -> bool:
    """Prod-only rules (capacity, data capture, gate evidence) apply."""
    return environment(args) == "prod"


def prod_only(*settings: str) -> dict[str, Any]:
    """The policy arguments every prod-only rule shares: the tag and the ``environment`` setting.

    Why one place: a rule that acts only in prod must both carry :data:`PROD_ONLY` (docs and the
    pack list it by the tag) and read ``environment`` (or :func:`is_prod` falls back to the
    default); keeping them together means no rule can have one without the other. ``settings``
    are any further settings the rule reads.
    """
    return {"config_schema": schema("environment", *settings), "tags": [PROD_ONLY]}


# ------------------------------------------------------------------ stack helpers


def of_type(args: StackValidationArgs, *types: str) -> list[Any]:
    """The stack's resources of the given type tokens, in engine order."""
    return [r for r in args.resources if r.resource_type in types]


def refers_to(resource: Any, prop: str, target: Any, keys: Sequence[str] = ("id", "name")) -> bool:
    """Whether ``resource.<prop>`` points at ``target``.

    At preview the pointer is usually unknown (an id not yet allocated), so the engine's
    property dependencies decide; once known, the value is compared with the target's ids.
    """
    if any(dep.urn == target.urn for dep in resource.property_dependencies.get(prop, [])):
        return True
    value = get(resource.props, prop)
    if not isinstance(value, str):
        return False
    return any(get(target.props, key) == value for key in keys)


def scalers_of(
    args: StackValidationArgs, target_type: str, scaler_type: str, aims_at: Callable[[Any, Any], bool]
) -> Iterator[tuple[Any, list[Any]]]:
    """Each resource of ``target_type`` with the ``scaler_type`` resources aimed at it.

    Why shared: every cloud's autoscaling rule first pairs a serving resource with the scalers
    that point at it (``aims_at(scaler, target)``), then judges that pairing its own way.
    """
    scalers = of_type(args, scaler_type)
    for target in of_type(args, target_type):
        yield target, [s for s in scalers if aims_at(s, target)]
