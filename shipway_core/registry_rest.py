"""A small MLflow registry REST client: exactly the calls pins need, with clear errors.

Kept dependency-free (urllib) because it runs inside Pulumi's dynamic-provider process on
every `up`, where importing the whole MLflow client would cost seconds.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class RegistryError(RuntimeError):
    """The registry is unreachable or refused a request."""


class PinError(ValueError):
    """A pinned model version cannot be served: it is missing or not READY."""


def _call(tracking_uri: str, method: str, path: str, params: dict[str, Any] | None = None,
          body: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
    url = tracking_uri.rstrip("/") + "/api/2.0/mlflow/" + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(  # noqa: S310 - http(s) checked below
        url, data=data, method=method, headers={"Content-Type": "application/json"})
    if not url.startswith(("http://", "https://")):
        raise RegistryError(f"registry URI {tracking_uri!r} is not http(s); pins need the MLflow REST API")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) checked above
            text = resp.read()
            return json.loads(text) if text else {}
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        try:
            payload = json.loads(detail)
        except ValueError:
            payload = {"message": detail}
        payload["http_status"] = exc.code
        return {"__error__": payload}
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryError(f"MLflow registry at {tracking_uri} is unreachable ({exc}); "
                            "start the tracking server (`pulumi up` on the stack) or fix shipway:registryUri") from exc


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
