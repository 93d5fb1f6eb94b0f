"""The generated burn-rate alerts, run by the real `promtool test rules` on the shared traffic scenarios.

Each scenario becomes promtool input series (cumulative counters, one sample a minute) and one
alert check: at the evaluation minute exactly the expected severities of the SLO's alert fire --
one alert per severity, so "pages once" means one firing page alert. Annotations are stripped from
the rule file here (their rendering is covered in test_rules_promtool.py): this file tests when
alerts fire.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shipway_core.config import SloSettings
from shipway_core.observability.rules import generate_rules, render_yaml
from shipway_core.observability.slo import le_label, slos
from tests.unit.observability.scenarios import LOW_TRAFFIC, SCENARIOS, Scenario, recording_first

pytestmark = pytest.mark.integration

ENV = "test"
SLO = SloSettings()
BASE = 'job="shipway-endpoints",model="iris",version="1"'


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run the project setup (Debian package 'prometheus')")
    return path


def counter(increments: list[float]) -> str:
    """promtool values for a counter that grows by ``increments[i]`` in minute i+1 (starts at 0).

    Runs of equal increments become one ``start+stepxN`` term, so a day of traffic stays short.
    """
    terms, value, i = ["0"], 0.0, 0
    while i < len(increments):
        step, n = increments[i], 1
        while i + n < len(increments) and increments[i + n] == step:
            n += 1
        first = value + step
        terms.append(f"{first:g}+{step:g}x{n - 1}")
        value, i = value + step * n, i + n
    return " ".join(terms)


def input_series(scenario: Scenario) -> list[dict[str, str]]:
    """What the serving app would export for the scenario's traffic."""
    minutes = scenario.per_minute()
    inv = f'{BASE},route="/invocations"'
    series: dict[str, list[float]] = {}
    if scenario.slo == "availability":
        series[f'shipway_requests_total{{{inv},status_class="2xx"}}'] = [r - b for r, b in minutes]
        series[f'shipway_requests_total{{{inv},status_class="5xx"}}'] = [b for _, b in minutes]
        if scenario.client_errors_per_min:
            series[f'shipway_requests_total{{{inv},status_class="4xx"}}'] = [
                scenario.client_errors_per_min for _ in minutes
            ]
        for route in scenario.noise_routes:
            series[f'shipway_requests_total{{{BASE},route="{route}",status_class="5xx"}}'] = [1000.0 for _ in minutes]
    else:
        le = le_label(SLO.latency_p99_ms)
        series[f"shipway_request_duration_seconds_count{{{inv}}}"] = [r for r, _ in minutes]
        series[f'shipway_request_duration_seconds_bucket{{{inv},le="{le}"}}'] = [r - b for r, b in minutes]
        series[f'shipway_request_duration_seconds_bucket{{{inv},le="+Inf"}}'] = [r for r, _ in minutes]
    return [{"series": name, "values": counter(incs)} for name, incs in series.items()]


def expected_alerts(scenario: Scenario) -> list[dict[str, Any]]:
    return [
        {"exp_labels": {"model": "iris", "severity": sev, "environment": ENV, "slo": scenario.slo}}
        for sev in sorted(scenario.expected)
    ]


def alert_of(scenario: Scenario) -> str:
    return next(s.alert for s in slos(SLO) if s.name == scenario.slo)


def test_counter_encoding_reproduces_the_increments() -> None:
    assert counter([5, 5, 5, 0, 0, 2]) == "0 5+5x2 15+0x1 17+2x0"
    assert counter([]) == "0"


