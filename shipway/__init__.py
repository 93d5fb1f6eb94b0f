"""Shipway runtime: CLI, serving app, quality gates, drift, audit and promotion."""

__version__ = "0.1.0"
