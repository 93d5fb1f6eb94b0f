"""Recognise how an endpoint names the model it serves, on every target.

Shipway serves *exact registry versions*. A reference is acceptable only when it names one
immutable version in a registry: ``models:/<name>/<N>`` (MLflow), a versioned SageMaker model
package ARN, or a versioned Azure ML model asset id. Everything else either moves under the
endpoint's feet (``latest``, ``@champion``, stages) or bypasses the registry and its gate
evidence entirely (``s3://``, ``runs:/``, blob paths). This module is pure so it is shared by
the per-cloud pinning rules and the gate-evidence rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from policies._core import UNKNOWN, entries, get, items

# Environment variables through which our serving app receives its model (all targets).
MODEL_URI_ENV: Final = ("SHIPWAY_MODEL_URI", "MLFLOW_MODEL_URI")
# Any other spelling of the same thing: `<PREFIX>_MODEL_URI`, `modelUri`, `MODEL_REF`... carries a
# reference; `SHIPWAY_MODEL_VERSION`, `modelVersion`, `MODEL_VERSION` carries a bare version number.
# Matched on the name in snake_case so every casing and separator counts.
_URI_ENV: Final = re.compile(r"(^|_)model_?(uri|ref|reference)$")
_VERSION_ENV: Final = re.compile(r"(^|_)model_?version$")

_PINNED: Final = (
    re.compile(r"^models:/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)/(?P<version>[0-9]+)$"),
    re.compile(r"^azureml://registries/[^/]+/models/(?P<name>[^/]+)/versions/(?P<version>[0-9]+)$"),
    re.compile(r"^azureml:(?P<name>[^:@/]+):(?P<version>[0-9]+)$"),
    re.compile(
        r"^/subscriptions/.+/workspaces/[^/]+/models/(?P<name>[^/]+)/versions/(?P<version>[0-9]+)$",
        re.IGNORECASE,
    ),
    re.compile(r"^arn:aws[a-z-]*:sagemaker:[^:]*:[0-9]*:model-package/(?P<name>[^/]+)/(?P<version>[0-9]+)$"),
)
_ALIAS: Final = (
    re.compile(r"^models:/[^/@]+@(?P<alias>.+)$"),
    re.compile(r"^azureml:[^:@/]+@(?P<alias>.+)$"),
    re.compile(r"/labels/(?P<alias>[^/]+)$"),
)
_MOVING: Final = (
    re.compile(r"^models:/[^/@]+/(?P<alias>[A-Za-z][A-Za-z_-]*)$"),  # latest, Production, Staging
    re.compile(r"^arn:aws[a-z-]*:sagemaker:[^:]*:[0-9]*:model-package(-group)?/(?P<alias>[^/]+)$"),
)
_RAW_PATH: Final = re.compile(
    r"^(s3|s3a|gs|wasbs?|abfss?|https?|file|runs|mlflow-artifacts|dbfs|hdfs)://?|^azureml://datastores/"
    r"|^/|^\./|^~/",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ModelRef:
    """One model reference found in a resource: where, what, and what is wrong with it."""

    field: str
    raw: Any
    name: str | None = None
    version: int | None = None
    problem: str | None = None


def classify(field: str, raw: Any) -> ModelRef:
    """Classify a string reference; ``problem`` is None only for an exact registry version."""
    if not isinstance(raw, str):
        return ModelRef(field, raw, problem="not a registry model version reference")
    for pattern in _PINNED:
        match = pattern.match(raw)
        if match and int(match["version"]) >= 1:
            return ModelRef(field, raw, name=match["name"], version=int(match["version"]))
    for pattern in _ALIAS:
        match = pattern.search(raw)
        if match:
            return ModelRef(field, raw, problem=f"a floating alias '{match['alias']}'")
    for pattern in _MOVING:
        match = pattern.match(raw)
        if match:
            return ModelRef(
                field, raw, problem=f"a moving reference '{match['alias']}', not an exact version"
            )
    if _RAW_PATH.search(raw):
        return ModelRef(field, raw, problem="a raw artifact path that bypasses the registry")
    return ModelRef(field, raw, problem="not a registry model version reference")


def describe(ref: ModelRef) -> str:
    """The violation text shared by every pinning rule."""
    if ref.raw is None:
        return (
            f"{ref.field} names no model; serve an exact registry version through modelPackageName "
            "or SHIPWAY_MODEL_URI such as 'models:/<name>/<version>'"
        )
    return (
        f"{ref.field} {ref.raw!r} is {ref.problem}; serve an exact registry version "
        "such as 'models:/<name>/<version>'"
    )


def env_refs(env: Any, prefix: str) -> list[ModelRef]:
    """Model references in an env mapping (``{K: V}``) or a Kubernetes env list (``[{name, value}]``)."""
    pairs: list[tuple[str, Any]]
    if isinstance(env, Mapping):
        pairs = list(entries(env))
    else:
        pairs = [
            (get(e, "name"), get(e, "value", UNKNOWN if get(e, "valueFrom") else None)) for e in items(env)
        ]
    refs = []
    for key, value in pairs:
        if not isinstance(key, str):
            continue
        field = f"{prefix}.{key}"
        snake = _snake(key)
        if value is UNKNOWN and (key in MODEL_URI_ENV or _URI_ENV.search(snake) or _VERSION_ENV.search(snake)):
            refs.append(ModelRef(field, UNKNOWN))  # a computed value is judged at `pulumi up`
        elif key in MODEL_URI_ENV or _URI_ENV.search(snake):
            refs.append(classify(field, value))
        elif _VERSION_ENV.search(snake):
            refs.append(classify_version(field, value))
    return refs


def _snake(key: str) -> str:
    """``SHIPWAY_MODEL_VERSION``/``modelVersion``/``model-version`` -> ``..._model_version``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return re.sub(r"[^A-Za-z0-9]+", "_", spaced).lower()


