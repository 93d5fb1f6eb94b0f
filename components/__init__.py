"""Shipway component resources: one folder per target, the same Args/outputs per capability."""
