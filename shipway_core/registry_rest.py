"""A small MLflow registry REST client: exactly the calls pins need, with clear errors.

Kept dependency-free (urllib) because it runs inside Pulumi's dynamic-provider process on
every `up`, where importing the whole MLflow client would cost seconds.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


class RegistryError(RuntimeError):
    """The registry is unreachable or refused a request."""


class PinError(ValueError):
    """A pinned model version cannot be served: it is missing or not READY."""


# (status, body) of one HTTP exchange; raises OSError when the registry cannot be reached.
Send = Callable[[str, str, bytes | None, dict[str, str], float], tuple[int, bytes]]


def _urllib_send(method: str, url: str, data: bytes | None, headers: dict[str, str],
                 timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) checked by caller
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from exc


# Registry URIs that are not plain http(s): prefix -> opener(uri) -> (REST base URL, send).
# components/registry/sagemaker.py registers SageMaker managed MLflow ARNs (SigV4-signed calls
# through the sagemaker-mlflow plugin); this module stays free of cloud SDK imports.
_OPENERS: dict[str, Callable[[str], tuple[str, Send]]] = {}


def register_opener(prefix: str, opener: Callable[[str], tuple[str, Send]]) -> None:
    """Teach the client a registry URI scheme (e.g. ``arn:aws:sagemaker:``)."""
    _OPENERS[prefix] = opener


def is_supported(tracking_uri: str) -> bool:
    """Whether pins can reach this registry (http(s), or a scheme an opener was registered for)."""
    return tracking_uri.startswith(("http://", "https://")) or any(tracking_uri.startswith(p) for p in _OPENERS)


def _resolve(tracking_uri: str) -> tuple[str, Send]:
    for prefix, opener in _OPENERS.items():
        if tracking_uri.startswith(prefix):
            return opener(tracking_uri)
    if not tracking_uri.startswith(("http://", "https://")):
        raise RegistryError(f"registry URI {tracking_uri!r} is not http(s) nor a SageMaker MLflow ARN; "
                            "pins need the MLflow REST API")
    return tracking_uri, _urllib_send


def _call(tracking_uri: str, method: str, path: str, params: dict[str, Any] | None = None,
          body: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
    base, send = _resolve(tracking_uri)
    url = base.rstrip("/") + "/api/2.0/mlflow/" + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    data = json.dumps(body).encode() if body is not None else None
    try:
        status, text = send(method, url, data, {"Content-Type": "application/json"}, timeout)
    except OSError as exc:
        raise RegistryError(f"MLflow registry at {tracking_uri} is unreachable ({exc}); "
                            "start the tracking server (`pulumi up` on the stack) or fix shipway:registryUri") from exc
    if status >= 400:
        detail = text.decode(errors="replace")
        try:
            payload = json.loads(detail)
        except ValueError:
            payload = {"message": detail}
        if not isinstance(payload, dict):
            payload = {"message": detail}
        payload["http_status"] = status
        return {"__error__": payload}
    return json.loads(text) if text else {}


def get_version(tracking_uri: str, name: str, version: int) -> dict[str, Any] | None:
    """The model version record, or None when it does not exist."""
    res = _call(tracking_uri, "GET", "model-versions/get", {"name": name, "version": str(version)})
    err = res.get("__error__")
    if err:
        if err.get("error_code") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or err["http_status"] == 404:
            return None
        raise RegistryError(f"registry error reading {name} v{version}: {err}")
    return res["model_version"]


def latest_versions(tracking_uri: str, name: str) -> list[int]:
    res = _call(tracking_uri, "GET", "model-versions/search", {"filter": f"name='{name}'", "max_results": 1000})
    if res.get("__error__"):
        return []
    return sorted(int(v["version"]) for v in res.get("model_versions", []))


def require_ready(tracking_uri: str, name: str, version: int) -> dict[str, Any]:
    """Pre-flight: the pinned version exists and is READY, or a PinError says what to do."""
    record = get_version(tracking_uri, name, version)
    if record is None:
        have = latest_versions(tracking_uri, name)
        known = f"registered versions: {', '.join(map(str, have))}" if have else "the model has no registered versions"
        raise PinError(
            f"model '{name}' version {version} does not exist in the registry at {tracking_uri} ({known}); "
            f"register it first or pin an existing version in the stack file")
    status = record.get("status")
    if status != "READY":
        raise PinError(f"model '{name}' version {version} in the registry at {tracking_uri} is {status}, not READY; "
                       "wait for registration to finish or pin another version")
    return record


def set_alias(tracking_uri: str, name: str, alias: str, version: int) -> None:
    res = _call(tracking_uri, "POST", "registered-models/alias", body={"name": name, "alias": alias,
                                                                         "version": str(version)})
    if res.get("__error__"):
        raise RegistryError(f"could not point alias '{alias}' of '{name}' at v{version}: {res['__error__']}")


def get_alias(tracking_uri: str, name: str, alias: str) -> int | None:
    res = _call(tracking_uri, "GET", "registered-models/alias", {"name": name, "alias": alias})
    if res.get("__error__"):
        return None
    return int(res["model_version"]["version"])


def delete_alias(tracking_uri: str, name: str, alias: str) -> None:
    res = _call(tracking_uri, "DELETE", "registered-models/alias", {"name": name, "alias": alias})
    err = res.get("__error__")
    if err and err.get("http_status") != 404 and err.get("error_code") != "RESOURCE_DOES_NOT_EXIST":
        raise RegistryError(f"could not delete alias '{alias}' of '{name}': {err}")


def file_path(uri: str) -> Path | None:
    """The filesystem path of a ``file://`` URI (or a plain path), None for anything remote: where a
    registry on this machine keeps its artifacts."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("", "file") or parts.netloc not in ("", "localhost"):
        return None
    return Path(urllib.request.url2pathname(parts.path))


def download_uri(tracking_uri: str, name: str, version: int) -> str | None:
    """Where the version's model artifacts are stored (``model-versions/get-download-uri``), or None."""
    res = _call(tracking_uri, "GET", "model-versions/get-download-uri", {"name": name, "version": str(version)})
    if res.get("__error__"):
        return None
    uri = res.get("artifact_uri")
    return str(uri) if uri else None


def get_run(tracking_uri: str, run_id: str) -> dict[str, Any] | None:
    """The run record (``info`` and ``data`` with its latest metrics), or None when it does not exist."""
    res = _call(tracking_uri, "GET", "runs/get", {"run_id": run_id})
    err = res.get("__error__")
    if err:
        if err.get("error_code") == "RESOURCE_DOES_NOT_EXIST" or err["http_status"] == 404:
            return None
        raise RegistryError(f"registry error reading run {run_id}: {err}")
    run = res.get("run")
    return run if isinstance(run, dict) else None


def set_version_tag(tracking_uri: str, name: str, version: int, key: str, value: str) -> None:
    res = _call(tracking_uri, "POST", "model-versions/set-tag",
                body={"name": name, "version": str(version), "key": key, "value": value})
    if res.get("__error__"):
        raise RegistryError(f"could not tag '{name}' v{version} with {key}: {res['__error__']}")
