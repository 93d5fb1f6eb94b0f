"""local rules."""
