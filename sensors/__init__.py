"""Sensors: drift, freshness and run-failure sensors that start runs (the monitoring layer).

``sensors.drift`` requests a model's retraining when its monitor's daily drift report reaches
``retrain_on`` (once per cooldown); ``sensors.releases`` deploys a deployment again when its
model's champion or challenger moves; ``sensors.freshness`` checks the nightly ingest's 06:00
deadline and warns of a missed one; ``sensors.alerts`` turns failed runs and failed blocking asset
checks into alerts through the ``alerts`` resource (``resources.alerts.Alerts``). All run by
default: a loop or an alarm that someone must switch on is off when it matters.
"""
