"""The collector configuration generated from shipway_core (one source for every target)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipway_core.observability.collector import (
    COMPONENTS,
    LOG_STORE_OTLP_PATH,
    CollectorSpec,
    LogSource,
    collector_config,
)

ROOT = Path(__file__).resolve().parents[2]


def _spec(**kw: object) -> CollectorSpec:
    base: dict[str, object] = dict(host="127.0.0.1", traces_endpoint="http://127.0.0.1:4320",
                                   log_store_url="http://127.0.0.1:9428",
                                   log_sources=(LogSource("shipway-serving", "/d/endpoints/*/serving.log"),),
                                   storage_dir="/d/otelcol/storage")
    base.update(kw)
    return CollectorSpec(**base)  # type: ignore[arg-type]


def test_pipelines_route_traces_to_jaeger_and_logs_to_the_store_with_a_persistent_bounded_queue() -> None:
    config = collector_config(_spec(queue_size=321))
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"] == {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                                   "exporters": ["otlp_http/traces"]}
    assert pipelines["logs"]["receivers"] == ["file_log/shipway-serving"]
    assert config["exporters"]["otlp_http/traces"]["traces_endpoint"] == "http://127.0.0.1:4320/v1/traces"
    logs = config["exporters"]["otlp_http/logs"]
    assert logs["logs_endpoint"] == "http://127.0.0.1:9428" + LOG_STORE_OTLP_PATH
    assert logs["sending_queue"] == {"enabled": True, "queue_size": 321, "storage": "file_storage"}
    assert logs["retry_on_failure"]["enabled"] is True
    assert config["extensions"]["file_storage"]["directory"] == "/d/otelcol/storage"
    assert config["receivers"]["otlp"]["protocols"] == {"grpc": {"endpoint": "127.0.0.1:4317"},
                                                       "http": {"endpoint": "127.0.0.1:4318"}}
    reader = config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert (reader["host"], reader["port"]) == ("127.0.0.1", 8888)


def test_probe_request_lines_are_dropped_and_every_record_names_its_service() -> None:
    ops = collector_config(_spec())["receivers"]["file_log/shipway-serving"]["operators"]
    dropped = [op for op in ops if op["type"] == "filter"]
    assert len(dropped) == 1
    for route in ("/health", "/ping", "/ready", "/metrics"):
        assert f'"{route}"' in dropped[0]["expr"]
    assert '"/invocations"' not in dropped[0]["expr"]
    assert {"type": "add", "field": 'resource["service.name"]', "value": "shipway-serving"} in ops


def test_without_a_storage_dir_the_queue_is_in_memory() -> None:
    config = collector_config(_spec(storage_dir=None))
    assert "extensions" not in config and "extensions" not in config["service"]
    assert "storage" not in config["exporters"]["otlp_http/logs"]["sending_queue"]


def test_only_components_the_distribution_builds_are_named() -> None:
    config = collector_config(_spec())
    built = (ROOT / "tools" / "otelcol" / "components.go").read_text()
    for kind, names in COMPONENTS.items():
        for key in config.get(kind, {}):
            assert key.split("/")[0] in names, (kind, key)
    # ... and every type the Python side expects is in components.go.
    imports = set(re.findall(r'"[^"]+/(\w+)"', built))
    for pkg in ("otlpreceiver", "filelogreceiver", "batchprocessor", "memorylimiterprocessor", "otlphttpexporter",
                "filestorage"):
        assert pkg in imports


@pytest.mark.parametrize(("kw", "message"), [
    ({"otlp_grpc_port": 80}, "collector.otlp_grpc_port: 80 is not valid; use a port number 1024-65535"),
    ({"otlp_http_port": 4317}, "collector ports: gRPC 4317, HTTP 4317 and metrics 8888 must differ"),
    ({"queue_size": 0}, "collector.queue_size: 0 is not valid; use a positive number of batches"),
    ({"log_store_url": None}, "collector.log_store_url: None is not valid with log sources"),
    ({"traces_endpoint": None, "log_sources": ()}, "collector: no pipeline"),
])
def test_bad_specs_are_refused_naming_the_field(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        collector_config(_spec(**kw))


def test_prometheus_scrapes_the_collector_and_the_log_store_as_their_own_jobs() -> None:
    import yaml

    from components.local.components import prometheus_config

    config = yaml.safe_load(prometheus_config({}, telemetry={"otelcol": "127.0.0.1:8888",
                                                             "victorialogs": "127.0.0.1:9428"}))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["otelcol"]["static_configs"] == [{"targets": ["127.0.0.1:8888"]}]
    assert jobs["victorialogs"]["static_configs"] == [{"targets": ["127.0.0.1:9428"]}]


def test_kubernetes_and_local_share_the_receiver_batching_and_queued_export() -> None:
    from shipway_core.observability.collector import kubernetes_collector_config

    local = collector_config(_spec())
    k8s = kubernetes_collector_config("shipway-prod", "https://otlp.example.com:4318")
    assert k8s["processors"]["batch"] == local["processors"]["batch"]
    assert k8s["receivers"]["otlp"]["protocols"].keys() == local["receivers"]["otlp"]["protocols"].keys()
    shared = ("sending_queue", "retry_on_failure")
    assert {k: k8s["exporters"]["otlphttp"][k] for k in shared} == \
        {k: local["exporters"]["otlp_http/traces"][k] for k in shared}
    assert kubernetes_collector_config("ns", None)["service"]["pipelines"]["logs"]["exporters"] == ["debug"]


def _targets() -> dict[str, dict]:
    """Every target's collector configuration, as each target's code generates it."""
    import json

    from components.aws.observability import otel_collector_config
    from shipway_core.observability.collector import azure_monitor_collector_config, kubernetes_collector_config

    return {
        "local": collector_config(_spec(log_sources=(LogSource("shipway-serving", "/d/endpoints/*/serving.log"),
                                                     LogSource("mlflow", "/d/mlflow/mlflow-server.log")))),
        "kubernetes": kubernetes_collector_config("shipway-prod", "https://otlp.example.com:4318"),
        "aws": json.loads(otel_collector_config("eu-west-1", "https://aps/ws/api/v1/remote_write", "prod")),
        "azure": azure_monitor_collector_config("prod"),
    }


# receivers / processors / exporters per pipeline on each target: what differs is only where a
# signal goes and what a target adds to a record (k8sattributes, the environment resource).
PIPELINES = {
    "local": {
        "traces": (["otlp"], ["memory_limiter", "batch"], ["otlp_http/traces"]),
        "logs": (["file_log/shipway-serving", "file_log/mlflow"], ["memory_limiter", "batch"], ["otlp_http/logs"]),
    },
    "kubernetes": {
        "traces": (["otlp"], ["memory_limiter", "k8sattributes", "filter/probes", "batch"], ["otlphttp"]),
        "metrics": (["otlp"], ["memory_limiter", "k8sattributes", "batch"], ["otlphttp", "prometheus"]),
        "logs": (["otlp"], ["memory_limiter", "k8sattributes", "filter/probes", "batch"], ["otlphttp"]),
    },
    "aws": {
        "traces": (["otlp"], ["memory_limiter", "resource", "filter/probes", "batch"], ["awsxray"]),
        "metrics": (["otlp"], ["memory_limiter", "resource", "batch"], ["prometheusremotewrite"]),
    },
    "azure": {
        "traces": (["otlp"], ["memory_limiter", "resource", "filter/probes", "batch"], ["azuremonitor"]),
        "metrics": (["otlp"], ["memory_limiter", "resource", "batch"], ["azuremonitor"]),
    },
}


def test_every_target_generates_its_pipelines_from_the_one_source() -> None:
    configs = _targets()
    for target, config in configs.items():
        got = {name: (p["receivers"], p["processors"], p["exporters"])
               for name, p in config["service"]["pipelines"].items()}
        print(f"{target:10} " + "; ".join(f"{n}: {r} -> {p} -> {e}" for n, (r, p, e) in got.items()))
        assert got == PIPELINES[target], target
        # everything a pipeline names is defined, and nothing is defined that no pipeline uses
        used = {kind: {c for p in config["service"]["pipelines"].values() for c in p[kind]}
                for kind in ("receivers", "processors", "exporters")}
        assert {kind: set(config.get(kind, {})) for kind in used} == used, target
        assert set(config.get("extensions", {})) == set(config["service"].get("extensions", [])), target


def test_batching_memory_limit_and_otlp_receiver_are_the_same_on_every_target() -> None:
    from shipway_core.observability.collector import BATCH

    for target, config in _targets().items():
        assert config["processors"]["batch"] == dict(BATCH), target
        limiter = config["processors"]["memory_limiter"]
        assert limiter["check_interval"] == "1s", target
        # refuse at the limit with a 20 % spike allowance: a fixed size locally (a process on a
        # shared machine), a share of the container's memory limit elsewhere
        if "limit_mib" in limiter:
            assert target == "local" and limiter == {"check_interval": "1s", "limit_mib": 256, "spike_limit_mib": 51}
        else:
            assert (limiter["limit_percentage"], limiter["spike_limit_percentage"]) == (80, 20), target
        grpc, http = config["receivers"]["otlp"]["protocols"]["grpc"], config["receivers"]["otlp"]["protocols"]["http"]
        assert (grpc["endpoint"].rsplit(":", 1)[1], http["endpoint"].rsplit(":", 1)[1]) == ("4317", "4318"), target


def test_probe_noise_is_kept_out_of_the_stores_on_every_target_from_the_same_routes() -> None:
    from shipway_core.observability.collector import COMPONENTS, PROBE_ROUTES

    assert PROBE_ROUTES == ("/health", "/ping", "/ready", "/metrics")
    for target, config in _targets().items():
        for name, pipeline in config["service"]["pipelines"].items():
            if name == "metrics":
                continue  # metrics are aggregates: there is no probe request to drop
            if "filter/probes" in pipeline["processors"]:
                conditions = config["processors"]["filter/probes"]["traces" if name == "traces" else "logs"]
                patterns = [re.search(r'"(\^\(.*\)\$)"', c).group(1) for c in next(iter(conditions.values()))]
                for pattern in patterns:
                    for route in PROBE_ROUTES:
                        assert re.fullmatch(pattern, route), (target, name, pattern, route)
                    assert not re.fullmatch(pattern, "/invocations") and not re.fullmatch(pattern, "/healthz")
            elif name == "logs":  # tailed files: every receiver drops the probe lines itself
                assert target == "local"
                for receiver in pipeline["receivers"]:
                    (drop,) = [op for op in config["receivers"][receiver]["operators"] if op["type"] == "filter"]
                    assert all(f'"{route}"' in drop["expr"] for route in PROBE_ROUTES), receiver
            else:
                # local traces: the distribution has no filter processor; the serving app makes
                # no span for a probe route (tests/integration/test_telemetry.py proves it)
                assert (target, name) == ("local", "traces") and "filter" not in COMPONENTS["processors"]


def test_cloud_collectors_stamp_the_environment_and_keep_credentials_out_of_the_file() -> None:
    configs = _targets()
    for target in ("aws", "azure"):
        assert configs[target]["processors"]["resource"] == {"attributes": [
            {"key": "deployment.environment", "value": "prod", "action": "upsert"}]}, target
    assert configs["azure"]["exporters"]["azuremonitor"] == {
        "connection_string": "${env:APPLICATIONINSIGHTS_CONNECTION_STRING}"}
    assert configs["aws"]["exporters"]["prometheusremotewrite"]["auth"] == {"authenticator": "sigv4auth"}


def test_a_pipeline_naming_an_unknown_exporter_or_signal_is_refused() -> None:
    from shipway_core.observability.collector import TargetExport, pipeline_config

    with pytest.raises(ValueError, match=re.escape(
            "routes.traces: ['jaeger'] is not valid; name exporters of this target (debug)")):
        pipeline_config(TargetExport("local", "127.0.0.1", {"debug": {}}, {"traces": ["jaeger"]}))
    with pytest.raises(ValueError, match=re.escape("routes: 'profiles' is not a signal; use traces, metrics, logs")):
        pipeline_config(TargetExport("local", "127.0.0.1", {"debug": {}}, {"profiles": ["debug"]}))
