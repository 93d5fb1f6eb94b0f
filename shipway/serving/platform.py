"""Start-up of the serving image on SageMaker, Azure ML and Kubernetes: ``python -m shipway.serving.platform``.

The platforms hand the container its settings as environment variables and mounted files, not
as the flags ``python -m shipway.serving`` takes. This module reads them as
``shipway_core.contract`` defines them per platform (``SHIPWAY_PLATFORM`` says which), turns
them into a pin file and a ``ServingConfig``, and runs the same server:

- **SageMaker**: the model is the version SageMaker unpacked at ``/opt/ml/model`` from the
  pinned ``model.tar.gz``; the API key is fetched from Secrets Manager by its ARN at start and
  written to a private 0600 file (never an env value: DescribeModel shows those).
- **Azure ML**: the registered model version is mounted where ``AZUREML_MODEL_DIR`` says; the
  API key, if any, is read from Key Vault with the deployment's managed identity.
- **Kubernetes**: the model comes from the registry at ``MLFLOW_TRACKING_URI``; the API key is
  the mounted Secret file named by ``SHIPWAY_API_KEY_FILE``.

Where the model is a directory in the container it is loaded *before* the server listens, so
SageMaker's ``/ping`` answers only once the pinned version is ready to predict.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from shipway.serving.config import Pin, ServingConfig
from shipway.serving.logsink import utc_now_iso
from shipway.serving.model import LoadedModel, ModelLoadError
from shipway_core import contract as c
from shipway_core import vendor_telemetry

Log = Callable[..., None]
Loader = Callable[..., LoadedModel]


class PlatformError(ValueError):
    """The platform's environment does not satisfy the contract; the message names the variable."""


def require(env: Mapping[str, str], name: str, what: str) -> str:
    """A required variable's value, or an error naming it and what it should hold."""
    value = env.get(name, "")
    if not value:
        raise PlatformError(f"{name}: not set; set it to {what}")
    return value


def model_version(env: Mapping[str, str]) -> int:
    """The pinned registry version (an exact positive integer, never an alias)."""
    raw = require(env, c.MODEL_VERSION, "the pinned registry version, e.g. 3")
    if not raw.isdigit() or int(raw) < 1:
        raise PlatformError(f"{c.MODEL_VERSION}: {raw!r} is not valid; set it to the pinned registry "
                            "version, a positive integer (aliases are not served)")
    return int(raw)


def find_model_dir(root: Path, variable: str) -> Path:
    """The MLflow model directory at ``root`` or exactly one level below it.

    SageMaker unpacks the package's files straight into /opt/ml/model; Azure ML mounts the
    registered folder *inside* AZUREML_MODEL_DIR (``<dir>/<folder>/MLmodel``).
    """
    if (root / "MLmodel").is_file():
        return root
    found = sorted(p.parent for p in root.glob("*/MLmodel")) if root.is_dir() else []
    if len(found) == 1:
        return found[0]
    detail = "does not exist" if not root.is_dir() else (
        "holds no MLmodel file" if not found else f"holds {len(found)} MLflow models")
    raise PlatformError(f"{variable}: {str(root)!r} {detail}; the platform must provide exactly one "
                        "MLflow model directory there (the pinned version's package)")


def resolve_model_dir(platform: c.PlatformContract, env: Mapping[str, str]) -> Path | None:
    """Where this platform put the model files, or None when the app fetches them from the registry."""
    if platform.model_dir is not None:
        return find_model_dir(Path(platform.model_dir), platform.model_dir)
    if platform.model_dir_env is not None:
        root = require(env, platform.model_dir_env, "the mounted model directory (the platform sets it)")
        return find_model_dir(Path(root), platform.model_dir_env)
    return None


def fetch_secret(arn: str, env: Mapping[str, str]) -> bytes:
    """A Secrets Manager secret by ARN, in the ARN's region (boto3 honours AWS_ENDPOINT_URL*)."""
    parts = arn.split(":")
    if len(parts) < 7 or parts[:3] != ["arn", parts[1], "secretsmanager"] or not parts[3]:
        raise PlatformError(f"{c.API_KEY_SECRET_ARN}: {arn!r} is not a Secrets Manager ARN; set it to "
                            "arn:aws:secretsmanager:<region>:<account>:secret:<name>")
    import boto3

    client = boto3.client("secretsmanager", region_name=parts[3])
    try:
        value = client.get_secret_value(SecretId=arn)
    except Exception as exc:  # noqa: BLE001 - any failure here means the endpoint cannot authenticate
        raise PlatformError(f"{c.API_KEY_SECRET_ARN}: reading {arn} failed ({type(exc).__name__}: {exc}); "
                            "check the endpoint role may read it and decrypt its key") from None
    secret = value.get("SecretString")
    data = secret.encode() if isinstance(secret, str) else value.get("SecretBinary", b"")
    if not data.strip():
        raise PlatformError(f"{c.API_KEY_SECRET_ARN}: secret {arn} is empty; store the API key in it")
    return data.strip()


