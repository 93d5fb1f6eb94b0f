"""The AWS target's adapter: SageMaker endpoints, the env's S3 bucket, CloudWatch alarms.

Every call goes to the region in the stack's ``target.region`` output (never ``AWS_REGION``)
through the boto3 session of the context (an assumed role) or the default credential chain;
``AdapterContext.aws_endpoint_url`` points every client at another endpoint (moto on 127.0.0.1
in the tests). Verification sends its requests through the SageMaker runtime
(``InvokeEndpoint``), which is how a client in the account reaches the endpoint.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from shipway import aws_ops, stackfile
from shipway.targets.base import (
    AdapterContext,
    Alarm,
    Check,
    EndpointState,
    PrepareResult,
    RollbackDecision,
    TargetError,
    VerificationResult,
    alarm_signal,
    decide_from_alarms,
    known_good_from_audit,
)
from shipway.targets.local import registry_uri
from shipway_core.config import SloSettings, StackConfig
from shipway_core.names import model_artifact_key
from shipway_core.outputs import PlatformOutputs

if TYPE_CHECKING:
    from shipway.registry import Registry

SAGEMAKER_MLFLOW_ARN = "arn:aws:sagemaker:"

# SageMaker endpoint states -> EndpointState.state
_STATES = {"InService": "up", "Creating": "updating", "Updating": "updating", "SystemUpdating": "updating",
           "RollingBack": "updating", "UpdateRollbackFailed": "failed", "Failed": "failed",
           "OutOfService": "down", "Deleting": "down"}


class _Clients:
    """A session whose clients all go to one endpoint URL (moto in tests), as aws_ops expects."""

    def __init__(self, session: Any, endpoint_url: str | None):
        self.session = session or boto3.Session()
        self.endpoint_url = endpoint_url

    def client(self, service: str, region_name: str) -> Any:
        return self.session.client(service, region_name=region_name, endpoint_url=self.endpoint_url)


class AwsAdapter:
    """The ``aws`` target (SageMaker endpoints with blue/green auto-rollback alarms)."""

    cloud = "aws"

    def __init__(self, outputs: PlatformOutputs, config: StackConfig, context: AdapterContext):
        self.outputs, self.config, self.context = outputs, config, context
        region = outputs.target.get("region") or config.region
        if not isinstance(region, str) or not region:
            raise TargetError(f"target.region: {region!r} is not valid; redeploy stack "
                              f"'{outputs.environment}' (the AWS target exports its region)")
        self.region = region
        self.clients = _Clients(context.aws_session, context.aws_endpoint_url)
        self._registry: Registry | None = None

    def _client(self, service: str) -> Any:
        return self.clients.client(service, region_name=self.region)

    def endpoint_name(self, model: str) -> str:
        names = self.outputs.target.get("endpointNames") or {}
        if isinstance(names, Mapping) and isinstance(names.get(model), str):
            return str(names[model])
        endpoint = self.outputs.endpoints.get(model)
        if endpoint is None:
            raise TargetError(f"stack '{self.outputs.environment}' has no endpoint output for '{model}'")
        return endpoint.status.split(":", 2)[2]  # sagemaker:<region>:<endpoint-name>

    # ------------------------------------------------------------------ status
    def _served_version(self, config_name: str) -> int | None:
        """What the model container was told it serves (SHIPWAY_MODEL_VERSION), else the config's -vN."""
        try:
            env_version = aws_ops.served_model_version(self._client("sagemaker"), config_name)
        except ClientError:
            env_version = None
        if env_version is not None and str(env_version).isdigit():
            return int(env_version)
        return aws_ops.config_version(config_name)

    def status(self) -> dict[str, EndpointState]:
        out: dict[str, EndpointState] = {}
        for model in sorted(set(self.config.models) | set(self.outputs.endpoints)):
            url = self.outputs.endpoints[model].url if model in self.outputs.endpoints else ""
            try:
                name = self.endpoint_name(model)
                desc = self._client("sagemaker").describe_endpoint(EndpointName=name)
            except TargetError as exc:
                out[model] = EndpointState(model, "", None, "down", url, {}, str(exc))
                continue
            except (ClientError, BotoCoreError) as exc:
                out[model] = EndpointState(model, name, None, "unknown", url, {},
                                           f"DescribeEndpoint failed: {exc}")
                continue
            variants = desc.get("ProductionVariants") or []
            weights = {str(v.get("VariantName")): float(v.get("CurrentWeight", 0.0) or 0.0) for v in variants}
            total = sum(weights.values())
            traffic = {k: round(100.0 * w / total, 2) for k, w in weights.items()} if total else {}
            sm_state = str(desc.get("EndpointStatus"))
            out[model] = EndpointState(model, name, self._served_version(desc["EndpointConfigName"]),
                                       _STATES.get(sm_state, "unknown"), url, traffic,
                                       f"{sm_state}" + (f": {desc['FailureReason']}" if desc.get("FailureReason")
                                                        else ""))
        return out

    # ---------------------------------------------------------------- registry
    def registry(self) -> Registry:
        if self._registry is None:
            uri = registry_uri(self.outputs, self.config, self.context)
            if uri.startswith(SAGEMAKER_MLFLOW_ARN) and importlib.util.find_spec("sagemaker_mlflow") is None:
                raise TargetError(
                    f"registryUri: {uri!r} is a SageMaker managed MLflow server, which MLflow reaches only "
                    "through the sagemaker-mlflow auth plugin; install Shipway's dependencies "
                    "(.venv/bin/pip install -e .) or pass --tracking-uri")
            self._registry = self.context.registry_factory(uri)
        return self._registry

    def preflight(self, pins: Mapping[str, int]) -> None:
        registry = self.registry()
        for name, version in sorted(pins.items()):
            registry.require_ready(name, version)

    # ----------------------------------------------------------------- prepare
    def _bucket(self, outputs: PlatformOutputs) -> tuple[str, str]:
        bucket, key = outputs.target.get("artifactBucket"), outputs.target.get("kmsKeyArn")
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            raise TargetError(f"stack '{outputs.environment}' exports no target.artifactBucket/kmsKeyArn; "
                              "redeploy it with this version of Shipway")
        return bucket, key

    def prepare(self, model: str, version: int) -> PrepareResult:
        """Copy the version's package from the previous environment's bucket (or, in the first AWS
        environment, package it from the registry) into this environment's bucket."""
        bucket, kms = self._bucket(self.outputs)
        target_uri = f"s3://{bucket}/{model_artifact_key(model, version)}"
        previous = stackfile.previous_env(self.outputs.environment)
        source = self.context.outputs_of(previous) if previous else None
        try:
            # A version deployed here before (a rollback target) is already in place: packages are immutable.
            here = aws_ops._head(self._client("s3"), bucket, model_artifact_key(model, version))
            if here is not None:
                return PrepareResult(model, version, "present",
                                     str((here.get("Metadata") or {}).get(aws_ops.SOURCE_META, "")), target_uri)
            if source is not None and source.cloud == "aws":
                source_bucket, _ = self._bucket(source)
                copied = aws_ops.copy_model_artifacts(model, version, source_bucket=source_bucket,
                                                      target_bucket=bucket, region=self.region,
                                                      target_kms_key_id=kms, session=self.clients)  # type: ignore[arg-type]
                return PrepareResult(model, version, "copied" if copied.copied else "present",
                                     copied.source_uri, copied.target_uri)
            registry = self.registry()
            info = registry.version(model, version)
            uploaded = aws_ops.upload_model_package(registry.model_path(info), model, version, bucket=bucket,
                                                    region=self.region, kms_key_id=kms,
                                                    session=self.clients)  # type: ignore[arg-type]
        except aws_ops.AwsOpsError as exc:
            raise TargetError(str(exc)) from exc
        except (ClientError, BotoCoreError) as exc:
            raise TargetError(f"copying version {version} of '{model}' to {target_uri} failed: {exc}") from exc
        return PrepareResult(model, version, "uploaded" if uploaded.copied else "present",
                             f"registry {registry.tracking_uri}", uploaded.target_uri)

    # ------------------------------------------------------------------ verify
    def _version_check(self, model: str, name: str, expected: int) -> Check:
        try:
            desc = self._client("sagemaker").describe_endpoint(EndpointName=name)
        except (ClientError, BotoCoreError) as exc:
            return Check("version", False, f"DescribeEndpoint {name!r} failed: {exc}")
        state = desc.get("EndpointStatus")
        if state != "InService":
            reason = f" ({desc['FailureReason']})" if desc.get("FailureReason") else ""
            return Check("version", False, f"endpoint {name!r} is {state}, expected InService{reason}",
                         {"state": state})
        served = self._served_version(desc["EndpointConfigName"])
        data = {"served": served, "expected": expected, "endpoint_config": desc["EndpointConfigName"]}
        if served != expected:
            return Check("version", False, f"endpoint {name!r} serves version {served} of '{model}', "
                                           f"expected {expected}", data)
        return Check("version", True, f"endpoint {name!r} is InService with version {expected} of '{model}'", data)

    def _invoke(self, name: str) -> Any:
        runtime = self._client("sagemaker-runtime")

        def send(frame: pd.DataFrame) -> list[Any]:
            from shipway.verify import TRAFFIC_CLASS, _predictions, _split

            answer = runtime.invoke_endpoint(
                EndpointName=name, ContentType="application/json", Accept="application/json",
                # the serving app keeps traffic of this class out of drift windows and SLO series
                CustomAttributes=f"shipway-traffic={TRAFFIC_CLASS}", Body=json.dumps(_split(frame)))
            return _predictions(json.loads(answer["Body"].read()))

        return send

    def verify(self, model: str, version: int, slo: SloSettings, *, features: Any = None,
               offline: Any = None) -> VerificationResult:
        from shipway.verify import run_checks

        try:
            name = self.endpoint_name(model)
        except TargetError as exc:
            return VerificationResult(model, version, "", (Check("version", False, str(exc)),))
        return run_checks(self._version_check(model, name, version), self._invoke(name), model=model,
                          version=version, url=f"sagemaker:{self.region}:{name}", features=features,
                          offline=offline, slo=slo, probe_seconds=self.context.probe_seconds)

    # ---------------------------------------------------------------- rollback
    def known_good(self, model: str) -> list[int]:
        return known_good_from_audit(self.context.audit, self.outputs.environment, model)

    def alarms(self, model: str) -> list[Alarm]:
        """The endpoint's auto-rollback alarms (``target.rollbackAlarms``) and their CloudWatch states."""
        names = (self.outputs.target.get("rollbackAlarms") or {}).get(model) or []
        if not names:
            return []
        found: dict[str, str] = {}
        paginator = self._client("cloudwatch").get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmNames=list(names), AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
            for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                found[alarm["AlarmName"]] = alarm["StateValue"]
        return [Alarm(n, alarm_signal(n), found.get(n, "MISSING")) for n in names]

    def rollback_decision(self, model: str) -> RollbackDecision:
        return decide_from_alarms(model, self.config, self.known_good(model), lambda: self.alarms(model),
                                  unreadable="cannot read CloudWatch alarms: ", store="CloudWatch",
                                  errors=(ClientError, BotoCoreError))

    # ------------------------------------------------------------ data capture
    def captured_rows(self, model: str, day: str) -> pd.DataFrame | None:
        """One day's captured requests (SageMaker data capture, JSON Lines) as feature rows.

        ``day`` is ``YYYY/MM/DD`` (the capture layout's date path); None when nothing was captured.
        Verification traffic is captured too only if the serving app does not mark it (docs/targets/aws.md).
        """
        bucket, _ = self._bucket(self.outputs)
        prefix = f"data-capture/{model}/{self.endpoint_name(model)}/"
        s3 = self._client("s3")
        frames = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if f"/{day}/" not in obj["Key"]:
                    continue
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
                for line in body.splitlines():
                    data = json.loads(line)["captureData"]["endpointInput"]
                    text = base64.b64decode(data["data"]) if data.get("encoding") == "BASE64" else data["data"]
                    split = json.loads(text)["dataframe_split"]
                    frames.append(pd.DataFrame(split["data"], columns=split["columns"]))
        return pd.concat(frames, ignore_index=True) if frames else None
