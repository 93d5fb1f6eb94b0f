"""Stack config parsing: every bad key is reported, with its value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipway_core.config import (
    StackConfigError,
    load_stack_file,
    raw_from_pulumi_config,
)
from tests.support.stacks import example_config

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "cloud": "local",
    "environment": "local",
    "owner": "ml-platform",
    "costCenter": "cc-1",
    "dataClassification": "internal",
    "models": {"iris-classifier": {"version": 3}},
}


def problems(stack: str, **changes: object) -> list[str]:
    raw = {**GOOD, **changes}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(StackConfigError) as err:
        example_config(stack, raw)
    return err.value.problems


def test_good_config_parses_into_typed_objects():
    cfg = example_config("local", GOOD)
    assert cfg.cloud == "local"
    assert cfg.models["iris-classifier"].version == 3
    assert cfg.models["iris-classifier"].instances == 1
    assert cfg.tags == {"owner": "ml-platform", "cost-center": "cc-1", "environment": "local",
                        "data-classification": "internal", "managed-by": "shipway"}
    assert cfg.protect_registry is False


@pytest.mark.parametrize(("changes", "expected"), [
    ({"cloud": "gcp"}, "shipway:cloud: 'gcp' is not valid; allowed: local, aws, azure, kubernetes"),
    ({"environment": "staging"}, "shipway:environment: 'staging' is not valid; allowed: local, dev, test, prod"),
    ({"dataClassification": "secret"},
     "shipway:dataClassification: 'secret' is not valid; allowed: public, internal, confidential, restricted"),
    ({"owner": ""}, "shipway:owner: '' is not valid; use a non-empty tag value (letters, digits, space, _.:/=+@-)"),
    ({"models": {"iris-classifier": {"version": "latest"}}},
     "shipway:models.iris-classifier.version: 'latest' is not valid; pin an exact registry version "
     "(a positive integer); aliases such as 'latest' or 'champion' are not allowed"),
    ({"models": {"iris-classifier": {"version": 0}}},
     "shipway:models.iris-classifier.version: 0 is not valid; pin an exact registry version "
     "(a positive integer); aliases such as 'latest' or 'champion' are not allowed"),
    ({"models": {"iris-classifier": {"version": True}}},
     "shipway:models.iris-classifier.version: true is not valid; pin an exact registry version "
     "(a positive integer); aliases such as 'latest' or 'champion' are not allowed"),
    ({"models": {"iris-classifier": {}}},
     "shipway:models.iris-classifier.version: is required; pin an exact registry version (a positive integer)"),
    ({"models": {"Iris": {"version": 1}}},
     "shipway:models.Iris: 'Iris' is not valid; model names are lowercase letters, digits and '-', 2-63 chars, "
     "starting with a letter"),
    ({"models": {"iris-classifier": {"version": 1, "stage": "prod"}}},
     "shipway:models.iris-classifier.stage: 'prod' is not valid; unknown key; allowed keys: explain, instances, port, "
     "version"),
    ({"models": {"iris-classifier": {"version": 1, "instances": 0}}},
     "shipway:models.iris-classifier.instances: 0 is not valid; use an integer from 1 to 100"),
    ({"models": ["iris"]}, 'shipway:models: ["iris"] is not valid; expected a mapping of model name -> {version: N}'),
    ({"colour": "blue"}, "shipway:colour: 'blue' is not valid; unknown key; allowed keys: allowedRegions, aws, "
                         "azure, cloud, costCenter, dataClassification, endpointApiKey, environment, gates, "
                         "kubernetes, local, models, owner, protectRegistry, region, registryUri, slo, "
                         "trackingDbPassword"),
    ({"region": "eu-west-1"},
     "shipway:region: 'eu-west-1' is not valid; the local target has no region; remove the key"),
    ({"local": {"trackingPort": 80}}, "shipway:local.trackingPort: 80 is not valid; use a port number 1024-65535"),
    ({"local": {"tracking_port": 5000}},
     "shipway:local.tracking_port: 5000 is not valid; unknown key; allowed keys: alertSinkPort, alertmanagerPort, "
     "backendStoreUri, collectorMetricsPort, dataDir, endpointBasePort, jaegerMetricsPort, jaegerOtlpPort, "
     "jaegerQueryPort, "
     "logRetention, logStorePort, otlpGrpcPort, otlpHttpPort, prometheusPort, trackingPort"),
    ({"local": {"logRetention": "7 days"}},
     "shipway:local.logRetention: '7 days' is not valid; use a duration of hours, days, weeks or years such as "
     "12h, 7d, 4w (VictoriaLogs -retentionPeriod)"),
    ({"local": {"otlpGrpcPort": 80}}, "shipway:local.otlpGrpcPort: 80 is not valid; use a port number 1024-65535"),
    ({"local": {"backendStoreUri": "mysql://db"}},
     "shipway:local.backendStoreUri: 'mysql://db' is not valid; use a sqlite:/// or postgresql:// URI"),
    ({"registryUri": "http://10.1.2.3:5000"}, "shipway:registryUri: 'http://10.1.2.3:5000' is not valid; "
                                              "the local target only talks to 127.0.0.1"),
    ({"slo": {"availability": 1.5}},
     "shipway:slo.availability: 1.5 is not valid; use a fraction between 0.9 and 1 (e.g. 0.995)"),
    ({"gates": {"maxRegression": -1}}, "shipway:gates.maxRegression: -1 is not valid; use a fraction between 0 and 1"),
    ({"gates": {"minMetrics": {"accuracy": 2}}},
     'shipway:gates.minMetrics: {"accuracy": 2} is not valid; use a mapping of metric name -> minimum value '
     "between 0 and 1"),
    ({"protectRegistry": "yes"}, "shipway:protectRegistry: 'yes' is not valid; use true or false"),
])
def test_each_bad_key_has_an_exact_message(changes, expected):
    assert problems("local", **changes) == [expected]


def test_missing_required_keys_are_all_listed_at_once():
    found = problems("local", cloud=None, owner=None, costCenter=None, dataClassification=None)
    assert found == [
        "shipway:cloud: is required; one of local, aws, azure, kubernetes",
        "shipway:owner: is required; a non-empty tag value (letters, digits, space, _.:/=+@-)",
        "shipway:costCenter: is required; a non-empty tag value (letters, digits, space, _.:/=+@-)",
        "shipway:dataClassification: is required; one of public, internal, confidential, restricted",
    ]


def test_one_error_lists_every_bad_key_with_the_file_to_fix():
    with pytest.raises(StackConfigError) as err:
        example_config("local", {**GOOD, "cloud": "gcp", "models": {"iris-classifier": {"version": "2"}}})
    text = str(err.value)
    assert text.startswith("stack 'local' has 2 invalid config keys (fix them in stacks/Pulumi.local.yaml):\n")
    assert "  - shipway:cloud: 'gcp'" in text
    assert "  - shipway:models.iris-classifier.version: '2'" in text


def test_cloud_targets_need_an_allowed_region():
    aws = {**GOOD, "cloud": "aws", "environment": "dev"}
    assert problems("dev", **{**aws, "environment": "dev"}) == [
        "shipway:region: is required; the aws region to deploy to"]
    assert problems("dev", **{**aws, "region": "us-east-1", "allowedRegions": ["eu-west-1"]}) == [
        "shipway:region: 'us-east-1' is not valid; allowed by allowedRegions: eu-west-1"]


def test_prod_retains_registry_entries_and_refuses_to_turn_that_off():
    prod = {**GOOD, "cloud": "aws", "environment": "prod", "region": "eu-west-1"}
    assert example_config("prod", prod).protect_registry is True
    assert problems("prod", **{**prod, "protectRegistry": False}) == [
        "shipway:protectRegistry: false is not valid; prod registry entries must be retained on delete; use true"]


def test_a_stack_named_after_an_environment_must_declare_it():
    assert problems("prod", **{**GOOD, "environment": "dev"}) == [
        "shipway:environment: 'dev' is not valid; stack 'prod' must declare environment 'prod'"]


def test_engine_config_map_is_decoded_without_turning_strings_into_numbers():
    raw = raw_from_pulumi_config({
        "shipway:costCenter": "0042",
        "shipway:models": '{"iris-classifier": {"version": 2}}',
        "shipway:protectRegistry": "true",
        "aws:region": "eu-west-1",
    })
    assert raw == {"costCenter": "0042", "models": {"iris-classifier": {"version": 2}}, "protectRegistry": True}


def test_broken_yaml_names_the_file(tmp_path):
    bad = tmp_path / "Pulumi.dev.yaml"
    bad.write_text("config:\n  shipway:cloud: [aws\n")
    with pytest.raises(StackConfigError) as err:
        load_stack_file(bad)
    assert err.value.problems[0].startswith(f"{bad}: not valid YAML:")


def _port_config(models: dict, cloud: str = "local", **local: object):
    from shipway_core.config import parse_stack_config

    extra = {"region": "eu-west-1", "environment": "dev"} if cloud != "local" else {}
    return parse_stack_config("local" if cloud == "local" else "dev",
                              {**GOOD, "cloud": cloud, **extra, "models": models, "local": dict(local)})


def _port_problems(models: dict, cloud: str = "local", **local: object) -> list[str]:
    with pytest.raises(StackConfigError) as err:
        _port_config(models, cloud, **local)
    return [p for p in err.value.problems if ".port" in p]


def test_pinned_ports_win_and_unpinned_models_fill_the_gaps_from_the_base_port():
    from shipway_core.config import endpoint_ports

    cfg = _port_config({"iris-classifier": {"version": 1, "port": 8100}, "fraud-scorer": {"version": 1},
                        "anomaly": {"version": 2, "port": 8102}})
    assert cfg.models["iris-classifier"].port == 8100
    # fraud-scorer sorts first but cannot take iris's pinned 8100: it gets the next free one.
    assert endpoint_ports(cfg.models, cfg.local) == {"anomaly": 8102, "fraud-scorer": 8101, "iris-classifier": 8100}


def test_two_models_on_one_port_are_rejected_naming_the_owner():
    assert _port_problems({"a-model": {"version": 1, "port": 8200}, "b-model": {"version": 1, "port": 8200}}) == [
        "shipway:models.b-model.port: 8200 is not valid; already used by models.a-model.port; pick a free port "
        "(each model keeps its port for its whole life)"]


def test_a_model_port_may_not_take_a_platform_process_port():
    assert _port_problems({"a-model": {"version": 1, "port": 9095}}) == [
        "shipway:models.a-model.port: 9095 is not valid; already used by local.alertSinkPort; pick a free port "
        "(each model keeps its port for its whole life)"]
    assert _port_problems({"a-model": {"version": 1, "port": 16687}}) == [
        "shipway:models.a-model.port: 16687 is not valid; already used by local.jaegerQueryPort+1; pick a free "
        "port (each model keeps its port for its whole life)"]


def test_jaeger_metrics_port_defaults_off_the_collectors_and_may_not_take_another_local_port():
    assert _port_config({}).local.jaeger_metrics_port == 14269  # not Jaeger v2's default 8888: the hub's
    for key, port, owner in (("collectorMetricsPort", 8888, "local.collectorMetricsPort"),
                             ("prometheusPort", 9090, "local.prometheusPort")):
        with pytest.raises(StackConfigError) as err:
            _port_config({}, **{"jaegerMetricsPort": port})
        assert err.value.problems == [
            f"shipway:local.jaegerMetricsPort: {port} is not valid; already used by {owner}; pick a free port for "
            "Jaeger's own metrics (the default 14269 is free unless another key takes it)"], key
    with pytest.raises(StackConfigError) as err:  # the delivery exporter's port (alert sink + 1)
        _port_config({}, jaegerMetricsPort=9096)
    assert "already used by local.alertSinkPort+1" in err.value.problems[0]
    assert _port_problems({"a-model": {"version": 1, "port": 14269}}) == [
        "shipway:models.a-model.port: 14269 is not valid; already used by local.jaegerMetricsPort; pick a free "
        "port (each model keeps its port for its whole life)"]
    with pytest.raises(StackConfigError) as err:
        _port_config({}, jaegerMetricsPort=80)
    assert err.value.problems == ["shipway:local.jaegerMetricsPort: 80 is not valid; use a port number 1024-65535"]
    assert _port_config({}, jaegerMetricsPort=14300).local.jaeger_metrics_port == 14300


def test_model_port_must_be_a_real_port_and_is_local_only():
    assert _port_problems({"a-model": {"version": 1, "port": 80}}) == [
        "shipway:models.a-model.port: 80 is not valid; use a port number 1024-65535 (local target only)"]
    assert _port_problems({"a-model": {"version": 1, "port": 8100}}, cloud="aws") == [
        "shipway:models.a-model.port: 8100 is not valid; ports are pinned on the local target only; remove it "
        "(the aws target gives each endpoint its own address)"]


def test_latency_slo_has_its_own_objective_and_a_threshold_on_a_histogram_boundary():
    cfg = example_config("local", {**GOOD, "slo": {"latencyP99Ms": 300, "latencyObjective": 0.95}})
    assert (cfg.slo.latency_p99_ms, cfg.slo.latency_objective) == (300, 0.95)
    assert example_config("local", GOOD).slo.latency_objective == 0.99
    [bad_threshold] = problems("local", slo={"latencyP99Ms": 260})
    assert bad_threshold.startswith(
        "shipway:slo.latencyP99Ms: 260 is not valid; use one of the latency histogram boundaries (ms): 0.5, 1,"
    )
    assert ", 250, 300," in bad_threshold
    assert problems("local", slo={"latencyObjective": 1}) == [
        "shipway:slo.latencyObjective: 1 is not valid; use a fraction between 0.9 and 1 "
        "(e.g. 0.99 of requests under latencyP99Ms)"
    ]


def test_low_traffic_guard_of_the_burn_rate_alerts_is_configurable():
    assert example_config("local", GOOD).slo.min_requests == 100
    assert example_config("local", {**GOOD, "slo": {"minRequests": 0}}).slo.min_requests == 0
    assert problems("local", slo={"minRequests": 2.5}) == [
        "shipway:slo.minRequests: 2.5 is not valid; use a whole number of requests (0 turns the low-traffic "
        "guard off)"
    ]


def test_drift_effect_thresholds_are_configurable_and_bad_values_are_named():
    cfg = example_config("local", {**GOOD, "slo": {"driftWasserstein": 0.2, "driftJensenShannon": 0.1}})
    assert (cfg.slo.drift_wasserstein, cfg.slo.drift_jensen_shannon, cfg.slo.drift_null_rate) == (0.2, 0.1, 0.03)
    defaults = example_config("local", GOOD).slo
    assert (defaults.drift_wasserstein, defaults.drift_jensen_shannon) == (0.1, 0.06)
    assert problems("local", slo={"driftJensenShannon": 1.5}) == [
        "shipway:slo.driftJensenShannon: 1.5 is not valid; use a Jensen-Shannon distance between 0 and 1 "
        "(0.06 = about a 7-10 point share move)"
    ]
    assert problems("local", slo={"driftWasserstein": 0}) == [
        "shipway:slo.driftWasserstein: 0 is not valid; use a positive distance in training standard deviations "
        "(0.1 = a 0.1-sd shift)"
    ]
