"""Registry pins on SageMaker managed MLflow: the tracking server's ARN as the registry URI.

A stack whose registry is a SageMaker MLflow tracking server (``arn:aws:sagemaker:<region>:
<account>:mlflow-tracking-server/<name>``) pins through the same MLflow REST calls as every other
target, sent the way the ``sagemaker-mlflow`` plugin sends them: to the region's MLflow endpoint
(``https://<region>.experiments.sagemaker.aws``, or ``SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT``), routed by
the ``x-mlflow-sm-tracking-server-arn`` header, signed with SigV4 by the plugin's own signer
(``AuthBoto``) with the credentials of the identity running ``pulumi up`` (the deploy role).
"""

from __future__ import annotations

from shipway_core import registry_rest as rest

ARN_PREFIX = "arn:aws:sagemaker:"
ARN_HEADER = "x-mlflow-sm-tracking-server-arn"


def open_sagemaker(arn: str) -> tuple[str, rest.Send]:
    """(REST base URL, signed send) for a SageMaker MLflow tracking server ARN."""
    try:
        import requests
        from sagemaker_mlflow.auth import AuthBoto
        from sagemaker_mlflow.mlflow_sagemaker_helpers import SageMakerMLflowHostMetadataProvider
    except ImportError as exc:
        raise rest.RegistryError(f"registry {arn}: the sagemaker-mlflow plugin is not installed ({exc}); "
                                 "install the project's Python dependencies (scripts/setup.sh)") from exc
    host = SageMakerMLflowHostMetadataProvider()
    try:
        host.set_arn(arn)
        base = host.construct_tracking_server_url()
    except Exception as exc:  # the plugin raises its own types for a malformed ARN
        raise rest.RegistryError(f"shipway:registryUri: {arn!r} is not a SageMaker MLflow tracking server ARN "
                                 f"({exc}); expected arn:aws:sagemaker:<region>:<account>:"
                                 "mlflow-tracking-server/<name>") from exc
    if host.resource_type != "mlflow-tracking-server":
        raise rest.RegistryError(f"shipway:registryUri: {arn!r} names a {host.resource_type}, not an "
                                 "mlflow-tracking-server; pin through the environment's tracking server")
    try:
        auth = AuthBoto(host.region, "sagemaker-mlflow")
        missing = auth.creds is None
    except Exception as exc:  # botocore: a broken profile or an assume-role failure
        raise rest.RegistryError(f"registry {arn}: no AWS credentials to sign with ({exc}); run with the deploy "
                                 "role's credentials (AWS_PROFILE, or the CI OIDC role)") from exc
    if missing:
        raise rest.RegistryError(f"registry {arn}: no AWS credentials to sign with; run with the deploy role's "
                                 "credentials (AWS_PROFILE, or the CI OIDC role)")

    def send(method: str, url: str, data: bytes | None, headers: dict[str, str],
             timeout: float) -> tuple[int, bytes]:
        try:
            resp = requests.request(method, url, data=data, headers={**headers, ARN_HEADER: arn}, auth=auth,
                                    timeout=timeout)
        except requests.RequestException as exc:
            raise OSError(str(exc)) from exc
        return resp.status_code, resp.content

    return base, send


rest.register_opener(ARN_PREFIX, open_sagemaker)
