"""Alert -> evidence links: the prepared log query and trace search carry the model, version and
window, URL-encoded, and every model alert (local rule file) has them."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from shipway_core.config import SloSettings
from shipway_core.observability.links import (
    Template,
    evidence_links,
    log_api_link,
    log_query_link,
    logsql,
    trace_search_link,
)
from shipway_core.observability.rules import RuleOptions, generate_rules

STORE = "http://127.0.0.1:9428"
JAEGER = "http://127.0.0.1:16686"


def test_logsql_quotes_values_that_are_not_plain_words() -> None:
    assert logsql("churn", 3, window="15m") == "_time:15m model:churn version:3"
    assert logsql("churn", trace_id="ab12") == "model:churn trace_id:ab12"
    assert logsql("odd name", window="1h", extra='level:error') == '_time:1h model:"odd name" (level:error)'
    assert logsql() == "*"


def test_log_query_link_carries_model_version_and_window_url_encoded() -> None:
    url = log_query_link(STORE, "churn-model", 7, "30m")
    assert url.startswith(STORE + "/select/vmui/#/?query=")
    fragment = urlsplit(url).fragment.removeprefix("/?")
    params = parse_qs(fragment)
    assert params["query"] == ["_time:30m model:churn-model version:7"]
    assert params["g0.relative_time"] == ["last_30m"]
    # no raw space, colon or quote left in the query parameter
    raw_query = fragment.split("&")[0].removeprefix("query=")
    assert " " not in raw_query and ":" not in raw_query and '"' not in raw_query


def test_log_api_link_is_the_same_query_against_the_json_api() -> None:
    url = log_api_link(STORE, "churn", 2, "1h", limit=50)
    parts = urlsplit(url)
    assert parts.path == "/select/logsql/query"
    assert parse_qs(parts.query) == {"query": ["_time:1h model:churn version:2"], "limit": ["50"]}


def test_trace_search_link_searches_the_serving_service_by_model_tags() -> None:
    url = trace_search_link(JAEGER + "/", "churn", 4, "2h")
    parts = urlsplit(url)
    assert parts.path == "/search"
    params = parse_qs(parts.query)
    assert params["service"] == ["shipway-serving"]
    assert json.loads(params["tags"][0]) == {"shipway.model.name": "churn", "shipway.model.version": "4"}
    assert params["lookback"] == ["2h"]


@pytest.mark.parametrize("window", ["15", "1w", "0h", "", "1h30m", "-5m"])
def test_a_bad_window_is_refused_naming_it(window: str) -> None:
    with pytest.raises(ValueError, match=f"window: {window!r} is not a valid window; use a number and m, h or d"):
        log_query_link(STORE, "churn", 1, window)
    with pytest.raises(ValueError, match="evidence_window"):
        RuleOptions(evidence_window=window)


def test_template_placeholders_stay_unencoded_and_ask_prometheus_to_encode() -> None:
    links = evidence_links(log_store_url=STORE, traces_url=JAEGER, model=Template("model"),
                           version=Template("version"), window="1h")
    logs, traces = links["logs_url"], links["traces_url"]
    assert "model%3A{{ $labels.model | urlquery }}%20version%3A{{ $labels.version | urlquery }}" in logs
    assert "%22shipway.model.name%22%3A%22{{ $labels.model | urlquery }}%22" in traces
    # Filled in as Prometheus would (urlquery of the label value), the link decodes to the query.
    filled = logs.replace("{{ $labels.model | urlquery }}", "churn").replace("{{ $labels.version | urlquery }}", "9")
    assert parse_qs(urlsplit(filled).fragment.removeprefix("/?"))["query"] == ["_time:1h model:churn version:9"]
    assert evidence_links(log_store_url=None, traces_url=None, model="m", version=None, window="1h") == {}


def test_every_model_alert_links_to_its_logs_and_traces() -> None:
    rules = generate_rules(SloSettings(), ["churn"], "dev",
                           RuleOptions(log_store_url=STORE, traces_url=JAEGER, evidence_window="2h"))
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for alert in alerts:
        ann = alert["annotations"]
        assert ann["logs_url"].startswith(STORE + "/select/vmui/"), alert["alert"]
        assert ann["traces_url"].startswith(JAEGER + "/search?service=shipway-serving"), alert["alert"]
        assert "%2Fmodel" not in ann["logs_url"]
        assert "_time%3A2h" in ann["logs_url"] and "lookback=2h" in ann["traces_url"]
        has_version = alert["alert"] in ("ShipwayFeatureDrift", "ShipwayModelQualityLow", "ShipwayModelStale")
        assert ("$labels.version" in ann["logs_url"]) is has_version, alert["alert"]
        assert unquote(ann["logs_url"]).count("{{ $labels.model | urlquery }}") == 1


def test_without_stores_the_annotations_are_unchanged() -> None:
    rules = generate_rules(SloSettings(), ["churn"], "dev")
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert "logs_url" not in rule.get("annotations", {})
            assert "traces_url" not in rule.get("annotations", {})


def test_every_runbook_says_where_the_evidence_is() -> None:
    from pathlib import Path

    from shipway_core.observability.pipeline import PIPELINE_ALERT_NAMES
    from shipway_core.observability.rules import ALERT_NAMES

    runbooks = Path(__file__).resolve().parents[3] / "docs" / "runbooks"
    for name in ALERT_NAMES:
        text = (runbooks / f"{name}.md").read_text()
        assert "## Evidence" in text and "`logs_url`" in text and "`traces_url`" in text, name
        assert "shipway logs <model>" in text, name
    for name in PIPELINE_ALERT_NAMES:
        text = (runbooks / f"{name}.md").read_text()
        for section in ("## What it means", "## Confirm", "## Mitigate", "## Escalate"):
            assert section in text, f"{name}.md lacks {section}"


def test_the_local_rule_file_links_logs_only_when_the_stack_runs_a_log_store() -> None:
    from pathlib import Path

    import yaml

    from components.local.platform import _rules_yaml
    from shipway import stackfile

    cfg = stackfile.load_config(Path(__file__).resolve().parents[3] / "stacks" / "Pulumi.local.yaml")

    def annotations(jobs: tuple[str, ...]) -> list[dict[str, str]]:
        doc = yaml.safe_load(_rules_yaml(cfg, jobs))
        return [r["annotations"] for g in doc["groups"] for r in g["rules"]
                if "alert" in r and r["labels"].get("component") != "pipeline"]

    with_store = annotations(("otelcol", "prometheus", "victorialogs", "alertmanager"))
    assert all(a["logs_url"].startswith("http://127.0.0.1:9428/select/vmui/") for a in with_store)
    assert all(a["traces_url"].startswith("http://127.0.0.1:16686/search?") for a in with_store)
    without = annotations(("prometheus",))
    assert all("logs_url" not in a and "traces_url" in a for a in without)
