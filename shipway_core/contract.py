"""The serving container's contract with each platform, defined once.

The serving image (``containers/serving.Dockerfile``) runs on SageMaker, Azure ML managed online
deployments and Kubernetes. Each platform starts it differently: which port it calls, which
routes it probes, where it puts the model files, which environment variables carry the pin and
the secrets, which JSON log fields its metric filters read. The components
(``components/*/endpoint.py``) write these names into the platform resources and the serving
app's start-up (``shipway/serving/platform.py``) reads them; both import them from here, and
``tests/unit/test_contract.py`` fails when a component sets a variable, path, route or log field
that this module (and therefore the app) does not define.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipway_core.observability import drift as drift_decision

SAGEMAKER = "sagemaker"
AZUREML = "azureml"
KUBERNETES = "kubernetes"
PLATFORMS = (SAGEMAKER, AZUREML, KUBERNETES)

# One port everywhere: SageMaker hard-codes 8080, the others are configured to match.
SERVING_PORT = 8080
# Inside a container the app must listen on every interface; the platform's network decides
# who reaches it (VPC/security group, managed endpoint, NetworkPolicy).
CONTAINER_HOST = "0.0.0.0"  # noqa: S104 - containers are reached through the platform's network only

# Routes the app implements (shipway.serving.app.ROUTES holds them; the contract test checks).
PING = "/ping"
HEALTH = "/health"
READY = "/ready"
INVOCATIONS = "/invocations"

# Environment variables. Names, never values: values are pins, URIs and secret *references*.
PLATFORM = "SHIPWAY_PLATFORM"
MODEL_NAME = "SHIPWAY_MODEL_NAME"
MODEL_VERSION = "SHIPWAY_MODEL_VERSION"
MODEL_URI = "SHIPWAY_MODEL_URI"
ENVIRONMENT = "SHIPWAY_ENVIRONMENT"
TRACKING_URI = "MLFLOW_TRACKING_URI"
PORT = "SHIPWAY_PORT"
# The address to listen on; CONTAINER_HOST when unset. Set it to 127.0.0.1 where the app runs
# beside a proxy in the same network namespace (a sidecar, or the test pod runtime).
HOST = "SHIPWAY_HOST"
PIN_FILE = "SHIPWAY_PIN_FILE"
API_KEY_FILE = "SHIPWAY_API_KEY_FILE"
API_KEY_SECRET_ARN = "SHIPWAY_API_KEY_SECRET_ARN"  # noqa: S105 - a variable name, not a secret
# Azure: the Key Vault secret URI of the API key and the client id of the endpoint's
# user-assigned identity that may read it (Key Vault Secrets User on that one secret).
API_KEY_SECRET_URI = "SHIPWAY_API_KEY_SECRET_URI"  # noqa: S105 - a variable name, not a secret
IDENTITY_CLIENT_ID = "SHIPWAY_IDENTITY_CLIENT_ID"
EXPLAIN = "SHIPWAY_EXPLAIN"  # "true": serve POST /explain (models.<name>.explain in the stack)
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
# Set by Azure ML itself: its managed-identity token endpoint (the App Service 2017-09-01 protocol).
AZUREML_MSI_ENDPOINT = "MSI_ENDPOINT"
AZUREML_MSI_SECRET = "MSI_SECRET"  # noqa: S105 - a variable name, not a secret
# Set by Azure ML itself on a managed online deployment: the mounted registered model.
AZUREML_MODEL_DIR = "AZUREML_MODEL_DIR"
# Where SageMaker unpacks ``ModelDataUrl`` (model.tar.gz) before starting the container.
SAGEMAKER_MODEL_DIR = "/opt/ml/model"

# Once per drift refresh the app writes two JSON log lines. ``drift_effects`` (the worst live
# effect size per statistic and the window's samples, shipway_core.observability.drift) is what
# the AWS drift alarms' metric filters and the Azure drift log alerts read; ``drift_window``
# {"event": "drift_window", "max_feature_psi": <float>, ...} carries PSI as context (an AWS metric,
# no alarm).
DRIFT_LOG_EVENT = "drift_window"
DRIFT_LOG_VALUE_FIELD = "max_feature_psi"
DRIFT_LOG_FIELDS = ("event", DRIFT_LOG_VALUE_FIELD, "samples", "model_name", "model_version")
_DRIFT_LOGS = ((DRIFT_LOG_EVENT, DRIFT_LOG_FIELDS), (drift_decision.LOG_EVENT, drift_decision.LOG_FIELDS))


@dataclass(frozen=True)
class Probe:
    """One HTTP route a platform calls, on the serving port."""

    path: str
    port: int = SERVING_PORT


@dataclass(frozen=True)
class PlatformContract:
    """What one platform calls, mounts and reads; the app implements all of it."""

    platform: str
    liveness: Probe
    readiness: Probe
    scoring: Probe
    # Variables the component must set (the app refuses to start without them) and may set;
    # the contract test checks the component sets nothing else and the app reads every one.
    required_env: tuple[str, ...]
    optional_env: tuple[str, ...]
    # Where the model files are: a fixed path, a variable naming one, or None (from the registry).
    model_dir: str | None = None
    model_dir_env: str | None = None
    # Log events -> the fields a platform-side filter reads from them.
    log_fields: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def env(self) -> frozenset[str]:
        """Every variable the app reads on this platform."""
        extra = (self.model_dir_env,) if self.model_dir_env else ()
        return frozenset((*self.required_env, *self.optional_env, *extra))

    @property
    def routes(self) -> frozenset[str]:
        """Every route the platform calls."""
        return frozenset({self.liveness.path, self.readiness.path, self.scoring.path})


_PIN_ENV = (PLATFORM, MODEL_NAME, MODEL_VERSION, ENVIRONMENT)

CONTRACTS: dict[str, PlatformContract] = {
    # SageMaker: GET /ping for health, POST /invocations, model.tar.gz unpacked at /opt/ml/model,
    # the API key fetched from Secrets Manager by ARN at start (never in the model environment,
    # which DescribeModel shows to anyone with read access).
    SAGEMAKER: PlatformContract(
        platform=SAGEMAKER,
        liveness=Probe(PING),
        readiness=Probe(PING),
        scoring=Probe(INVOCATIONS),
        required_env=_PIN_ENV,
        optional_env=(MODEL_URI, TRACKING_URI, API_KEY_SECRET_ARN, OTLP_ENDPOINT, EXPLAIN),
        model_dir=SAGEMAKER_MODEL_DIR,
        log_fields=_DRIFT_LOGS,
    ),
    # Azure ML managed online deployment: routes come from the environment's inference_config
    # (see azureml_inference_config), the registered model is mounted where AZUREML_MODEL_DIR says.
    # Callers authenticate at the endpoint (Key/AADToken); the platform's own API key, if the
    # stack has one, is read from Key Vault at start with the deployment's managed identity.
    AZUREML: PlatformContract(
        platform=AZUREML,
        liveness=Probe(HEALTH),
        readiness=Probe(READY),
        scoring=Probe(INVOCATIONS),
        required_env=_PIN_ENV,
        optional_env=(MODEL_URI, TRACKING_URI, API_KEY_SECRET_URI, IDENTITY_CLIENT_ID, OTLP_ENDPOINT, EXPLAIN),
        model_dir_env=AZUREML_MODEL_DIR,
        log_fields=_DRIFT_LOGS,
    ),
    # Kubernetes: startup/liveness on /health, readiness on /ready (the rolling-update gate),
    # the model from the registry, the API key as a mounted Secret file; SIGTERM drains.
    KUBERNETES: PlatformContract(
        platform=KUBERNETES,
        liveness=Probe(HEALTH),
        readiness=Probe(READY),
        scoring=Probe(INVOCATIONS),
        required_env=(*_PIN_ENV, TRACKING_URI),
        optional_env=(MODEL_URI, API_KEY_FILE, PORT, HOST, PIN_FILE, OTLP_ENDPOINT, EXPLAIN),
    ),
}


def contract(platform: str) -> PlatformContract:
    """The contract of ``platform``; a clear error for an unknown one."""
    try:
        return CONTRACTS[platform]
    except KeyError:
        raise ValueError(
            f"{PLATFORM}: {platform!r} is not a platform the serving image knows; "
            f"set it to one of {', '.join(PLATFORMS)}"
        ) from None


def azureml_inference_config() -> dict[str, dict[str, object]]:
    """The ``inference_config`` of the Azure ML environment that runs the serving image."""
    c = CONTRACTS[AZUREML]
    return {
        "liveness_route": {"path": c.liveness.path, "port": c.liveness.port},
        "readiness_route": {"path": c.readiness.path, "port": c.readiness.port},
        "scoring_route": {"path": c.scoring.path, "port": c.scoring.port},
    }
