"""One recording-mock "preview" of a prod-sized program, in a fresh process.

``python -m benchmarks.engine_mock CLOUD MODELS ENVS`` builds the AWS or Kubernetes platform
with ``MODELS`` pinned models for each of ``ENVS`` environments (dev, test, prod, ...) through
``tests/support/recording.py``'s ``record()`` and a StackConfig from the real parser, and prints
one JSON line: seconds per environment and resources registered. A fresh process per point
keeps Pulumi's global mock state and import caches from one point out of the next.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

ENV_NAMES = ("dev", "test", "prod", "stage", "perf")


def models(n: int) -> dict[str, Any]:
    """``n`` pinned models with distinct names and versions."""
    return {f"model-{i:03d}": {"version": 1 + i % 7, "instances": 2} for i in range(n)}


def stack_raw(cloud: str, env: str, n: int) -> dict[str, Any]:
    """A valid raw stack config (what a Pulumi.<env>.yaml holds) for ``cloud``."""
    raw: dict[str, Any] = {
        "cloud": cloud, "environment": env, "owner": "ml-platform", "costCenter": "cc-42",
        "dataClassification": "confidential", "models": models(n),
    }
    if cloud == "aws":
        from tests.unit.aws.support import IMAGE

        raw.update({
            "region": "eu-west-1", "allowedRegions": ["eu-west-1"],
            "aws": {"vpcId": "vpc-0fake", "subnetIds": ["subnet-0a", "subnet-0b"], "servingImage": IMAGE,
                    "githubRepository": "acme/shipway-models"},
        })
    return raw


def build_one(cloud: str, env: str, n: int) -> tuple[float, int]:
    """(seconds, resources registered) for one environment's program under recording mocks."""
    import pulumi

    from shipway_core.config import parse_stack_config
    from tests.support.recording import record

    cfg = parse_stack_config(env, stack_raw(cloud, env, n))
    if cloud == "aws":
        from components.aws.platform import build_platform as aws_build
        from tests.unit.aws.support import outputs

        secrets = {"endpointApiKey": pulumi.Output.secret("s3cr3t")}
        t0 = time.perf_counter()
        rec = record(lambda: aws_build(cfg, secrets), stack=env, outputs=outputs)
    else:
        from components.kubernetes.platform import build_platform as k8s_build

        secrets = {k: pulumi.Output.secret(v) for k, v in {"endpointApiKey": "k", "trackingDbPassword": "p"}.items()}
        t0 = time.perf_counter()
        rec = record(lambda: k8s_build(cfg, secrets), stack=env)
    return time.perf_counter() - t0, len(rec.resources)


def main(argv: list[str]) -> int:
    cloud, n, n_envs = argv[0], int(argv[1]), int(argv[2])
    per_env = {}
    resources = 0
    for env in ENV_NAMES[:n_envs]:
        seconds, count = build_one(cloud, env, n)
        per_env[env] = seconds
        resources += count
    print(json.dumps({"cloud": cloud, "models": n, "envs": n_envs, "seconds": sum(per_env.values()),
                      "per_env": per_env, "resources": resources}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
