"""Training set: every transaction with what the fraud service would have known when it arrived."""

from datetime import timedelta

from training.sets import Split, TrainingSet

FRAUD = TrainingSet(
    name="fraud",
    source="gold/labeled_transactions",
    columns=(
        "transaction_id",
        "event_time",
        "amount",
        "channel",
        "device",
    ),
    features=(
        "customer_profile:customer_country",
        "customer_profile:customer_segment",
        "customer_profile:customer_age_band",
        "merchant_profile:merchant_category",
        "merchant_profile:merchant_country",
        "customer_activity:txn_count_1h",
        "customer_activity:amount_sum_1h",
        "customer_activity:txn_count_24h",
        "customer_activity:amount_sum_24h",
        "customer_activity:txn_count_7d",
        "customer_activity:amount_sum_7d",
        "customer_activity:distinct_merchants_24h",
        "customer_activity:amount_mean_30d",
        "customer_activity:seconds_since_previous",
        "merchant_risk:transactions_30d",
        "merchant_risk:fraud_chargebacks_30d",
        "merchant_risk:chargeback_rate_30d",
        "merchant_risk:mean_payment_30d",
    ),
    request_features=("amount_to_mean_30d", "is_foreign"),
    label="is_fraud",
    label_known_at="label_known_at",
    # Most fraud chargebacks are filed within a week; a younger payment would read as legitimate.
    label_delay=timedelta(days=7),
    split=Split(train=0.7, validation=0.15, test=0.15, gap=timedelta(days=1)),
    owner="team:fraud-data-science",
    description="Payments with the customer and merchant features served at their arrival "
    "(strictly before it), the fraud label as known at the cutoff, split in time.",
)
