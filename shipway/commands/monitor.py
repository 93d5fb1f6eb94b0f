"""`shipway monitor`: drift reports, model quality from late labels, rules and dashboards as code.

Examples::

    shipway monitor drift .shipway/local/iris.requests.jsonl --baseline baseline_profile.json \\
        --html drift.html --report-json drift.json
    shipway monitor drift window.parquet --model iris --version 3 --tracking-uri http://127.0.0.1:5000
    shipway monitor quality .shipway/local/iris.requests.jsonl --labels labels.jsonl \\
        --textfile /var/lib/node-exporter/shipway_quality.prom
    shipway monitor rules --stack stacks/Pulumi.prod.yaml > rules.yml
    shipway monitor dashboards --stack stacks/Pulumi.prod.yaml --out-dir dashboards/
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Drift reports and ML reliability signals.")
_err = Console(stderr=True)
OUTPUTS = ("json", "table")


def _check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise typer.BadParameter(f"{output!r} is not valid; allowed: {', '.join(OUTPUTS)}", param_hint="--output")
    return output


def _parse_time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not an ISO-8601 time (e.g. 2026-01-31T12:00:00Z)", param_hint=flag
        ) from exc
    return parsed if parsed.tzinfo else parsed.astimezone()


def _load_reference(
    baseline: Path | None,
    reference: Path | None,
    model: str | None,
    version: int | None,
    tracking_uri: str | None,
) -> Any:
    """Exactly one reference source: a profile file, a raw data file, or a registry version."""
    from shipway.drift.logs import read_window
    from shipway.drift.profile import fetch_profile, load_profile

    sources = [s for s in (baseline, reference, tracking_uri) if s is not None]
    if len(sources) != 1:
        raise typer.BadParameter(
            "give exactly one of --baseline PATH, --reference PATH or --model NAME --version N --tracking-uri URI",
            param_hint="--baseline",
        )
    if baseline is not None:
        try:
            return load_profile(baseline)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"{baseline}: {exc}", param_hint="--baseline") from exc
    if reference is not None:
        return read_window(reference)
    if model is None or version is None:
        raise typer.BadParameter("--tracking-uri needs --model NAME and --version N", param_hint="--tracking-uri")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return fetch_profile(model, version, str(tracking_uri), Path(tmp))
        except FileNotFoundError as exc:
            raise typer.BadParameter(str(exc), param_hint="--model") from exc


def _drift_table(report: Any) -> Table:
    table = Table(title=f"Drift: {len(report.drifted_features)} of {len(report.features)} features flagged")
    for col in ("feature", "kind", "effect vs threshold", "p-value", "null ref→cur", "PSI (context)", "status"):
        table.add_column(col)
    for f in report.ranked():
        also = f" (also {','.join(f.context)})" if f.context else ""
        status = f"[red]DRIFT[/red] {','.join(f.decided_by)}{also}" if f.drifted else f"[green]ok[/green]{also}"
        table.add_row(
            f.name,
            f.kind,
            f.effect_text(),
            f"{f.p_value:.3g}",
            f"{f.reference_null_rate:.3f}→{f.current_null_rate:.3f}",
            f"{f.psi:.4f}",
            status,
        )
    for name in report.missing_features:
        table.add_row(name, "?", "", "", "", "", "", "[red]missing from window[/red]")
    return table


@app.command("drift")
def drift(
    current: Annotated[
        Path, typer.Argument(help="Window of live inputs: serving request log (JSONL), CSV or Parquet.")
    ],
    baseline: Annotated[Path | None, typer.Option(help="Baseline profile (baseline_profile.json).")] = None,
    reference: Annotated[
        Path | None, typer.Option(help="Raw reference data (CSV/Parquet) instead of a profile.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model name: fetch its profile (with --tracking-uri) and keep only its requests from a request log."
        ),
    ] = None,
    version: Annotated[int | None, typer.Option(help="Registry version of --model.")] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking/registry URI to fetch the profile from.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only requests at or after this ISO-8601 time.")] = None,
    until: Annotated[str | None, typer.Option(help="Only requests before this ISO-8601 time.")] = None,
    psi_threshold: Annotated[float, typer.Option(
        help="PSI threshold: decides under --rule psi|any|all; context only under the default effect rule.")] = 0.2,
    p_value: Annotated[float, typer.Option(
        help="KS/chi-square p-value threshold: confirms an effect under the effect rule (decides alone below "
             "1,000 rows); decides under --rule test|any|all.")] = 0.01,
    rule: Annotated[str, typer.Option(
        help="effect (default: effect size over its threshold, confirmed by the test; the test alone decides "
             "below 1,000 rows) | any | all | psi | test.")] = "effect",
    bins: Annotated[int, typer.Option(help="Quantile bins when --reference is raw data.")] = 10,
    report_json: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write the self-contained HTML report here.")] = None,
    output: Annotated[str, typer.Option(help="json | table")] = "table",
    fail_on_drift: Annotated[bool, typer.Option(help="Exit 1 when any feature is flagged (for CI and cron).")] = False,
) -> None:
    """Compare a window of logged inputs with the training baseline: effect size (Wasserstein distance,
    Jensen-Shannon distance, null rate) per feature, with PSI and the KS/chi-square p-value as context.

    Example: shipway monitor drift requests.jsonl --baseline baseline_profile.json --html drift.html
    """
    from shipway.drift.html import render_html
    from shipway.drift.logs import LogFilter, read_window
    from shipway.drift.report import DriftThresholds, compute_drift

    _check_output(output)
    try:
        thresholds = DriftThresholds(psi=psi_threshold, p_value=p_value, rule=rule)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    ref = _load_reference(baseline, reference, model, version, tracking_uri)
    flt = LogFilter(
        model=model,
        version=None if version is None else str(version),
        since=_parse_time(since, "--since"),
        until=_parse_time(until, "--until"),
    )
    with _err.status("reading window and computing drift"):
        try:
            window = read_window(current, flt)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="CURRENT") from exc
        if window.empty:
            raise typer.BadParameter(f"{current}: no rows in the selected window", param_hint="CURRENT")
        report = compute_drift(ref, window, thresholds=thresholds, bins=bins)
    doc = report.to_dict()
    if report_json is not None:
        report_json.write_text(json.dumps(doc, indent=2, default=str, allow_nan=False) + "\n")
    if html is not None:
        html.write_text(render_html(report))
    if output == "json":
        sys.stdout.write(json.dumps(doc, indent=2, default=str, allow_nan=False) + "\n")
    else:
        Console().print(_drift_table(report))
    if fail_on_drift and report.drift_detected:
        raise typer.Exit(code=1)


@app.command("quality")
def quality(
    request_log: Annotated[Path, typer.Argument(help="The serving app's request log (JSONL).")],
    labels: Annotated[Path, typer.Option(help="Late ground truth: JSONL or CSV with request_id,label[,row,ts].")],
    task: Annotated[str, typer.Option(help="auto | classification (accuracy) | regression (MAE).")] = "auto",
    window: Annotated[str, typer.Option(help="Window length, e.g. 15min, 1h, 1D.")] = "1h",
    textfile: Annotated[
        Path | None, typer.Option(help="Write shipway_model_quality as a node-exporter textfile.")
    ] = None,
    output: Annotated[str, typer.Option(help="json | table")] = "table",
) -> None:
    """Join late labels to logged predictions and report rolling accuracy/MAE per window.

    Example: shipway monitor quality requests.jsonl --labels labels.csv --window 1h --textfile q.prom
    """
    from shipway.drift.quality import (
        TASKS,
        join_labels,
        latest_quality,
        read_labels,
        read_predictions,
        render_prometheus,
        windowed_quality,
        write_textfile,
    )

    _check_output(output)
    if task not in TASKS:
        raise typer.BadParameter(f"{task!r} is not valid; allowed: {', '.join(TASKS)}", param_hint="--task")
    try:
        import pandas as pd

        pd.Timedelta(window)
    except ValueError as exc:
        raise typer.BadParameter(f"{window!r} is not a window length (e.g. 1h)", param_hint="--window") from exc
    try:
        joined, stats = join_labels(read_predictions(request_log), read_labels(labels))
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    windows = windowed_quality(joined, window, task) if not joined.empty else None
    latest = latest_quality(joined, window, task)
    if textfile is not None:
        write_textfile(render_prometheus(latest), textfile)
    if output == "json":
        doc = {
            "join": stats.__dict__,
            "latest": [v.__dict__ for v in latest],
            "windows": [] if windows is None else json.loads(windows.to_json(orient="records", date_format="iso")),
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    console = Console()
    console.print(
        f"joined {stats.joined} of {stats.predictions} predictions; unlabeled {stats.unlabeled}, "
        f"unmatched labels {stats.unmatched_labels}, duplicate labels {stats.duplicate_labels}, "
        f"duplicate requests {stats.duplicate_requests}"
    )
    table = Table(title="Quality by window (request time)")
    for col in ("model", "version", "window start", "metric", "value", "n"):
        table.add_column(col)
    for row in [] if windows is None else windows.itertuples(index=False):
        table.add_row(row.model, row.version, str(row.window_start), row.metric, f"{row.value:.4f}", str(row.n))
    console.print(table)


def _stack(stack: Path) -> Any:
    from shipway_core.config import StackConfigError, load_stack_file

    try:
        return load_stack_file(stack)
    except (OSError, StackConfigError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--stack") from exc


@app.command("rules")
def rules(
    stack: Annotated[Path, typer.Option(help="Stack file, e.g. stacks/Pulumi.prod.yaml.")],
    out: Annotated[Path | None, typer.Option(help="Write the rule file here (default: stdout).")] = None,
    drift_for: Annotated[str, typer.Option(help="How long PSI must stay over the threshold before alerting.")] = "1m",
) -> None:
    """Generate the Prometheus rule file (SLO burn rates, latency, drift, quality) for a stack.

    Example: shipway monitor rules --stack stacks/Pulumi.prod.yaml --out rules.yml
    """
    from dataclasses import replace

    from shipway_core.observability.rules import QualityObjective, RuleOptions, generate_rules, render_yaml

    cfg = _stack(stack)
    try:
        options = RuleOptions(quality=tuple(QualityObjective(m, minimum=v) for m, v in cfg.gates.min_metrics.items()))
        options = replace(options, timings=replace(options.timings, drift=drift_for))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--drift-for") from exc
    text = render_yaml(generate_rules(cfg.slo, list(cfg.models), cfg.environment, options))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


@app.command("dashboards")
def dashboards(
    stack: Annotated[Path, typer.Option(help="Stack file, e.g. stacks/Pulumi.prod.yaml.")],
    out_dir: Annotated[Path, typer.Option(help="Directory for the Grafana dashboard JSON files.")],
) -> None:
    """Write Grafana dashboards: one per endpoint plus a platform overview.

    Example: shipway monitor dashboards --stack stacks/Pulumi.local.yaml --out-dir .shipway/dashboards
    """
    from shipway_core.observability.dashboards import all_dashboards

    cfg = _stack(stack)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, doc in all_dashboards(list(cfg.models), cfg.environment, cfg.slo).items():
        (out_dir / name).write_text(json.dumps(doc, indent=2) + "\n")
        typer.echo(str(out_dir / name))
