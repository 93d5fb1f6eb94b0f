"""Shipway CrossGuard policy pack: rule modules per cloud/service; only __main__.py builds the pack."""
