"""Secrets: one Kubernetes Secret per named value, or an ExternalSecret pointing at a vault.

Values arrive as Pulumi secrets (encrypted in state) and leave as Secret objects that workloads
mount as files; nothing here ever becomes an environment variable, because env vars leak into
`kubectl describe`, crash dumps and child processes. With ``external_secrets`` on, Pulumi never
sees the value at all: an External Secrets Operator ``ExternalSecret`` syncs it from the
configured ClusterSecretStore under ``shipway/<environment>/<key>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.common import SecretsArgs, validate_tags
from components.kubernetes.podspec import SECRET_KEY, metadata, namespace_name, validate_object_name
from shipway_core.config import KubernetesSettings
from shipway_core.names import secret_slug
from shipway_core.names import validate_secret_keys as validate_core_secret_keys

EXTERNAL_SECRET_API = "external-secrets.io/v1"  # noqa: S105 - an API group
COMPONENT = "secrets"


def secret_suffix(key: str) -> str:
    """``endpointApiKey`` -> ``endpoint-api-key``: config keys become DNS-safe object names."""
    return secret_slug(key)


def validate_secret_keys(values: Mapping[str, Any]) -> None:
    """Keys become object names; the one secret-naming rule of every target."""
    validate_core_secret_keys(values)


def remote_key(environment: str, key: str) -> str:
    """Where an ExternalSecret reads a value in the vault (one path scheme for every env)."""
    return f"shipway/{environment}/{secret_suffix(key)}"


def require_secret_value(key: str, value: pulumi.Input[str] | None, settings: KubernetesSettings) -> None:
    """Without an external store, Pulumi must hold the value: fail before creating anything."""
    if value is None and not settings.external_secrets:
        raise ValueError(
            f"{key}: None is not valid; set it with `pulumi config set --secret shipway:{key}` "
            "or turn on kubernetes.externalSecrets"
        )


def secret_object(
    resource_name: str,
    secret_name: str,
    namespace: pulumi.Input[str],
    *,
    environment: str,
    key: str,
    value: pulumi.Input[str] | None,
    settings: KubernetesSettings,
    tags: Mapping[str, str],
    component: str,
    opts: pulumi.ResourceOptions,
) -> pulumi.CustomResource:
    """Create the Secret (or ExternalSecret) named ``secret_name`` holding one value."""
    meta = metadata(secret_name, namespace, component, tags)
    if settings.external_secrets:
        return k8s.apiextensions.CustomResource(
            resource_name,
            api_version=EXTERNAL_SECRET_API,
            kind="ExternalSecret",
            metadata=meta,
            spec={
                "refreshInterval": "1h",
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": settings.external_secret_store},
                "target": {"name": secret_name, "creationPolicy": "Owner", "deletionPolicy": "Retain"},
                # The vault entry is a JSON object {"value": "<secret>"}; extracting it yields the same
                # one-key Secret as the Pulumi path, and the spec names no key that reads as a literal
                # secret to the policy pack's plaintext rule (as `data[].secretKey` would).
                "dataFrom": [{"extract": {"key": remote_key(environment, key)}}],
            },
            opts=opts,
        )
    require_secret_value(key, value, settings)
    assert value is not None  # narrowed by require_secret_value
    return k8s.core.v1.Secret(
        resource_name,
        metadata=meta,
        type="Opaque",
        immutable=False,
        # Wrapping again is a no-op for values that are already secret, and protects plain ones.
        string_data={SECRET_KEY: pulumi.Output.secret(value)},
        opts=opts,
    )


def named_after(resource: pulumi.CustomResource, object_name: str) -> pulumi.Output[str]:
    """``object_name`` as an Output that resolves once ``resource`` exists (a dependency edge)."""
    return resource.id.apply(lambda _: object_name)


class Secrets(pulumi.ComponentResource):
    """Every named secret of one environment as a mountable Secret object."""

    secret_names: pulumi.Output[dict[str, str]]
    """Config key -> Secret object name, for volumes of the workloads that need the value."""
    namespace: pulumi.Output[str]
    """Namespace the Secret objects live in."""

    def __init__(
        self,
        name: str,
        args: SecretsArgs,
        settings: KubernetesSettings,
        *,
        namespace: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        validate_tags(args.tags)
        validate_secret_keys(args.values)
        for key, value in args.values.items():
            validate_object_name(f"{name}-{secret_suffix(key)}")
            require_secret_value(key, value, settings)
        super().__init__("shipway:kubernetes:Secrets", name, None, opts)
        ns = namespace if namespace is not None else namespace_name(args.environment, settings)
        child = pulumi.ResourceOptions(parent=self)

        self.objects: dict[str, pulumi.CustomResource] = {}
        """The native Secret/ExternalSecret per key: the escape hatch."""
        names: dict[str, pulumi.Output[str]] = {}
        for key in sorted(args.values):
            secret_name = f"{name}-{secret_suffix(key)}"
            obj = secret_object(
                secret_name,
                secret_name,
                ns,
                environment=args.environment,
                key=key,
                value=args.values[key],
                settings=settings,
                tags=args.tags,
                component=COMPONENT,
                opts=child,
            )
            self.objects[key] = obj
            # Through the resource's id, so a workload mounting the name waits for the object.
            names[key] = named_after(obj, secret_name)
        self.secret_names = pulumi.Output.all(**names) if names else pulumi.Output.from_input({})
        self.namespace = pulumi.Output.from_input(ns)
        self.register_outputs({"secret_names": self.secret_names, "namespace": self.namespace})
