"""Data drift and model-quality monitoring: baseline profiles, drift statistics, late-label joins.

The training pipeline stores a :func:`~shipway.drift.profile.build_profile` result with every model
version; the serving app and ``shipway monitor drift`` compare live inputs with it.
"""
