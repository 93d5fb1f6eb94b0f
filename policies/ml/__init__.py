"""ML-specific rules and pure helpers (model pinning, gate evidence, registry protection)."""
