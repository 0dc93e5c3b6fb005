"""The feature catalog: one row per declared feature, what a person browses before using one."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from feature_store.views import FeatureView, RequestFeature


def feature_listing(
    views: Mapping[str, FeatureView], request_features: Mapping[str, RequestFeature]
) -> pl.DataFrame:
    rows = [
        {
            "view": view.name,
            "feature": f.name,
            "dtype": str(f.dtype),
            "description": f.description,
            "entity": view.entity.join_key,
            "ttl": str(view.ttl),
            "freshness_sla": str(view.freshness_sla),
            "owner": view.owner,
            "source": "/".join(view.source),
        }
        for view in views.values()
        for f in view.features
    ]
    rows += [
        {
            "view": "(request)",
            "feature": r.name,
            "dtype": str(r.dtype),
            "description": r.description,
            "entity": "",
            "ttl": "",
            "freshness_sla": "",
            "owner": "",
            "source": ", ".join([*r.request_fields, *r.inputs]),
        }
        for r in request_features.values()
    ]
    return pl.DataFrame(rows)
