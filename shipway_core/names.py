"""Names every layer agrees on: model names, per-target resource names, artifact keys.

One pattern per concept: the stack parser, the components and the runtime all validate and
derive names here, so a name that passes config is a name every target can use.
"""

from __future__ import annotations

import re

# Lowercase DNS-label-like: valid as a Kubernetes object name, an AWS/Azure resource name
# fragment and an MLflow registered model name.
MODEL_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
MODEL_NAME_RULE = "lowercase letters, digits and '-', 2-63 chars, starting with a letter"


def is_model_name(name: object) -> bool:
    """True when ``name`` is a valid Shipway model name."""
    return isinstance(name, str) and MODEL_NAME.match(name) is not None


def is_version(version: object) -> bool:
    """True for an exact registry version: a positive integer (bool is not a version)."""
    return isinstance(version, int) and not isinstance(version, bool) and version >= 1


def validate_model_pin(model_name: object, model_version: object) -> None:
    """A served model is an exact registry version: no aliases, no artifact paths."""
    if not is_model_name(model_name):
        raise ValueError(f"model_name: {model_name!r} is not valid; use {MODEL_NAME_RULE}")
    if not is_version(model_version):
        raise ValueError(
            f"model_version: {model_version!r} is not valid; pin an exact registry version "
            "(a positive integer), never 'latest' or an alias"
        )


def model_artifact_key(model_name: str, model_version: int) -> str:
    """Object key of a version's package inside an environment's artifact bucket."""
    validate_model_pin(model_name, model_version)
    return f"models/{model_name}/{model_version}/model.tar.gz"



# Secrets are named by their stack config key (`shipway:endpointApiKey`) on every target.
SECRET_KEY = re.compile(r"^[a-z][A-Za-z0-9]{0,62}$")


def validate_secret_keys(keys: object) -> None:
    """Secret names are the stack's camelCase config keys, on every target (one rule)."""
    for key in keys:  # type: ignore[attr-defined]
        if not isinstance(key, str) or not SECRET_KEY.match(key):
            raise ValueError(
                f"values: secret name {key!r} is not valid; use the camelCase config key it is set with "
                "(`pulumi config set --secret shipway:<key>`), e.g. endpointApiKey"
            )


def secret_slug(key: str) -> str:
    """``endpointApiKey`` -> ``endpoint-api-key``: the DNS-safe spelling in ARNs, files and objects."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", key).lower()
