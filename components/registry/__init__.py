"""MLflow registry resources shared by every target (they speak MLflow's REST API)."""
