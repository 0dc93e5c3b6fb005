"""Engines of monitoring: profiles, drift scores, delayed-label performance and alerts."""
