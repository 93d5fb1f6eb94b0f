"""Gate-evidence rule: prod serves only model versions that passed Shipway's quality gates.

The evidence lives in the registry as the model-version tag ``shipway.gates.passed=true``
(written by the promotion flow). The rule asks the registry at preview time through an
injectable lookup, so tests pass a fake and the real lookup talks to exactly one place: the
``trackingUri`` in this stack's policy config, through MLflow's client (its REST API).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

import pulumi.runtime
from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, as_int, get, is_prod, prod_only, setting
from policies.local._kinds import kind
from policies.ml.pinning import ModelRef, classify, kubernetes_model_refs, sagemaker_model_refs

GATE_TAG: Final = "shipway.gates.passed"
STACK_NAMESPACE: Final = "shipway"
# Registry calls happen inside `pulumi preview`: fail fast instead of MLflow's default long retry loop.
_HTTP_LIMITS: Final = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@dataclass(frozen=True)
class GateEvidence:
    """What the registry says about one model version."""

    status: Literal["passed", "failed", "missing", "unreachable"]
    detail: str = ""


GateLookup = Callable[[str, str, int], GateEvidence]
"""``(tracking_uri, model_name, version) -> GateEvidence``."""


@contextmanager
def _bounded_http() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _HTTP_LIMITS}
    os.environ.update(_HTTP_LIMITS)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def mlflow_gate_lookup(tracking_uri: str, name: str, version: int) -> GateEvidence:
    """Read the gate tag of ``name`` version ``version`` from the registry at ``tracking_uri`` only."""
    from mlflow import MlflowClient  # imported lazily: mlflow costs seconds to import
    from mlflow.exceptions import MlflowException

    with _bounded_http():
        try:
            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            model_version = client.get_model_version(name, str(version))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return GateEvidence("missing", f"model '{name}' version {version} does not exist")
            return GateEvidence("unreachable", str(exc).splitlines()[0])
        except Exception as exc:  # noqa: BLE001 - any transport failure means "cannot verify"
            return GateEvidence("unreachable", f"{type(exc).__name__}: {exc}")
    value = (model_version.tags or {}).get(GATE_TAG)
    if value == "true":
        return GateEvidence("passed")
    return GateEvidence("failed", f"{GATE_TAG} is {value!r}")


def served_versions(resource_type: str, props: Any) -> list[tuple[str, int]]:
    """``(model name, version)`` for every exact registry version a resource serves or pins."""
    which = kind(resource_type, props)
    if which in ("InferenceEndpoint", "RegistryPin"):
        name = get(props, "modelName")
        version = as_int(get(props, "modelVersion" if which == "InferenceEndpoint" else "version"))
        return [(name, version)] if isinstance(name, str) and version and version >= 1 else []
    refs: list[ModelRef] = []
    if resource_type == "aws:sagemaker/model:Model":
        refs = [r for r in sagemaker_model_refs(props) if str(r.raw).startswith("models:/")]
    elif resource_type == "azure-native:machinelearningservices:OnlineDeployment":
        model = get(props, "properties.model")
        refs = [classify("properties.model", model)] if isinstance(model, str) else []
    elif resource_type.startswith("kubernetes:"):
        refs = kubernetes_model_refs(props)
    return [(r.name, r.version) for r in refs if r.problem is None and r.name and r.version]


def tracking_uri(args: ResourceValidationArgs) -> str:
    """The registry to ask: the policy config's ``trackingUri``, else the stack's ``shipway:registryUri``.

    Policy packs run with the stack's config loaded, so a prod stack that names its registry
    does not need it repeated in ``policies/config/prod.json``. Only http(s) URIs qualify: the
    lookup speaks MLflow's REST API and nothing else.
    """
    configured = str(setting(args, "trackingUri"))
    if configured:
        return configured
    value = pulumi.runtime.get_config(f"{STACK_NAMESPACE}:registryUri")
    return value if isinstance(value, str) and value.startswith(("http://", "https://")) else ""


def make_require_gate_evidence(lookup: GateLookup) -> ResourceValidationPolicy:
    """The gate-evidence policy, asking ``lookup`` (the real MLflow one in the pack, a fake in tests)."""

    def _require_gate_evidence(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        """A version reaches prod only with its passing gate results recorded in the registry."""
        if not is_prod(args):
            return
        versions = served_versions(args.resource_type, args.props)
        uri = tracking_uri(args)
        if not versions or not uri:
            return
        for name, version in versions:
            evidence = lookup(uri, name, version)
            if evidence.status == "missing":
                report_violation(f"model '{name}' version {version} is not in the registry at {uri}", None)
            elif evidence.status == "failed":
                report_violation(
                    f"model '{name}' version {version} has no passing gate evidence "
                    f"({evidence.detail}); run `shipway model promote` gates first",
                    None,
                )
            elif evidence.status == "unreachable" and setting(args, "requireReachableRegistry"):
                report_violation(
                    f"cannot verify gate evidence for model '{name}' version {version}: registry "
                    f"at {uri} is unreachable ({evidence.detail})",
                    None,
                )

    return ResourceValidationPolicy(
        name="any-mlops-endpoint-require-gate-evidence",
        description=f"Prod serves only model versions tagged {GATE_TAG}=true in the registry.",
        validate=_require_gate_evidence,
        enforcement_level=DEFAULT_ENFORCEMENT,
        severity=Severity.CRITICAL,
        **prod_only("trackingUri", "requireReachableRegistry"),
        remediation_steps=(
            "Run the quality gates for the version (`shipway model promote <name> --version N --to prod`), "
            "which tags it shipway.gates.passed=true, or pin the last version that passed in "
            "stacks/Pulumi.prod.yaml."
        ),
    )


endpoint_require_gate_evidence = make_require_gate_evidence(mlflow_gate_lookup)

POLICIES = [endpoint_require_gate_evidence]
