"""Sensors: drift, freshness and run-failure sensors that start runs (the monitoring layer)."""
