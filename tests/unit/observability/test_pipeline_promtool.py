"""Pipeline-health rules unit-tested by the real `promtool`: each alert fires on a failing
synthetic series with exactly these labels and rendered annotations, and stays quiet on a
healthy one. Also: the evidence-link templates (urlquery) pass `promtool check rules`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shipway_core.config import SloSettings
from shipway_core.observability.pipeline import pipeline_alerts
from shipway_core.observability.rules import RuleOptions, generate_rules, render_yaml

pytestmark = pytest.mark.integration

ENV = "dev"
JOBS = ("jaeger", "mlflow", "otelcol", "prometheus", "victorialogs")
OTEL = {"job": "otelcol", "instance": "127.0.0.1:8888"}
VL = {"job": "victorialogs", "instance": "127.0.0.1:9428"}
MLFLOW = {"job": "mlflow", "instance": "127.0.0.1:5000"}
JAEGER = {"job": "jaeger", "instance": "127.0.0.1:14269"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run the project setup (Debian package 'prometheus')")
    return path


def _rule(name: str) -> dict[str, Any]:
    return next(r for r in pipeline_alerts(JOBS, ENV) if r["alert"] == name)


def _sel(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _expect(name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    rule = _rule(name)
    return {"exp_labels": {**labels, **rule["labels"]},
            "exp_annotations": {**annotations, "runbook_url": f"docs/runbooks/{name}.md"}}


def _run(tmp_path: Path, tests: list[dict[str, Any]], groups: dict[str, Any] | None = None) -> None:
    import yaml

    (tmp_path / "rules.yml").write_text(render_yaml(groups or {"groups": [
        {"name": f"shipway-{ENV}-pipeline", "rules": pipeline_alerts(JOBS, ENV)}]}))
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m",
                                                      "tests": tests}, sort_keys=False))
    result = subprocess.run([_promtool(), "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_down_pipeline_component_pages_and_a_live_one_does_not(tmp_path: Path) -> None:
    _run(tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": _sel("up", OTEL), "values": "0x10"},
                         {"series": _sel("up", VL), "values": "1x10"},
                         {"series": _sel("up", {"job": "shipway-endpoints", "instance": "x"}), "values": "0x10"}],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "ShipwayPipelineComponentDown", "exp_alerts": []},
            {"eval_time": "5m", "alertname": "ShipwayPipelineComponentDown", "exp_alerts": [_expect(
                "ShipwayPipelineComponentDown", OTEL,
                {"summary": "Pipeline component otelcol (127.0.0.1:8888) is down",
                 "description": "Prometheus has failed to scrape otelcol at 127.0.0.1:8888 for 2m: traces, logs, "
                                "alerts or the registry it carries are not being recorded."})]},
        ],
    }])


def test_collector_failed_exports_and_drops_raise_telemetry_dropped(tmp_path: Path) -> None:
    failing = {**OTEL, "exporter": "otlp/jaeger"}
    _run(tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": _sel("otelcol_exporter_send_failed_spans_total", failing), "values": "0+30x20"},
            {"series": _sel("otelcol_processor_refused_log_records_total", {**OTEL, "processor": "memory_limiter"}),
             "values": "0+30x20"},
            {"series": _sel("otelcol_exporter_sent_spans_total", failing), "values": "0+600x20"},
            {"series": _sel("up", OTEL), "values": "1x20"},
        ],
        "alert_rule_test": [{"eval_time": "12m", "alertname": "ShipwayTelemetryDropped", "exp_alerts": [_expect(
            "ShipwayTelemetryDropped", OTEL,
            {"summary": "The collector is losing spans or log records",
             "description": "The OpenTelemetry Collector failed to export or dropped 1.00 records/s over 5m "
                            "(exporter send/enqueue failures, processor drops or memory-limiter refusals)."})]}],
    }, {
        "interval": "1m",
        "input_series": [{"series": _sel("otelcol_exporter_send_failed_spans_total", failing), "values": "0x20"},
                         {"series": _sel("otelcol_exporter_sent_spans_total", failing), "values": "0+600x20"},
                         {"series": _sel("up", OTEL), "values": "1x20"}],
        "alert_rule_test": [{"eval_time": "12m", "alertname": "ShipwayTelemetryDropped", "exp_alerts": []}],
    }])


def test_a_down_registry_or_trace_store_pages_and_healthy_ones_do_not(tmp_path: Path) -> None:
    def down(labels: dict[str, str], job: str) -> dict[str, Any]:
        return _expect("ShipwayPipelineComponentDown", labels, {
            "summary": f"Pipeline component {job} ({labels['instance']}) is down",
            "description": f"Prometheus has failed to scrape {job} at {labels['instance']} for 2m: traces, logs, "
                           "alerts or the registry it carries are not being recorded."})

    _run(tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": _sel("up", MLFLOW), "values": "1 1 0x10"},
                         {"series": _sel("up", JAEGER), "values": "1 1 1 0x10"}],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "ShipwayPipelineComponentDown", "exp_alerts": []},
            {"eval_time": "6m", "alertname": "ShipwayPipelineComponentDown",
             "exp_alerts": [down(JAEGER, "jaeger"), down(MLFLOW, "mlflow")]},
        ],
    }, {
        "interval": "1m",
        "input_series": [{"series": _sel("up", MLFLOW), "values": "1x10"},
                         {"series": _sel("up", JAEGER), "values": "1x10"}],
        "alert_rule_test": [{"eval_time": "10m", "alertname": "ShipwayPipelineComponentDown", "exp_alerts": []}],
    }])


def test_registry_5xx_share_raises_registry_errors_but_a_single_failure_or_4xx_does_not(tmp_path: Path) -> None:
    ok = {**MLFLOW, "method": "GET", "status": "200"}
    _run(tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": _sel("mlflow_http_request_total", ok), "values": "0+90x30"},
            {"series": _sel("mlflow_http_request_total", {**MLFLOW, "method": "POST", "status": "500"}),
             "values": "0+30x30"},
        ],
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": "ShipwayRegistryErrors", "exp_alerts": []},  # held 10m
            {"eval_time": "20m", "alertname": "ShipwayRegistryErrors", "exp_alerts": [_expect(
                "ShipwayRegistryErrors", MLFLOW,
                {"summary": "The MLflow tracking server and registry is failing requests",
                 "description": "25% of the MLflow server's requests answered 5xx over 5m: runs, registrations, "
                                "promotion pre-flights and model loads may fail."})]},
        ],
    }, {
        # Healthy: 404s (a missing model is a client's question) and one lone 500.
        "interval": "1m",
        "input_series": [
            {"series": _sel("mlflow_http_request_total", ok), "values": "0+90x30"},
            {"series": _sel("mlflow_http_request_total", {**MLFLOW, "method": "GET", "status": "404"}),
             "values": "0+60x30"},
            {"series": _sel("mlflow_http_request_total", {**MLFLOW, "method": "POST", "status": "500"}),
             "values": "0x10 1x20"},
        ],
        "alert_rule_test": [{"eval_time": t, "alertname": "ShipwayRegistryErrors", "exp_alerts": []}
                            for t in ("12m", "20m", "30m")],
    }])


def test_jaeger_refusing_or_failing_to_store_spans_raises_trace_ingestion_errors(tmp_path: Path) -> None:
    receiver = {**JAEGER, "receiver": "otlp", "transport": "http"}
    storage = {**JAEGER, "exporter": "jaeger_storage_exporter"}
    _run(tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": _sel("otelcol_receiver_refused_spans_total", receiver), "values": "0+60x20"},
            {"series": _sel("otelcol_exporter_send_failed_spans_total", storage), "values": "0+30x20"},
            {"series": _sel("otelcol_receiver_accepted_spans_total", receiver), "values": "0+6000x20"},
            # the hub collector's own failures are ShipwayTelemetryDropped's, not the trace store's
            {"series": _sel("otelcol_exporter_send_failed_spans_total", {**OTEL, "exporter": "otlp_http/traces"}),
             "values": "0+600x20"},
            {"series": _sel("up", JAEGER), "values": "1x20"},
            {"series": _sel("up", OTEL), "values": "1x20"},
        ],
        "alert_rule_test": [{"eval_time": "12m", "alertname": "ShipwayTraceIngestionErrors", "exp_alerts": [_expect(
            "ShipwayTraceIngestionErrors", JAEGER,
            {"summary": "The trace store is refusing or failing to store spans",
             "description": "Jaeger refused, failed to receive or failed to store 1.50 spans/s over 5m; traces of "
                            "those requests are missing from the trace search."})]}],
    }, {
        "interval": "1m",
        "input_series": [
            {"series": _sel("otelcol_receiver_refused_spans_total", receiver), "values": "0x20"},
            {"series": _sel("otelcol_receiver_failed_spans_total", receiver), "values": "0x20"},
            {"series": _sel("otelcol_exporter_send_failed_spans_total", storage), "values": "0x20"},
            {"series": _sel("otelcol_exporter_sent_spans_total", storage), "values": "0+6000x20"},
            {"series": _sel("up", JAEGER), "values": "1x20"},
        ],
        "alert_rule_test": [{"eval_time": "12m", "alertname": "ShipwayTraceIngestionErrors", "exp_alerts": []}],
    }])


def test_log_store_insert_errors_raise_ingestion_errors_but_debug_rows_do_not(tmp_path: Path) -> None:
    _run(tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": _sel("vl_http_errors_total", {**VL, "path": "/insert/opentelemetry/v1/logs"}),
             "values": "0+30x20"},
            {"series": _sel("vl_http_errors_total", {**VL, "path": "/select/logsql/query"}), "values": "0+600x20"},
            {"series": _sel("vl_rows_dropped_total", {**VL, "reason": "debug"}), "values": "0+600x20"},
        ],
        "alert_rule_test": [{"eval_time": "12m", "alertname": "ShipwayLogIngestionErrors", "exp_alerts": [_expect(
            "ShipwayLogIngestionErrors", VL,
            {"summary": "The log store is rejecting or dropping log lines",
             "description": "VictoriaLogs answered insert errors or dropped rows at 0.50/s over 5m."})]}],
    }, {
        "interval": "1m",
        "input_series": [
            {"series": _sel("vl_http_errors_total", {**VL, "path": "/select/logsql/query"}), "values": "0+600x20"},
            {"series": _sel("vl_rows_dropped_total", {**VL, "reason": "debug"}), "values": "0+600x20"},
            {"series": _sel("vl_rows_dropped_total", {**VL, "reason": "too_many_fields"}), "values": "0x20"},
        ],
        "alert_rule_test": [{"eval_time": "12m", "alertname": "ShipwayLogIngestionErrors", "exp_alerts": []}],
    }])


def test_low_free_disk_under_the_log_store_pages(tmp_path: Path) -> None:
    disk = {**VL, "path": "/data/victorialogs"}
    _run(tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": _sel("vl_free_disk_space_bytes", disk), "values": "5000000000x20"},
                         {"series": _sel("vl_total_disk_space_bytes", disk), "values": "100000000000x20"}],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "ShipwayPipelineDiskLow", "exp_alerts": []},
            {"eval_time": "15m", "alertname": "ShipwayPipelineDiskLow", "exp_alerts": [_expect(
                "ShipwayPipelineDiskLow", disk,
                {"summary": "Free disk under the log store (/data/victorialogs) is low",
                 "description": "Only 5% of the filesystem holding /data/victorialogs is free; the log store stops "
                                "accepting lines when it is full, and the local data root (MLflow's runs and "
                                "artifacts) shares it."})]},
        ],
    }, {
        "interval": "1m",
        "input_series": [{"series": _sel("vl_free_disk_space_bytes", disk), "values": "50000000000x20"},
                         {"series": _sel("vl_total_disk_space_bytes", disk), "values": "100000000000x20"}],
        "alert_rule_test": [{"eval_time": "15m", "alertname": "ShipwayPipelineDiskLow", "exp_alerts": []}],
    }])


def test_the_full_local_rule_file_with_links_and_pipeline_passes_promtool_check(tmp_path: Path) -> None:
    rules = generate_rules(SloSettings(), ["iris"], ENV, RuleOptions(
        log_store_url="http://127.0.0.1:9428", traces_url="http://127.0.0.1:16686", pipeline_jobs=JOBS))
    assert [g["name"] for g in rules["groups"]][-1] == f"shipway-{ENV}-pipeline"
    (tmp_path / "rules.yml").write_text(render_yaml(rules))
    result = subprocess.run([_promtool(), "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_job_name_is_refused() -> None:
    with pytest.raises(ValueError, match="pipeline job: 'otel col' is not a Prometheus job name"):
        pipeline_alerts(("otel col",), ENV)
