"""One URL picks the backend, so deployments switch stores by configuration, not code."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from feature_store.online.base import OnlineStore
from feature_store.online.redis import RedisOnlineStore
from feature_store.online.sqlite import SQLiteOnlineStore

_SCHEMES = "sqlite:///<path> or redis://host:port/db"


def open_online_store(url: str) -> OnlineStore:
    """The store a URL names: ``sqlite:///relative.db`` or ``sqlite:////absolute.db``
    (SQLAlchemy's convention), ``redis://`` or ``rediss://host:port/db``."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return SQLiteOnlineStore(url.removeprefix("sqlite:///"))
    if url.startswith(("redis://", "rediss://")):
        return RedisOnlineStore(url)
    raise ValueError(f"unsupported online store URL {url!r}: expected {_SCHEMES}")


class OnlineStoreResource(dg.ConfigurableResource):
    """Gives assets and jobs the deployment's online store; ``with resource.open() as store``."""

    url: str = Field(description=f"Online store URL: {_SCHEMES}.")

    def open(self) -> OnlineStore:
        return open_online_store(self.url)
