"""Observability as code: Prometheus rules (SLOs, burn rates, ML alerts) and Grafana dashboards.

Everything here is a pure function from typed settings to plain data (dicts) so it can be unit
tested, checked by ``promtool`` and written by the local stack or a cloud component alike.
"""
