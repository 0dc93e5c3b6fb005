"""The online store, fed by every feature view declared in this package."""

import assets
from factories.features import online_store_asset
from feature_store.registry import discover

REGISTRY = discover(assets)

online_features = online_store_asset(REGISTRY.views)
