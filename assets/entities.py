"""The entities of the reference use case: what features are keyed by."""

from feature_store.views import Entity

CUSTOMER = Entity("customer", join_key="customer_id", description="A card holder.")
MERCHANT = Entity("merchant", join_key="merchant_id", description="A merchant accepting cards.")
