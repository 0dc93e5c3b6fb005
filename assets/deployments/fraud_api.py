"""Deployment: the fraud scorer behind ``POST /predict``, answering the payment system."""

from serving.deployments import Batching, Deployment
from serving.routing import Traffic

FRAUD_API = Deployment(
    name="fraud_api",
    model="fraud_scorer",
    request_source="transactions",
    request_fields=(
        "transaction_id",
        "customer_id",
        "merchant_id",
        "amount",
        "channel",
        "device",
        "event_time",
    ),
    # A new challenger is scored beside every request and logged, never answered, until a
    # person moves it to a canary.
    traffic=Traffic(mode="shadow"),
    batching=Batching(max_batch_size=32, max_latency_ms=1000),
    runtime="torch",
    port=3100,
    owner="team:fraud-data-science",
    description="Fraud probability and decision for a card payment, at its arrival.",
)
