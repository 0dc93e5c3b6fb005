"""The online feature store: the latest feature values per entity, for low-latency serving.

Two backends sit behind one interface: SQLite for a single machine and Redis for a shared,
networked store. Both keep values typed (never pickled), record each view's schema themselves so
a fresh process reads back the right dtypes, and apply the same upsert rule: a stored row is only
replaced by one whose event timestamp is at least as new, so re-materializing an old partition
never rolls features back.

``base`` holds the interface and the validation both backends share, ``sqlite`` and ``redis``
the backends, ``resource`` the URL dispatch and the Dagster resource.
"""

from feature_store.online.base import OnlineStore, Read, ViewSchema
from feature_store.online.redis import RedisOnlineStore
from feature_store.online.resource import OnlineStoreResource, open_online_store
from feature_store.online.sqlite import SQLiteOnlineStore

__all__ = [
    "OnlineStore",
    "OnlineStoreResource",
    "Read",
    "RedisOnlineStore",
    "SQLiteOnlineStore",
    "ViewSchema",
    "open_online_store",
]
