"""Building blocks every Shipway workload shares: names, labels, and the restricted pod shape.

The namespace enforces Pod Security "restricted", so a pod that forgets one field is rejected
at admission, long after `pulumi preview` said yes. Building every pod from these helpers keeps
the whole target admissible by construction, and gives tests one place to pin the fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shipway_core.config import KubernetesSettings

PART_OF = "shipway"
# Not 0 and not a well-known system uid: the restricted profile requires non-root, and a fixed id
# lets volumes (fsGroup) and mounted secret files be readable without world-read bits.
RUN_AS_USER = 10001
POSTGRES_UID = 999  # the uid the official postgres image owns its data directory with
SECRET_MOUNT_DIR = "/var/run/secrets/shipway"  # noqa: S105 - a directory, not a secret
SECRET_KEY = "value"  # noqa: S105 - a key name; every Shipway Secret holds exactly one value under this key
# The one writable path in a read-only-root container: an emptyDir, private to the pod.
SCRATCH_DIR = "/tmp"  # noqa: S108 - a path inside the container, backed by an emptyDir
SECRET_FILE_MODE = 0o440  # owner+fsGroup read, nothing for others

COMPONENT_LABEL = "app.kubernetes.io/component"
# Service label whose value the ServiceMonitor uses as the Prometheus `job` (see observability).
SCRAPE_JOB_LABEL = "shipway.dev/scrape-job"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
TRACKING_COMPONENT = "tracking-server"
DATABASE_COMPONENT = "tracking-database"
ENDPOINT_COMPONENT = "inference-endpoint"
COLLECTOR_COMPONENT = "otel-collector"

_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Longest component name whose derived object names still fit a 63-character DNS label
# (Service names and the `app.kubernetes.io/name` label value share that limit).
MAX_ENDPOINT_NAME = 55  # + "-metrics"
MAX_TRACKING_NAME = 50  # + "-db-password"
MAX_OBSERVABILITY_NAME = 40  # + "-otel-collector-config"
MAX_NAMESPACE_COMPONENT_NAME = 50  # + "-limits"


def validate_object_name(name: str, max_length: int = 63) -> None:
    """Names become Kubernetes object names and label values: DNS-1035 labels, bounded length."""
    if not isinstance(name, str) or not _DNS_1035.match(name) or len(name) > max_length:
        raise ValueError(
            f"name: {name!r} is not valid; use a DNS-1035 label (lowercase letters, digits and '-', "
            f"starting with a letter) of at most {max_length} characters"
        )


def namespace_name(environment: str, settings: KubernetesSettings) -> str:
    """The namespace an environment lives in: configured, or ``shipway-<environment>``."""
    return settings.namespace or f"shipway-{environment}"


def label_value(text: str) -> str:
    """Squeeze a free-text tag into a valid label value (the exact text goes in an annotation)."""
    cleaned = _LABEL_VALUE_BAD.sub("-", text)[:63]
    return cleaned.strip("-_.") or "unset"


def selector_labels(name: str, component: str) -> dict[str, str]:
    """Labels that identify one workload's pods; immutable once a Deployment exists."""
    return {NAME_LABEL: name, COMPONENT_LABEL: component, PART_OF_LABEL: PART_OF}


def metadata(
    name: str,
    namespace: Any,
    component: str,
    tags: Mapping[str, str],
    annotations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Object metadata: selector labels + compliance tags (sanitised labels, exact annotations)."""
    labels = selector_labels(name, component)
    # Same keys as the tags on other clouds (the policy pack's tag rule reads them as labels).
    labels.update({k: label_value(v) for k, v in sorted(tags.items())})
    labels["app.kubernetes.io/managed-by"] = "pulumi"
    notes = {f"shipway.dev/tag-{k}": v for k, v in sorted(tags.items())}
    notes.update(annotations or {})
    meta: dict[str, Any] = {"name": name, "labels": labels, "annotations": notes}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def container_security_context(run_as_user: int = RUN_AS_USER) -> dict[str, Any]:
    """Everything Pod Security "restricted" asks of a container, plus a read-only root."""
    return {
        "run_as_non_root": True,
        "run_as_user": run_as_user,
        "run_as_group": run_as_user,
        "read_only_root_filesystem": True,
        "allow_privilege_escalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def pod_security_context(run_as_user: int = RUN_AS_USER) -> dict[str, Any]:
    """Pod-level defaults; fsGroup makes mounted secrets and volumes readable by the app user."""
    return {
        "run_as_non_root": True,
        "run_as_user": run_as_user,
        "run_as_group": run_as_user,
        "fs_group": run_as_user,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def http_probe(path: str, port: str, *, period: int = 10, failures: int = 3, initial_delay: int = 0) -> dict[str, Any]:
    """An HTTP GET probe against a named container port."""
    return {
        "http_get": {"path": path, "port": port},
        "period_seconds": period,
        "failure_threshold": failures,
        "timeout_seconds": 2,
        "initial_delay_seconds": initial_delay,
    }


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    """Requests for scheduling, limits so one workload cannot starve the namespace quota."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


def scratch_volume(name: str, size: str = "256Mi") -> dict[str, Any]:
    """A bounded emptyDir: the only writable place in a read-only-root container."""
    return {"name": name, "empty_dir": {"size_limit": size}}


def secret_volume(volume: str, secret_name: Any, file_name: str) -> dict[str, Any]:
    """Mount one Shipway Secret as a single read-only file (never as an env var)."""
    return {
        "name": volume,
        "secret": {
            "secret_name": secret_name,
            "default_mode": SECRET_FILE_MODE,
            "items": [{"key": SECRET_KEY, "path": file_name}],
        },
    }


def topology_spread(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Spread replicas over zones and nodes; ScheduleAnyway so a small cluster still rolls."""
    return [
        {
            "max_skew": 1,
            "topology_key": key,
            "when_unsatisfiable": "ScheduleAnyway",
            "label_selector": {"match_labels": dict(labels)},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


_OPAQUE_KEYS = frozenset({"labels", "annotations", "match_labels", "matchLabels", "data", "string_data"})


def camel(obj: Any) -> Any:
    """snake_case keys -> camelCase, for CustomResource specs (which the SDK passes through verbatim).

    Keys of label/annotation/data maps are user data and stay exactly as written.
    """
    if isinstance(obj, list):
        return [camel(v) for v in obj]
    if not isinstance(obj, Mapping):
        return obj
    out: dict[str, Any] = {}
    for key, value in obj.items():
        new_key = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), key.rstrip("_"))
        out[new_key] = dict(value) if key in _OPAQUE_KEYS and isinstance(value, Mapping) else camel(value)
    return out
