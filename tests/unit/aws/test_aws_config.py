"""The AWS keys of the stack file: parsed into AwsSettings, bad values reported with the fix."""

from __future__ import annotations

import pytest

from shipway_core.config import AwsSettings, StackConfigError
from tests.support.stacks import example_config

BASE = {
    "cloud": "aws",
    "environment": "dev",
    "owner": "ml-platform",
    "costCenter": "cc-42",
    "dataClassification": "internal",
    "region": "eu-west-1",
}


def parse(aws: dict) -> AwsSettings:
    return example_config("dev", {**BASE, "aws": aws}).aws


def test_defaults_are_the_secure_ones():
    settings = parse({})
    assert settings.tracking_mode == "managed"
    assert settings.ingress_cidrs == ()
    assert settings.otlp_endpoint is None  # endpoints run network-isolated unless a collector is named
    assert settings.create_oidc_provider is True
    assert settings.promotion_reader_arns == ()


def test_self_hosted_keys_parse():
    settings = parse(
        {
            "trackingMode": "self-hosted",
            "ingressCidrs": ["10.0.0.0/16"],
            "certificateArn": "arn:aws:acm:eu-west-1:000000000000:certificate/x",
            "mlflowImage": "000000000000.dkr.ecr.eu-west-1.amazonaws.com/mlflow:3",
            "promotionReaderArns": ["arn:aws:iam::000000000000:role/shipway-test-deploy"],
        }
    )
    assert settings.ingress_cidrs == ("10.0.0.0/16",)
    assert settings.promotion_reader_arns == ("arn:aws:iam::000000000000:role/shipway-test-deploy",)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        (
            "ingressCidrs",
            ["0.0.0.0/0"],
            'shipway:aws.ingressCidrs: ["0.0.0.0/0"] is not valid; '
            "use a list of private CIDRs such as 10.0.0.0/16 "
            "(never 0.0.0.0/0)",
        ),
        (
            "certificateArn",
            "my-cert",
            "shipway:aws.certificateArn: 'my-cert' is not valid; "
            "use an ACM certificate ARN (arn:aws:acm:...)",
        ),
        (
            "dataCapturePercent",
            0,
            "shipway:aws.dataCapturePercent: 0 is not valid; use an integer percentage from 1 to 100",
        ),
        (
            "otlpEndpoint",
            "http://collector:4318",
            "shipway:aws.otlpEndpoint: 'http://collector:4318' is not valid; "
            "use the collector's https:// OTLP/HTTP "
            "address",
        ),
        (
            "promotionReaderArns",
            ["shipway-test-deploy"],
            'shipway:aws.promotionReaderArns: ["shipway-test-deploy"] is not valid; '
            "use a list of IAM role ARNs "
            "(arn:aws:iam::<account>:role/<name>)",
        ),
        (
            "trackingServerSize",
            "XL",
            "shipway:aws.trackingServerSize: 'XL' is not valid; allowed: Small, Medium, Large",
        ),
    ],
)
def test_bad_aws_keys_are_reported_with_what_is_allowed(key, value, problem):
    with pytest.raises(StackConfigError) as error:
        parse({key: value})
    assert error.value.problems == [problem]