def classify_version(field: str, raw: Any) -> ModelRef:
    """A bare version variable: a positive integer (as text) is exact; ``latest`` and friends move."""
    text = str(int(raw)) if isinstance(raw, int | float) and float(raw).is_integer() else raw
    if isinstance(text, str) and text.isdigit() and int(text) >= 1:
        return ModelRef(field, raw, version=int(text))
    if isinstance(text, str) and re.fullmatch(r"[A-Za-z][A-Za-z_-]*", text):
        return ModelRef(field, raw, problem=f"a moving reference '{text}', not an exact version")
    return ModelRef(field, raw, problem="not an exact registry version number")


# The serving image's own pin; a raw artifact URL is accepted only when it carries the same pin.
PIN_ENV: Final = "SHIPWAY_MODEL_URI"


def _pinned_artifact_path(url: str, pin: ModelRef) -> bool:
    """``url`` holds ``models/<name>/<N>/`` for exactly the pinned name and version.

    The promotion step packages registry version N of a model to that prefix of the artifact
    bucket, so such a URL *is* the pinned version, and the env pin names it for the serving app.
    """
    segment = f"/models/{pin.name}/{pin.version}/"
    path = re.sub(r"^[a-z][a-z0-9+.-]*://[^/]*", "", url, flags=re.IGNORECASE)
    return segment in f"/{path.lstrip('/')}"


def _env_pin(refs: list[ModelRef], where: str) -> ModelRef | None:
    """The container's exact ``SHIPWAY_MODEL_URI`` pin, if it has one."""
    for ref in refs:
        if ref.field == f"{where}.environment.{PIN_ENV}" and ref.problem is None and ref.version:
            return ref
    return None


def _raw_artifact_ref(field: str, raw: Any, pin: ModelRef | None, artifact_root: str = "") -> ModelRef | None:
    """A ``modelDataUrl``/``modelDataSource`` as a finding (None when it is the pinned version).

    The path alone proves nothing when the bucket is someone else's: anyone can write
    ``models/<name>/<N>/`` into their own bucket. With ``artifact_root`` set, the URL must also
    live under the environment's registry artifact store.
    """
    if isinstance(raw, str) and pin is not None:
        if artifact_root and not raw.startswith(artifact_root):
            return ModelRef(
                field, raw, problem=f"an artifact outside this environment's registry location {artifact_root!r}"
            )
        if _pinned_artifact_path(raw, pin):
            return None
        return ModelRef(
            field,
            raw,
            problem=f"a raw artifact path that is not models/{pin.name}/{pin.version}/ as pinned by "
            f"{PIN_ENV} {pin.raw!r}",
        )
    return ModelRef(
        field, raw if isinstance(raw, str) else field.rsplit(".", 1)[-1],
        problem="a raw artifact path that bypasses the registry",
    )


def sagemaker_model_refs(props: Any, artifact_root: str = "") -> list[ModelRef]:
    """Every container of an ``aws:sagemaker/model:Model`` and how it names its model."""
    containers = [("primaryContainer", get(props, "primaryContainer"))]
    containers += [(f"containers[{i}]", c) for i, c in enumerate(items(get(props, "containers")))]
    refs: list[ModelRef] = []
    for where, container in containers:
        if not isinstance(container, Mapping):
            continue
        env = env_refs(get(container, "environment"), f"{where}.environment")
        pin = _env_pin(env, where)
        found: list[ModelRef] = []
        for raw_key in ("modelDataUrl", "modelDataSource"):
            raw = get(container, raw_key)
            if raw is not None and raw is not UNKNOWN:
                ref = _raw_artifact_ref(f"{where}.{raw_key}", raw, pin, artifact_root)
                found += [ref] if ref else []
        package = get(container, "modelPackageName")
        if isinstance(package, str):
            found.append(classify(f"{where}.modelPackageName", package))
        found += env
        if not found and package is not UNKNOWN:
            found.append(ModelRef(where, None, problem="missing"))
        refs.extend(found)
    return refs


def kubernetes_pod_spec(props: Any) -> Any:
    """The pod spec of a workload (Deployment/StatefulSet/DaemonSet/Job) or a bare Pod."""
    for path in ("spec.template.spec", "spec.jobTemplate.spec.template.spec", "spec.predictor"):
        found = get(props, path)
        if found is not None:
            return found
    return get(props, "spec")


def kubernetes_model_refs(props: Any) -> list[ModelRef]:
    """Model references passed to containers of a Kubernetes workload through env vars."""
    refs: list[ModelRef] = []
    for container in items(get(kubernetes_pod_spec(props), "containers")):
        name = get(container, "name", "?")
        refs.extend(env_refs(get(container, "env"), f"containers[{name}].env"))
    return refs
