"""Every committed stack file is checked: the local stack is ready to run as committed; a cloud
stack's placeholders (network, image digests, subscription, secrets) stop a preview with the
single config error that names each of them and the command that sets it. With the example
values of tests/support/stacks.py filled in, each cloud stack builds through the real program
(tests/unit/test_conformance.py)."""

from __future__ import annotations

import re

import pytest

from shipway_core.config import ENVIRONMENTS, StackConfigError, load_stack_file, parse_stack_config, raw_from_stack_file
from tests.support.stacks import ROOT, with_target_settings

STACKS = ROOT / "stacks"
AWS_PLACEHOLDERS = ["endpointApiKey", "aws.vpcId", "aws.subnetIds", "aws.servingImage"]
# stack -> (cloud, environment, the keys a user must fill before the first preview)
COMMITTED = {
    "local": ("local", "local", []),
    "dev": ("aws", "dev", AWS_PLACEHOLDERS),
    "test": ("aws", "test", AWS_PLACEHOLDERS),
    "prod": ("aws", "prod", AWS_PLACEHOLDERS),
    "azure-dev": ("azure", "dev", ["endpointApiKey", "azure.subscriptionId"]),
    "k8s-dev": ("kubernetes", "dev", ["endpointApiKey", "trackingDbPassword"]),
    # Deployed for real against the test control plane (tests/integration/test_kubernetes_target.py).
    "k8s": ("kubernetes", "dev", ["endpointApiKey", "trackingDbPassword"]),
}


def test_the_table_lists_every_committed_stack() -> None:
    on_disk = {p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS.glob("Pulumi.*.yaml")}
    assert on_disk == set(COMMITTED)
    assert set(ENVIRONMENTS) <= on_disk


def test_the_local_stack_runs_as_committed() -> None:
    cfg = load_stack_file(STACKS / "Pulumi.local.yaml", require_secrets=True)
    assert (cfg.cloud, cfg.environment) == ("local", "local")
    assert all(isinstance(pin.version, int) and pin.version >= 1 for pin in cfg.models.values())


@pytest.mark.parametrize("stack", [s for s, (_, _, keys) in COMMITTED.items() if keys])
def test_placeholders_stop_with_one_error_naming_each_and_how_to_set_it(stack: str) -> None:
    cloud, environment, keys = COMMITTED[stack]
    with pytest.raises(StackConfigError) as error:
        load_stack_file(STACKS / f"Pulumi.{stack}.yaml", require_secrets=True)
    named = [re.match(r"^shipway:([\w.]+): ", p).group(1) for p in error.value.problems]  # type: ignore[union-attr]
    assert sorted(named) == sorted(keys)
    for problem in error.value.problems:
        assert f"--stack {stack}`" in problem, problem
        assert "pulumi config set --secret" in problem or "pulumi config set --path" in problem, problem


@pytest.mark.parametrize("stack", [s for s, (_, _, keys) in COMMITTED.items() if keys])
def test_filled_in_stacks_parse_for_their_target(stack: str) -> None:
    cloud, environment, _ = COMMITTED[stack]
    cfg = parse_stack_config(stack, with_target_settings(raw_from_stack_file(STACKS / f"Pulumi.{stack}.yaml")))
    assert (cfg.cloud, cfg.environment) == (cloud, environment)
    assert all(isinstance(pin.version, int) and pin.version >= 1 for pin in cfg.models.values())


def test_a_secret_written_in_plain_text_is_refused(tmp_path) -> None:
    text = (STACKS / "Pulumi.local.yaml").read_text()
    plain = re.sub(r"  shipway:endpointApiKey:\n    secure: \S+\n", "  shipway:endpointApiKey: hunter2\n", text)
    assert plain != text
    path = tmp_path / "Pulumi.local.yaml"
    path.write_text(plain)
    with pytest.raises(StackConfigError) as error:
        load_stack_file(path)
    assert error.value.problems == [
        "shipway:endpointApiKey: '<plain text>' is not valid; secrets are never stored in plain text; remove it "
        "and run `pulumi config set --secret shipway:endpointApiKey <value> --stack local`"
    ]
    assert "hunter2" not in str(error.value)


def test_test_and_prod_refuse_images_by_tag() -> None:
    raw = with_target_settings(raw_from_stack_file(STACKS / "Pulumi.prod.yaml"))
    raw["aws"]["servingImage"] = "000000000000.dkr.ecr.eu-west-1.amazonaws.com/shipway-serving:1.4.0"
    with pytest.raises(StackConfigError) as error:
        parse_stack_config("prod", raw)
    assert error.value.problems == [
        "shipway:aws.servingImage: '000000000000.dkr.ecr.eu-west-1.amazonaws.com/shipway-serving:1.4.0' is not "
        "valid; prod runs images by digest (<repo>@sha256:<digest>), never 'latest'"
    ]
    raw["environment"] = "dev"
    assert parse_stack_config("dev", raw).aws.serving_image.endswith(":1.4.0")  # dev may run a tag
