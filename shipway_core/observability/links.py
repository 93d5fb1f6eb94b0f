"""From an alert to its evidence: the prepared log query and trace search for a model.

One helper builds both links for every consumer: the alert rules' annotations (where the
model and version are Prometheus template placeholders, filled in when the alert fires),
the runbooks, and ``shipway logs`` (which calls the same LogsQL against the store's API).

The log store is VictoriaLogs: its LogsQL carries the time window itself (``_time:1h``), so a
link opened an hour after the page still shows the hour before *now*, not before the alert;
the window is generous for that reason. The trace search is Jaeger's UI ``/search`` with the
serving app's service name, the model's span tag and a lookback.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote

LOG_QUERY_PATH = "/select/logsql/query"
"""VictoriaLogs' query API (JSON lines), what ``shipway logs`` calls."""
LOG_UI_PATH = "/select/vmui/"
"""VictoriaLogs' web UI; the query and window travel in the URL fragment."""
SERVING_SERVICE = "shipway-serving"
"""The serving app's OpenTelemetry ``service.name`` (shipway/serving/telemetry.py)."""
MODEL_SPAN_TAG = "shipway.model.name"
VERSION_SPAN_TAG = "shipway.model.version"

_WINDOW = re.compile(r"^[1-9][0-9]*[mhd]$")
_LOGSQL_SAFE = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class Template:
    """A Prometheus alert-template placeholder (``{{ $labels.model }}``), inserted URL-encoded."""

    label: str

    def render(self) -> str:
        return "{{ $labels." + self.label + " | urlquery }}"


Value = str | int | Template


def check_window(window: str, field: str = "window") -> str:
    """A look-back window both stores understand: minutes, hours or days (``15m``, ``1h``, ``2d``)."""
    if not isinstance(window, str) or not _WINDOW.match(window):
        raise ValueError(f"{field}: {window!r} is not a valid window; use a number and m, h or d, such as 15m or 1h")
    return window


def _literal(value: str | int) -> str:
    text = str(value)
    return text if _LOGSQL_SAFE.match(text) else json.dumps(text)


def logsql(model: str | int | None = None, version: str | int | None = None, *, window: str | None = None,
           trace_id: str | None = None, extra: str | None = None) -> str:
    """The LogsQL for a model's (and version's) log lines in a window, optionally one trace's."""
    parts = [f"_time:{check_window(window)}"] if window else []
    if model is not None:
        parts.append(f"model:{_literal(model)}")
    if version is not None:
        parts.append(f"version:{_literal(version)}")
    if trace_id is not None:
        parts.append(f"trace_id:{_literal(trace_id)}")
    if extra:
        parts.append(f"({extra})")
    return " ".join(parts) or "*"


def _encode(pieces: list[str | Template]) -> str:
    """URL-encode literal pieces; placeholders stay templates (Prometheus URL-encodes their value)."""
    return "".join(p.render() if isinstance(p, Template) else quote(p, safe="") for p in pieces)


def _logsql_pieces(model: Value, version: Value | None, window: str) -> list[str | Template]:
    pieces: list[str | Template] = [f"_time:{check_window(window)} model:"]
    pieces += [model] if isinstance(model, Template) else [_literal(model)]
    if version is not None:
        pieces.append(" version:")
        pieces += [version] if isinstance(version, Template) else [_literal(version)]
    return pieces


def log_query_link(store_url: str, model: Value, version: Value | None, window: str) -> str:
    """The log store's web UI opened on the model's (and version's) lines of the last ``window``."""
    query = _encode(_logsql_pieces(model, version, window))
    return f"{store_url.rstrip('/')}{LOG_UI_PATH}#/?query={query}&g0.relative_time=last_{window}"


def log_api_link(store_url: str, model: Value, version: Value | None, window: str, limit: int = 100) -> str:
    """The same query against the JSON-lines API (``curl`` it)."""
    query = _encode(_logsql_pieces(model, version, window))
    return f"{store_url.rstrip('/')}{LOG_QUERY_PATH}?query={query}&limit={limit}"


def trace_search_link(traces_url: str, model: Value, version: Value | None, window: str, limit: int = 20) -> str:
    """Jaeger's search for the serving app's spans of the model (and version) over the last ``window``."""
    tags: list[str | Template] = ['{"' + MODEL_SPAN_TAG + '":"',
                                  model if isinstance(model, Template) else str(model), '"']
    if version is not None:
        tags += [',"' + VERSION_SPAN_TAG + '":"', version if isinstance(version, Template) else str(version), '"']
    tags.append("}")
    return (f"{traces_url.rstrip('/')}/search?service={quote(SERVING_SERVICE, safe='')}"
            f"&tags={_encode(tags)}&lookback={check_window(window)}&limit={limit}")


def evidence_links(*, log_store_url: str | None, traces_url: str | None, model: Value, version: Value | None,
                   window: str) -> dict[str, str]:
    """The ``logs_url`` and ``traces_url`` annotations (each only when its store exists)."""
    links = {}
    if log_store_url:
        links["logs_url"] = log_query_link(log_store_url, model, version, window)
    if traces_url:
        links["traces_url"] = trace_search_link(traces_url, model, version, window)
    return links