def test_healthy_series_export_no_bad_events() -> None:
    healthy = Scenario("h", "latency", ((3, 10.0, 0.0),), 3, frozenset())
    values = {s["series"]: s["values"] for s in input_series(healthy)}
    le = le_label(SLO.latency_p99_ms)
    assert values[f'shipway_request_duration_seconds_bucket{{{BASE},route="/invocations",le="{le}"}}'] == "0 10+10x2"


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    doc = generate_rules(SLO, ["iris"], ENV)
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = tmp_path_factory.mktemp("slo-rules") / "rules.yml"
    path.write_text(render_yaml(doc))
    return path


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: f"{s.slo}: {s.name}")
def test_scenario_fires_exactly_the_expected_severities(scenario: Scenario, rule_file: Path) -> None:
    tests = {
        "rule_files": [rule_file.name],
        "group_eval_order": recording_first(generate_rules(SLO, ["iris"], ENV)),
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series(scenario),
                "alert_rule_test": [
                    {
                        "eval_time": f"{scenario.eval_minute}m",
                        "alertname": alert_of(scenario),
                        "exp_alerts": expected_alerts(scenario),
                    }
                ],
            }
        ],
    }
    test_file = rule_file.parent / f"scenario-{SCENARIOS.index(scenario)}.test.yml"
    test_file.write_text(render_yaml(tests))
    proc = subprocess.run(
        [_promtool(), "test", "rules", test_file.name], capture_output=True, text=True, check=False,
        cwd=rule_file.parent,
    )
    assert proc.returncode == 0, f"{scenario.name}: {proc.stdout}{proc.stderr}"


def test_the_route_scenario_fails_rules_that_count_every_route(rule_file: Path) -> None:
    """The scenarios bite: the same rules with the route matcher widened to every route (what the
    old prediction-error alert did) page on scanner 404s and a failing health probe."""
    doc = generate_rules(SLO, ["iris"], ENV)
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
            if "expr" in rule:
                rule["expr"] = rule["expr"].replace('route="/invocations"', 'route=~".+"')
    (rule_file.parent / "every-route.yml").write_text(render_yaml(doc))
    noise = next(s for s in SCENARIOS if s.noise_routes)
    tests = {
        "rule_files": ["every-route.yml"],
        "group_eval_order": recording_first(doc),
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": input_series(noise),
            "alert_rule_test": [{"eval_time": f"{noise.eval_minute}m", "alertname": alert_of(noise),
                                 "exp_alerts": expected_alerts(noise)}],
        }],
    }
    (rule_file.parent / "every-route.test.yml").write_text(render_yaml(tests))
    proc = subprocess.run([_promtool(), "test", "rules", "every-route.test.yml"], capture_output=True, text=True,
                          check=False, cwd=rule_file.parent)
    assert proc.returncode != 0, proc.stdout
    got = (proc.stdout + proc.stderr).split("got:", 1)[1]
    assert "severity" in got and "page" in got  # it paged on traffic that is not ours


@pytest.mark.parametrize("slo", ["availability", "latency"])
def test_the_low_traffic_guard_is_what_keeps_a_handful_of_requests_quiet(slo: str, rule_file: Path) -> None:
    """The same rules without the guard (slo.minRequests 0) page and ticket on three requests an hour
    with one bad; with it (the scenario suite) nothing fires."""
    doc = generate_rules(SloSettings(min_requests=0), ["iris"], ENV)
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (rule_file.parent / "unguarded.yml").write_text(render_yaml(doc))
    handful = next(s for s in SCENARIOS if s.segments == LOW_TRAFFIC and s.slo == slo)
    unguarded = Scenario(handful.name, slo, handful.segments, handful.eval_minute, frozenset({"page", "ticket"}))
    tests = {
        "rule_files": ["unguarded.yml"],
        "group_eval_order": recording_first(doc),
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": input_series(unguarded),
            "alert_rule_test": [{"eval_time": f"{unguarded.eval_minute}m", "alertname": alert_of(unguarded),
                                 "exp_alerts": expected_alerts(unguarded)}],
        }],
    }
    (rule_file.parent / f"unguarded-{slo}.test.yml").write_text(render_yaml(tests))
    proc = subprocess.run([_promtool(), "test", "rules", f"unguarded-{slo}.test.yml"], capture_output=True,
                          text=True, check=False, cwd=rule_file.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
