"""Helpers for the Kubernetes target tests: stack configs, secrets, and manifest rendering.

``manifest()`` turns a recorded registration back into the object the provider would send to
the API server (apiVersion/kind/metadata/spec...), so the tests can run a real schema validator
over exactly what the components asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pulumi
from pulumi.runtime.rpc import _special_secret_sig, _special_sig_key

from shipway_core.config import StackConfig
from tests.support.recording import Recorded, Recording
from tests.support.stacks import example_config

K8S_PREFIX = "kubernetes:"
WORKLOAD_TYPES = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")
SECRETS = {"endpointApiKey": "k-123", "trackingDbPassword": "p-456"}


def stack_config(
    stack: str = "dev",
    *,
    models: Mapping[str, Any] | None = None,
    kubernetes: Mapping[str, Any] | None = None,
    **extra: Any,
) -> StackConfig:
    """A valid kubernetes stack config through the real parser."""
    raw: dict[str, Any] = {
        "cloud": "kubernetes",
        "environment": stack,
        "owner": "ml-platform",
        "costCenter": "cc-1234",
        "dataClassification": "confidential",
        "models": dict(models) if models is not None else {"churn": {"version": 3, "instances": 2}},
    }
    if kubernetes is not None:
        raw["kubernetes"] = dict(kubernetes)
    raw.update(extra)
    return example_config(stack, raw)


def secret_outputs(values: Mapping[str, str] = SECRETS) -> dict[str, pulumi.Output[str]]:
    """Secrets as the program gets them from config: secret Outputs."""
    return {k: pulumi.Output.secret(v) for k, v in values.items()}


def is_secret(value: Any) -> bool:
    """True if a recorded input value was marked secret (so it is encrypted in state)."""
    return isinstance(value, Mapping) and value.get(_special_sig_key) == _special_secret_sig


def plain(value: Any) -> Any:
    """Recorded input -> plain JSON: unwrap secrets, and give back the ints protobuf made floats."""
    if is_secret(value):
        return plain(value["value"])
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def manifest(resource: Recorded) -> dict[str, Any]:
    """The Kubernetes object a recorded pulumi-kubernetes registration describes."""
    if not resource.type.startswith(K8S_PREFIX):
        raise ValueError(f"{resource.type} is not a Kubernetes resource")
    return plain(resource.inputs)


def manifests(recording: Recording) -> list[dict[str, Any]]:
    """Every Kubernetes object in a recording (component resources excluded)."""
    return [manifest(r) for r in recording.resources if r.type.startswith(K8S_PREFIX)]


def pod_spec(resource: Recorded) -> dict[str, Any]:
    """Pod template spec of a workload."""
    return plain(resource.inputs["spec"]["template"]["spec"])


def containers(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container and init container of a pod spec."""
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    """Container env as a name -> value mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def diff_paths(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths (``spec.template...``) where two plain JSON values differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += diff_paths(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += diff_paths(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [path]
