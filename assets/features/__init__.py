"""Feature views: one file each, a ``FeatureView`` (and any request features built on it)."""
