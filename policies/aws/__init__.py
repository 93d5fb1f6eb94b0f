"""aws rules."""
