"""Turns each training set declaration into an unpartitioned asset ``training/<name>``.

The asset reads every day of its source and of each feature view it joins (the IO manager pins
each to the table version current when the step loaded it, and the output records those
``input_versions``), builds the frame with ``training.sets.build_training_set`` as of a cutoff,
and replaces the table. The recorded versions and the cutoff rebuild the exact set later by time
travel. It is materialized on its own, never by the daily ingest (its group is ``training``).
"""

from collections.abc import Mapping
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from factories.readiness import unready_history
from feature_store.views import FeatureView, RequestFeature, parse_reference
from resources.lakehouse_io import asset_key
from training.sets import SPLIT, SPLITS, TrainingSet, build_training_set, feature_references

GROUP = "training"
VIEW_INPUT = "features__"
"""Prefix of a feature view's input name, so no view name collides with ``source``."""


class TrainingSetConfig(dg.Config):
    cutoff: str | None = None
    """Labels known by this instant (ISO 8601, naive UTC); the step's start time when unset."""


def cutoff_of(config: TrainingSetConfig) -> datetime:
    if config.cutoff is None:
        return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    cutoff = datetime.fromisoformat(config.cutoff)
    return cutoff.astimezone(UTC).replace(tzinfo=None) if cutoff.tzinfo else cutoff


def split_metadata(frame: pl.DataFrame, label: str) -> dict[str, object]:
    """Rows and positive rate per split, every split named even when empty."""
    counts = frame.group_by(SPLIT).agg(pl.len().alias("rows"), pl.col(label).mean().alias("rate"))
    found = {row[SPLIT]: row for row in counts.iter_rows(named=True)}
    return {
        "rows_per_split": {s: found[s]["rows"] if s in found else 0 for s in SPLITS},
        "positive_rate_per_split": {
            s: round(found[s]["rate"], 6) if s in found else None for s in SPLITS
        },
    }


def training_set_asset(
    spec: TrainingSet,
    views: Mapping[str, FeatureView],
    request_features: Mapping[str, RequestFeature],
    daily: dg.DailyPartitionsDefinition,
) -> dg.AssetsDefinition:
    view_names = list(
        dict.fromkeys(parse_reference(r)[0] for r in feature_references(spec, request_features))
    )
    upstream = [asset_key(spec.source), *(asset_key(views[v].table) for v in view_names)]

    @dg.asset(
        key=asset_key(spec.table),
        group_name=GROUP,
        owners=[spec.owner],
        kinds={"polars", "delta"},
        description=spec.description,
        metadata={
            "source": spec.source,
            "features": list(spec.features),
            "request_features": list(spec.request_features),
            "label": spec.label,
            "label_delay": str(spec.label_delay),
            "split": f"{spec.split.train}/{spec.split.validation}/{spec.split.test}, "
            f"gap {spec.split.gap}",
        },
        ins={
            "source": dg.AssetIn(asset_key(spec.source)),
            **{f"{VIEW_INPUT}{v}": dg.AssetIn(asset_key(views[v].table)) for v in view_names},
        },
    )
    def training_set(
        context: dg.AssetExecutionContext, config: TrainingSetConfig, **inputs: pl.LazyFrame
    ) -> pl.DataFrame:
        # Readiness is per day (factories.readiness); a set over all history asks it of every
        # day of every input at once: a failed or missing day in the middle fails the step.
        reasons = unready_history(context.instance, upstream, daily)
        if reasons:
            raise dg.Failure(
                description=f"{spec.table} not built: its inputs are not sound. "
                + "; ".join(reasons[:20])
                + ". Materialize or fix those partitions first.",
                metadata={"unready_inputs": reasons},
            )
        tables = {views[v].table: inputs[f"{VIEW_INPUT}{v}"] for v in view_names}
        cutoff = cutoff_of(config)
        frame = build_training_set(
            spec,
            inputs["source"],
            views,
            tables.__getitem__,
            cutoff,
            request_features=request_features,
        )
        context.add_output_metadata(
            {"cutoff": cutoff.isoformat(), **split_metadata(frame, spec.label)}
        )
        return frame

    return training_set