def azure_token(env: Mapping[str, str], resource: str) -> str:
    """An access token for ``resource`` from Azure ML's managed-identity endpoint (MSI_ENDPOINT)."""
    import httpx

    endpoint = require(env, c.AZUREML_MSI_ENDPOINT, "Azure ML's identity endpoint (Azure sets it)")
    secret = require(env, c.AZUREML_MSI_SECRET, "Azure ML's identity secret (Azure sets it)")
    params = {"api-version": "2017-09-01", "resource": resource}
    if env.get(c.IDENTITY_CLIENT_ID):
        params["clientid"] = env[c.IDENTITY_CLIENT_ID]
    res = httpx.get(endpoint, params=params, headers={"secret": secret}, timeout=10)
    if res.status_code != 200:
        raise PlatformError(f"{c.AZUREML_MSI_ENDPOINT}: token request answered {res.status_code}; check the "
                            f"deployment's identity ({c.IDENTITY_CLIENT_ID}) is assigned to the endpoint")
    return str(res.json()["access_token"])


def fetch_key_vault_secret(uri: str, env: Mapping[str, str]) -> bytes:
    """A Key Vault secret by its URI, read with the deployment's managed identity."""
    import httpx

    if "/secrets/" not in uri:
        raise PlatformError(f"{c.API_KEY_SECRET_URI}: {uri!r} is not a Key Vault secret URI; set it to "
                            "https://<vault>.vault.azure.net/secrets/<name>")
    token = azure_token(env, "https://vault.azure.net")
    res = httpx.get(uri, params={"api-version": "7.4"}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    if res.status_code != 200:
        raise PlatformError(f"{c.API_KEY_SECRET_URI}: reading {uri} answered {res.status_code}; grant the "
                            "endpoint identity 'Key Vault Secrets User' on that secret")
    value = str(res.json().get("value") or "").strip()
    if not value:
        raise PlatformError(f"{c.API_KEY_SECRET_URI}: secret {uri} is empty; store the API key in it")
    return value.encode()


def write_private(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to a 0600 file (created with that mode, never readable by others)."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def api_key_file(env: Mapping[str, str], workdir: Path) -> str | None:
    """The API key file the app reads: fetched by ARN (SageMaker) or URI (Azure), or mounted (Kubernetes)."""
    arn = env.get(c.API_KEY_SECRET_ARN)
    if arn:
        return str(write_private(workdir, "api-key", fetch_secret(arn, env)))
    uri = env.get(c.API_KEY_SECRET_URI)
    if uri:
        return str(write_private(workdir, "api-key", fetch_key_vault_secret(uri, env)))
    return env.get(c.API_KEY_FILE) or None


def load_model_dir(directory: Path, pin: Pin, *, log: Log | None = None) -> LoadedModel:
    """Load, warm and return the MLflow model in ``directory`` (no registry call).

    The files belong to the platform (read-only on SageMaker), so the model gets no workdir
    and discarding it deletes nothing.
    """
    from mlflow.models import Model

    from shipway.serving.model import PROFILE_FILE, _build_model, read_profile, schema_from_signature

    try:
        meta = Model.load(str(directory))
        if meta.signature is None:
            raise ModelLoadError(f"{directory}: the model has no input signature; log it with one")
        schema = schema_from_signature(meta.signature)
        model = _build_model(pin, str(directory), meta, schema, log)
        model.profile = read_profile(directory / PROFILE_FILE, pin, log)
        model.predict(model.warm_batch)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"loading {pin.model_uri} from {directory} failed: {type(exc).__name__}: {exc}") from exc
    return model


def preloaded(first: LoadedModel, directory: Path) -> Loader:
    """A loader that returns the model loaded before start-up once, then reads the directory again."""
    pending = [first]

    def load(pin: Pin, *, log: Log | None = None) -> LoadedModel:
        if pending and (pending[0].name, pending[0].version) == (pin.model_name, pin.model_version):
            return pending.pop()
        return load_model_dir(directory, pin, log=log)

    return load


def drift_window_fields(psi: Mapping[str, float], samples: float, model: LoadedModel) -> dict[str, Any]:
    """The fields of the ``drift_window`` log line the AWS metric filter reads (contract.DRIFT_LOG_*)."""
    return {
        c.DRIFT_LOG_VALUE_FIELD: round(max(psi.values()), 6) if psi else 0.0,
        "samples": round(samples, 1),
        "model_name": model.name,
        "model_version": model.version,
    }


def emit_drift_window(emit: Log, psi: Mapping[str, float], samples: float, model: LoadedModel) -> None:
    """Write one ``drift_window`` event; the app calls this whenever it recomputes drift."""
    emit("info", c.DRIFT_LOG_EVENT, **drift_window_fields(psi, samples, model))


@dataclass(frozen=True)
class Startup:
    """What the environment says to serve, and how (before any model is loaded)."""

    platform: str
    config: ServingConfig
    pin: Pin
    model_dir: Path | None


def check_model_uri(env: Mapping[str, str], name: str, version: int) -> None:
    """SHIPWAY_MODEL_URI (what the policy pack checks) must name the same version that is served."""
    uri = env.get(c.MODEL_URI)
    if uri and uri != f"models:/{name}/{version}":
        raise PlatformError(f"{c.MODEL_URI}: {uri!r} disagrees with {c.MODEL_NAME}/{c.MODEL_VERSION} "
                            f"({name!r} version {version}); set it to 'models:/{name}/{version}'")


def startup(env: Mapping[str, str], workdir: Path) -> Startup:
    """Validate the environment against the platform's contract; writes the pin (and key) files."""
    try:
        platform = c.contract(require(env, c.PLATFORM, f"one of {', '.join(c.PLATFORMS)}"))
    except ValueError as exc:
        raise PlatformError(str(exc)) from None
    name = require(env, c.MODEL_NAME, "the registered model name")
    version = model_version(env)
    check_model_uri(env, name, version)
    environment = require(env, c.ENVIRONMENT, "the environment name, e.g. prod")
    model_dir = resolve_model_dir(platform, env)
    tracking = env.get(c.TRACKING_URI) or ""
    if model_dir is None and not tracking:
        raise PlatformError(f"{c.TRACKING_URI}: not set; on {platform.platform} the model comes from the "
                            "registry, set it to the MLflow tracking server URL")
    # The pin file names the registry the version came from, or the directory it was unpacked to.
    source = tracking or (model_dir.as_uri() if model_dir is not None else "")
    pin_path = Path(env.get(c.PIN_FILE) or workdir / "pin.json")
    pin_path.write_bytes(orjson.dumps({"model_name": name, "model_version": version, "tracking_uri": source}))
    port = env.get(c.PORT) or str(c.SERVING_PORT)
    if not port.isdigit():
        raise PlatformError(f"{c.PORT}: {port!r} is not valid; set it to a TCP port number such as 8080")
    host = env.get(c.HOST) or c.CONTAINER_HOST
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise PlatformError(f"{c.HOST}: {host!r} is not valid; set it to an IP address such as 127.0.0.1, "
                            f"or leave it unset to listen on {c.CONTAINER_HOST}") from None
    explain = env.get(c.EXPLAIN, "false")
    if explain not in ("true", "false"):
        raise PlatformError(f"{c.EXPLAIN}: {explain!r} is not valid; set it to true or false")
    config = ServingConfig(
        pin_file=str(pin_path), host=host, port=int(port), api_key_file=api_key_file(env, workdir),
        otlp_endpoint=env.get(c.OTLP_ENDPOINT) or None, environment=environment, explain=explain == "true",
    )
    return Startup(platform.platform, config, Pin(name, version, source), model_dir)


def prepare(env: Mapping[str, str], workdir: Path) -> tuple[ServingConfig, Loader | None]:
    """The config to run and, where the platform mounted the model, a loader holding it loaded."""
    start = startup(env, workdir)
    if start.model_dir is None:
        return start.config, None
    return start.config, preloaded(load_model_dir(start.model_dir, start.pin), start.model_dir)


def fail(error: str) -> int:
    """Log a start-up failure as one JSON line (what the platform's log stream shows) and exit 2."""
    line = {"ts": utc_now_iso(), "level": "error", "event": "startup_failed", "error": error}
    sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
    sys.stdout.buffer.flush()
    return 2


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of the image. ``serve`` (what SageMaker passes) is the only accepted argument."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["serve"]):
        return fail(f"arguments {args!r} are not accepted; the image takes its settings from the "
                    f"environment ({c.PLATFORM}, {c.MODEL_NAME}, ...) and at most the word 'serve'")
    if env is None:
        vendor_telemetry.switch_off()  # before a pyfunc model imports MLflow
    workdir = Path(tempfile.mkdtemp(prefix="shipway-serving-"))
    try:
        config, loader = prepare(os.environ if env is None else env, workdir)
        from shipway.serving.server import run

        return run(config, loader=loader)
    except (PlatformError, ModelLoadError, ValueError, OSError) as exc:
        return fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
