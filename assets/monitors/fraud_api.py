"""Monitor: the fraud API's inputs and scores, day by day, against its champion's training."""

from datetime import timedelta

from monitoring.monitors import Monitor

FRAUD_API = Monitor(
    name="fraud_api",
    deployment="fraud_api",
    # Two weeks of the champion's training set: one week to calibrate the thresholds against,
    # one week of days judged by them.
    reference_days=14,
    # A critical finding on any feature retrains; a drifting week retrains once.
    retrain_on="critical",
    cooldown=timedelta(days=7),
    owner="team:fraud-data-science",
    description="Drift of the fraud API's inputs and scores, and its realized performance as "
    "chargebacks arrive.",
)
