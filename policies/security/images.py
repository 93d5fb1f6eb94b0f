"""Container images by digest: what runs is exactly what was built, scanned and signed.

A tag (``:0.1.0``, worst of all ``:latest`` or no tag at all) can be re-pushed under a running
endpoint, so the next node or scale-out pulls different bytes than the ones reviewed. Test and
prod therefore pin every image by ``@sha256:<64 hex>``; dev may use a tag while iterating (the
rule still reports a moving ``latest`` there). Images are found wherever the components (and
the common alternatives to them) put one: Kubernetes workloads and KServe, SageMaker model
containers, ECS task definitions (a JSON string), Azure ML environment versions, Container
Apps and Container Instances; an Azure ML deployment must name an exact environment version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Final

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, decoded, environment, get, items, schema
from policies.kubernetes.workloads import WORKLOADS, containers

# Environments where a tag alone is a violation (dev/local only reject moving tags).
DIGEST_ENVIRONMENTS: Final = ("test", "prod")
_DIGEST: Final = re.compile(r"@sha256:[0-9a-f]{64}$")
# A tag is what follows the last ':' after the last '/' (a registry port is before a '/').
_TAG: Final = re.compile(r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")

SAGEMAKER_MODEL: Final = "aws:sagemaker/model:Model"
ECS_TASK: Final = "aws:ecs/taskDefinition:TaskDefinition"
AML_ENVIRONMENTS: Final = (
    "azure-native:machinelearningservices:EnvironmentVersion",
    "azure-native:machinelearningservices:RegistryEnvironmentVersion",
)
AML_DEPLOYMENTS: Final = (
    "azure-native:machinelearningservices:OnlineDeployment",
    "azure-native:machinelearningservices:BatchDeployment",
)
CONTAINER_APP: Final = "azure-native:app:ContainerApp"
CONTAINER_GROUP: Final = "azure-native:containerinstance:ContainerGroup"
# An Azure ML environment reference naming one immutable version (ARM id or short form).
_AML_ENV_VERSION: Final = re.compile(r"(/environments/[^/]+/versions/[0-9]+$)|(^azureml:[^:@/]+:[0-9]+$)", re.I)


def _sagemaker(props: Any) -> Iterator[tuple[str, Any]]:
    yield "primaryContainer.image", get(props, "primaryContainer.image")
    for index, container in enumerate(items(get(props, "containers"))):
        yield f"containers[{index}].image", get(container, "image")


def _ecs(props: Any) -> Iterator[tuple[str, Any]]:
    definitions = decoded(get(props, "containerDefinitions"))
    for index, container in enumerate(items(definitions)):
        yield f"containerDefinitions[{index}].image", get(container, "image")


def _kubernetes(resource_type: str) -> Callable[[Any], Iterator[tuple[str, Any]]]:
    def found(props: Any) -> Iterator[tuple[str, Any]]:
        for label, container, _spec in containers(resource_type, props):
            yield f"{label}.image", get(container, "image")

    return found


def _aml_environment(props: Any) -> Iterator[tuple[str, Any]]:
    image = get(props, "properties.image")
    # An environment built from a Dockerfile (`build`) has no image to pin here.
    if image is not None or get(props, "properties.build") is None:
        yield "properties.image", image


def _container_app(props: Any) -> Iterator[tuple[str, Any]]:
    for key in ("initContainers", "containers"):
        for index, container in enumerate(items(get(props, f"template.{key}"))):
            yield f"template.{key}[{index}].image", get(container, "image")


def _container_group(props: Any) -> Iterator[tuple[str, Any]]:
    for key in ("initContainers", "containers"):
        for index, container in enumerate(items(get(props, key))):
            yield f"{key}[{index}].image", get(container, "image")


IMAGE_SOURCES: Final[dict[str, Callable[[Any], Iterator[tuple[str, Any]]]]] = {
    SAGEMAKER_MODEL: _sagemaker,
    ECS_TASK: _ecs,
    **{t: _kubernetes(t) for t in WORKLOADS},
    **dict.fromkeys(AML_ENVIRONMENTS, _aml_environment),
    CONTAINER_APP: _container_app,
    CONTAINER_GROUP: _container_group,
}


def image_problem(image: str, strict: bool) -> str | None:
    """Why ``image`` is not acceptable (None when it is); ``strict`` requires a digest."""
    if _DIGEST.search(image):
        return None
    name = image.rsplit("/", 1)[-1]
    tag = _TAG.search(name)
    if tag is None:
        return "has no tag or digest (it means 'latest')"
    if tag["tag"] == "latest":
        return "uses the moving tag 'latest'"
    if strict:
        return f"is pinned by tag {tag['tag']!r} only"
    return None


def _pin_digest(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every image that will run is named by content, not by a mutable name."""
    env = environment(args)
    strict = env in DIGEST_ENVIRONMENTS
    source = IMAGE_SOURCES.get(args.resource_type)
    if source is not None:
        for field, image in source(args.props):
            if image is UNKNOWN or (image is None and source is not _aml_environment):
                continue  # an image computed from another resource is judged at `pulumi up`
            problem = image_problem(image, strict) if isinstance(image, str) else "is not set"
            if problem:
                report_violation(
                    f"{field} {image!r} {problem}; in {env} pin it as <repository>@sha256:<digest>", None
                )
    if args.resource_type in AML_DEPLOYMENTS:
        env_id = get(args.props, "properties.environmentId")
        if isinstance(env_id, str) and not _AML_ENV_VERSION.search(env_id):
            report_violation(
                f"properties.environmentId {env_id!r} does not name an exact environment version; use "
                ".../environments/<name>/versions/<N> (its image pinned by digest)",
                None,
            )


container_image_pin_digest = ResourceValidationPolicy(
    name="any-container-image-pin-digest",
    description="Container images are pinned by digest in test and prod (never 'latest' or untagged anywhere).",
    validate=_pin_digest,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    config_schema=schema("environment"),
    remediation_steps=(
        "Set shipway:kubernetes.servingImage / mlflowImage, shipway:aws.servingImage / mlflowImage (and the "
        "Azure serving environment) to the digest reference the release-image workflow prints "
        "(<registry>/<repo>@sha256:<digest>); never deploy ':latest'."
    ),
)

POLICIES = [container_image_pin_digest]
