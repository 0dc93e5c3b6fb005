"""Model: the fraud scorer, trained on the fraud training set and promoted through gates."""

from training.data import Columns
from training.models import Choice, FloatRange, Gates, IntRange, Model, Study
from training.module import Hyperparameters

FRAUD_SCORER = Model(
    name="fraud_scorer",
    training_set="fraud",
    columns=Columns(
        categorical=(
            "channel",
            "device",
            "customer_country",
            "customer_segment",
            "customer_age_band",
            "merchant_category",
            "merchant_country",
        ),
        numeric=(
            "amount",
            "is_foreign",
            "txn_count_1h",
            "amount_sum_1h",
            "txn_count_24h",
            "amount_sum_24h",
            "txn_count_7d",
            "amount_sum_7d",
            "distinct_merchants_24h",
            "amount_mean_30d",
            "seconds_since_previous",
            "transactions_30d",
            "fraud_chargebacks_30d",
            "chargeback_rate_30d",
            "mean_payment_30d",
            "amount_to_mean_30d",
        ),
        label="is_fraud",
    ),
    hyperparameters=Hyperparameters(
        embedding_dim=8,
        hidden=(128, 64),
        dropout=0.1,
        learning_rate=2e-3,
        batch_size=512,
        epochs=8,
    ),
    search_space={
        "learning_rate": FloatRange(3e-4, 1e-2, log=True),
        "weight_decay": FloatRange(1e-6, 1e-2, log=True),
        "dropout": FloatRange(0.0, 0.4),
        "embedding_dim": IntRange(4, 16, step=4),
        "hidden": Choice(((64,), (128, 64), (256, 128))),
        # Negatives per positive is ~100: the full weight buys recall at the cost of precision.
        "pos_weight": FloatRange(1.0, 100.0, log=True),
    },
    metric="validation_average_precision",
    study=Study(trials=20, epochs=6, warmup_epochs=2),
    slices=("customer_country", "channel", "customer_age_band"),
    gates=Gates(
        min_auroc=0.85,
        min_average_precision=0.12,
        target_precision=0.5,
        max_bias_gap=0.35,
        min_group_rows=100,
        max_latency_ms=50.0,
    ),
    owner="team:fraud-data-science",
    description="Probability that a card payment is fraud, from the payment, the customer's and "
    "the merchant's features as served at its arrival.",
)
