"""Feature serving: the online store holding the latest feature values per entity."""

from feature_store.online import (
    OnlineStore,
    OnlineStoreResource,
    RedisOnlineStore,
    SQLiteOnlineStore,
    ViewSchema,
    open_online_store,
)

__all__ = [
    "OnlineStore",
    "OnlineStoreResource",
    "RedisOnlineStore",
    "SQLiteOnlineStore",
    "ViewSchema",
    "open_online_store",
]
