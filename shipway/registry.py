"""MLflow model-registry helpers used by promotion, gates, verification and `env status`.

Everything goes through :class:`mlflow.MlflowClient`, which speaks MLflow's REST API for an
``http://`` tracking URI (the platform's server) and the store directly for ``sqlite:///``
(tests). MLflow's HTTP client retries for minutes when the server is down, so an ``http``
URI is probed once with a short timeout first: an unreachable registry is one clear error.

Over http(s) the calls a promotion makes (version lookups, run metrics, evidence tags) go
through the small stdlib REST client instead, and so do version files (golden set, baseline)
when the server stores artifacts on this machine's filesystem, as the local target's does:
importing MLflow costs ~1.5 s of a command that must finish in seconds. Anything else
(``mlflow-artifacts:``, object stores, ``sqlite:///``) takes MLflow's client.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shipway_core import registry_rest

# MLflow's own registry accepts 100k-character tag values, but other MLflow-API registries
# (Databricks, Azure ML) cap at 5000; evidence must fit everywhere.
MAX_TAG_VALUE = 5000


# One registry error for every client (the stdlib REST client the providers use and this one).
RegistryError = registry_rest.RegistryError


@dataclass(frozen=True)
class VersionInfo:
    """What promotion needs to know about one registered version."""

    name: str
    version: int
    status: str
    run_id: str | None
    source: str
    tags: dict[str, str] = field(default_factory=dict)


def check_reachable(tracking_uri: str, timeout: float = 3.0) -> None:
    """Fail fast (seconds, not MLflow's minutes of retries) when an HTTP registry is down."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        httpx.get(tracking_uri.rstrip("/") + "/health", timeout=timeout)
    except httpx.HTTPError as exc:
        raise RegistryError(f"MLflow registry at {tracking_uri} is unreachable: {exc}") from exc


def truncate_tag(value: str, limit: int = MAX_TAG_VALUE) -> str:
    """Cut a tag value to the registry limit, marking the cut so nobody mistakes it for whole."""
    if len(value) <= limit:
        return value
    marker = "...[truncated]"
    return value[: limit - len(marker)] + marker


@contextlib.contextmanager
def mlflow_uris(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking/registry URIs at ``uri`` for one call, then restore them.

    MLflow 3 resolves ``models:/m-<id>`` sources through the process-wide URIs and ignores the
    client's, so downloads need them set; restoring the module state exactly (including
    "unset") keeps other code in the process unaffected.
    """
    from mlflow.tracking._model_registry import utils as registry_module
    from mlflow.tracking._tracking_service import utils as tracking_module

    # Private, untyped MLflow globals (declared ``= None``, so mypy would pin them to None).
    tracking_utils: Any = tracking_module
    registry_utils: Any = registry_module
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    tracking_utils._tracking_uri, registry_utils._registry_uri = uri, uri
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved


class Registry:
    """Thin, typed wrapper over one registry (one tracking URI)."""

    def __init__(self, tracking_uri: str, *, probe: bool = True):
        if probe:
            check_reachable(tracking_uri)
        self.tracking_uri = tracking_uri
        self._client: Any = None

    @property
    def client(self) -> Any:
        """MLflow's client, imported on first use: importing MLflow costs seconds, and the
        rollback path (version lookups over REST) never needs it."""
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _rest(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def local_artifact_dirs(self, info: VersionInfo) -> list[Path] | None:
        """The version's model directory, then its run's artifact directory, when the registry is
        reached over REST and keeps them on this machine's filesystem; None otherwise (use MLflow)."""
        if not self._rest():
            return None
        uri = registry_rest.download_uri(self.tracking_uri, info.name, info.version)
        model_dir = _local_path(uri) if uri else None
        if model_dir is None:
            return None
        dirs = [model_dir]
        if info.run_id:
            run = registry_rest.get_run(self.tracking_uri, info.run_id)
            run_dir = _local_path(str(run["info"].get("artifact_uri", ""))) if run else None
            if run is not None and run_dir is None:
                return None
            if run_dir is not None:
                dirs.append(run_dir)
        return dirs

    def _exc(self, exc: Exception) -> RegistryError:
        return RegistryError(f"MLflow registry at {self.tracking_uri}: {exc}")

    def require_model(self, name: str) -> None:
        """Raise a clear error when ``name`` is not registered."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
                raise RegistryError(
                    f"model '{name}' is not registered in the registry at {self.tracking_uri}"
                ) from exc
            raise self._exc(exc) from exc

    def version(self, name: str, version: int) -> VersionInfo:
        """One version; unknown model or version -> :class:`RegistryError` naming both."""
        if self._rest():
            record = registry_rest.get_version(self.tracking_uri, name, version)
            if record is None:
                have = registry_rest.latest_versions(self.tracking_uri, name)
                if not have:
                    raise RegistryError(f"model '{name}' is not registered in the registry at {self.tracking_uri}")
                raise RegistryError(f"version {version} of model '{name}' does not exist (latest is {have[-1]})")
            return VersionInfo(name=name, version=int(record["version"]), status=str(record.get("status")),
                               run_id=record.get("run_id"), source=str(record.get("source")),
                               tags={t["key"]: t["value"] for t in record.get("tags", [])})
        from mlflow.exceptions import MlflowException

        self.require_model(name)
        try:
            mv = self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
                latest = self.latest_version(name)
                raise RegistryError(
                    f"version {version} of model '{name}' does not exist (latest is {latest})"
                ) from exc
            raise self._exc(exc) from exc
        return VersionInfo(
            name=name,
            version=int(mv.version),
            status=str(mv.status),
            run_id=mv.run_id,
            source=str(mv.source),
            tags=dict(mv.tags or {}),
        )

    def require_ready(self, name: str, version: int) -> VersionInfo:
        """A version may only be pinned once the registry has finished creating it."""
        info = self.version(name, version)
        if info.status != "READY":
            raise RegistryError(f"version {version} of model '{name}' is {info.status}, not READY")
        return info

    def latest_version(self, name: str) -> int | None:
        """Highest version number (for error messages), None if there is none."""
        versions = self.client.search_model_versions(f"name='{name}'")
        return max((int(v.version) for v in versions), default=None)

    def run_metrics(self, run_id: str | None) -> dict[str, float]:
        """Final metric values of the run that produced a version."""
        if not run_id:
            return {}
        if self._rest():
            run = registry_rest.get_run(self.tracking_uri, run_id)
            if run is None:
                raise RegistryError(f"run {run_id} does not exist in the registry at {self.tracking_uri}")
            return {str(m["key"]): float(m["value"]) for m in (run.get("data") or {}).get("metrics", [])}
        return dict(self.client.get_run(run_id).data.metrics)

    def set_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        """Attach evidence to a version, each value cut to the registry's limit."""
        for key, value in tags.items():
            if self._rest():
                registry_rest.set_version_tag(self.tracking_uri, name, version, key, truncate_tag(value))
            else:
                self.client.set_model_version_tag(name, str(version), key, truncate_tag(value))

    def alias_target(self, name: str, alias: str) -> int | None:
        """The version an alias points at, None when the alias (or model) does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def download_version_file(self, info: VersionInfo, filename: str) -> Path | None:
        """A file stored with a version: in the model's artifacts, else in its run's artifacts."""
        dirs = self.local_artifact_dirs(info)
        if dirs is not None:
            found = next((d / filename for d in dirs if (d / filename).is_file()), None)
            if found is None:
                return None
            copy = Path(tempfile.mkdtemp(prefix="shipway-")) / filename  # a private copy, as MLflow's download
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, copy)
            return copy
        from mlflow.artifacts import download_artifacts

        dest = tempfile.mkdtemp(prefix="shipway-")
        candidates: list[dict[str, Any]] = [{"artifact_uri": f"{info.source.rstrip('/')}/{filename}"}]
        if info.run_id:
            candidates.append({"run_id": info.run_id, "artifact_path": filename})
        for kwargs in candidates:
            try:
                with mlflow_uris(self.tracking_uri):
                    return Path(download_artifacts(**kwargs, dst_path=dest, tracking_uri=self.tracking_uri))
            except Exception:  # noqa: S112 - "not there" comes in many exception types; try the next place
                continue
        return None

    def model_path(self, info: VersionInfo) -> Path:
        """Local copy of the version's model directory (for pyfunc loading)."""
        from mlflow.artifacts import download_artifacts

        try:
            with mlflow_uris(self.tracking_uri):
                return Path(download_artifacts(artifact_uri=info.source, tracking_uri=self.tracking_uri))
        except Exception as exc:
            raise RegistryError(
                f"cannot download version {info.version} of model '{info.name}': {exc}"
            ) from exc

    def load_json(self, info: VersionInfo, filename: str) -> Any | None:
        """A JSON version file, or None when it is absent."""
        path = self.download_version_file(info, filename)
        return json.loads(path.read_text()) if path else None


def _local_path(uri: str) -> Path | None:
    """The absolute filesystem path of a local artifact URI; None for anything remote."""
    path = registry_rest.file_path(uri)
    return path if path is not None and path.is_absolute() else None
