"""A training set holds what the service would have known, the labels known by the cutoff, a
temporal split with gaps, and can be rebuilt exactly from the table versions it recorded."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.training.fraud import FRAUD
from feature_store.views import EVENT_TIMESTAMP, Entity, Feature, FeatureView, RequestFeature
from reference_data import generate
from registry import discover
from resources.lakehouse import PARTITION_COLUMN
from tests.conftest import Pipeline, days_of, with_config
from training.data import SPLITS as TRAINING_SPLITS
from training.sets import SPLIT, SPLITS, Split, TrainingSet, assign_splits, build_training_set

T0 = datetime(2024, 1, 10)
CUSTOMER = Entity("customer", join_key="customer_id")
VIEW = FeatureView(
    name="activity",
    entity=CUSTOMER,
    source=("gold", "events"),
    transform=lambda frame, window: frame,
    features=(Feature("count", pl.Int64(), "Events so far, this one included."),),
    ttl=timedelta(days=30),
    owner="team:test",
    freshness_sla=timedelta(days=1),
    description="test view",
)
DOUBLE = RequestFeature(
    name="amount_per_count",
    dtype=pl.Float64(),
    description="test",
    request_fields={"amount": pl.Float64()},
    inputs=("activity:count",),
    expression=pl.col("amount") / pl.col("count"),
)


def spec(**changes: object) -> TrainingSet:
    fields: dict[str, object] = {
        "name": "test",
        "source": "gold/events",
        "columns": ("event_id", "event_time", "amount"),
        "features": ("activity:count",),
        "label": "is_fraud",
        "label_known_at": "label_known_at",
        "label_delay": timedelta(0),
        "owner": "team:test",
        "description": "test",
        "split": Split(1.0, 0.0, 0.0),
    }
    return TrainingSet(**(fields | changes))


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def events(rows: list[tuple[str, float, bool, float | None]]) -> pl.DataFrame:
    """(customer, hour, is_fraud, hour the label became known) per event, ids in that order."""
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "customer_id": [r[0] for r in rows],
            "event_time": [at(r[1]) for r in rows],
            "amount": [10.0 * (i + 1) for i in range(len(rows))],
            "is_fraud": [r[2] for r in rows],
            "label_known_at": [None if r[3] is None else at(r[3]) for r in rows],
        }
    )


def rolling_counts(source: pl.DataFrame) -> pl.DataFrame:
    """The offline rows a rolling view keeps: one per event, the event itself counted."""
    return source.sort("event_time").select(
        "customer_id",
        pl.col("event_time").alias(EVENT_TIMESTAMP),
        pl.int_range(1, pl.len() + 1).over("customer_id").cast(pl.Int64).alias("count"),
    )


def build(source: pl.DataFrame, cutoff: datetime, **changes: object) -> pl.DataFrame:
    features = rolling_counts(source)
    return build_training_set(
        spec(**changes),
        source.lazy(),
        {"activity": VIEW},
        {"features/activity": features.lazy()}.__getitem__,
        cutoff,
        request_features={"amount_per_count": DOUBLE},
    )


def test_no_row_uses_a_feature_value_from_its_own_time_or_later() -> None:
    source = events(
        [("a", 1, False, None), ("a", 2, False, None), ("a", 3, False, None), ("b", 2, False, None)]
    )
    frame = build(source, at(100), request_features=("amount_per_count",))
    # Each event sees the count before it: its own row (at exactly its time) is not yet served.
    assert frame.select("event_id", "count").rows() == [
        ("e0", None),
        ("e1", 1),
        ("e3", None),
        ("e2", 2),
    ]
    assert frame["amount_per_count"].to_list() == [None, 20.0, None, 15.0]
    features = rolling_counts(source)
    for row in frame.filter(pl.col("count").is_not_null()).iter_rows(named=True):
        customer = source.filter(pl.col("event_id") == row["event_id"])["customer_id"].item()
        used = features.filter(
            (pl.col("customer_id") == customer) & (pl.col("count") == row["count"])
        )
        assert used[EVENT_TIMESTAMP].item() < row["event_time"]


def test_labels_known_after_the_cutoff_are_false_and_the_label_delay_is_left_out() -> None:
    cutoff = at(48)
    source = events(
        [
            ("a", 1, True, 20),  # known before the cutoff
            ("a", 2, True, 48),  # known exactly at it
            ("a", 3, True, 60),  # known after it: not yet a positive
            ("a", 4, False, None),
            ("a", 5, True, None),  # no time known: never counted
            ("a", 30, True, 31),  # inside the label delay: left out
        ]
    )
    frame = build(source, cutoff, label_delay=timedelta(hours=24))
    assert frame.select("event_id", "is_fraud").rows() == [
        ("e0", True),
        ("e1", True),
        ("e2", False),
        ("e3", False),
        ("e4", False),
    ]
    assert frame["event_time"].max() < cutoff - timedelta(hours=24)
    assert frame.columns == ["event_id", "event_time", "amount", "count", "is_fraud", SPLIT]
    with pytest.raises(ValueError, match="time zone"):
        build(source, cutoff.astimezone())


def test_the_split_is_temporal_with_gaps_and_rows_of_one_time_share_a_split() -> None:
    assert SPLITS == TRAINING_SPLITS
    gap = timedelta(hours=2)
    hours = [h * 0.5 for h in range(200)] + [10.0] * 5
    frame = pl.DataFrame({"event_time": [at(h) for h in hours]}).sort("event_time")
    split = assign_splits(frame, "event_time", Split(0.6, 0.2, 0.2, gap=gap))
    bounds = split.group_by(SPLIT).agg(
        pl.col("event_time").min().alias("first"), pl.col("event_time").max().alias("last")
    )
    span = {row[SPLIT]: (row["first"], row["last"]) for row in bounds.iter_rows(named=True)}
    assert set(span) == set(SPLITS)
    assert span["train"][1] + gap <= span["validation"][0]
    assert span["validation"][1] + gap <= span["test"][0]
    assert split["event_time"].is_sorted()
    assert frame.height - split.height == 2 * 4  # the gap's rows (two per hour), nothing more
    # the splits that judge a model keep their share; train gives up the gaps
    assert split.filter(pl.col(SPLIT) == "test").height == round(0.2 * frame.height)
    assert split.filter(pl.col(SPLIT) == "validation").height == round(0.2 * frame.height)
    # a cut inside the six rows at 10:00 moves them all to the later split
    tied = assign_splits(frame, "event_time", Split(0.11, 0.44, 0.45))
    assert tied.filter(pl.col(SPLIT) == "train").height == 20
    assert tied.filter(pl.col("event_time") == at(10))[SPLIT].to_list() == ["validation"] * 6
    # deterministic: the same inputs give the same frame
    source = events([("a", h, h % 3 == 0, h + 1) for h in range(30)])
    assert build(source, at(100), split=Split(0.5, 0.25, 0.25, gap)).equals(
        build(source.reverse(), at(100), split=Split(0.5, 0.25, 0.25, gap))
    )


def test_declarations_that_cannot_work_fail_naming_the_set() -> None:
    with pytest.raises(ValueError, match="'test': column names \\['amount'\\]"):
        spec(request_features=("amount",))
    with pytest.raises(ValueError, match="event time 'event_time' must be one of"):
        spec(columns=("event_id",))
    with pytest.raises(ValueError, match="sum to 1"):
        Split(0.5, 0.2, 0.2)
    with pytest.raises(ValueError, match="not of the form"):
        spec(features=("count",))


# End to end: the asset on the small seeded data, and its rebuild by time travel.

TRAINING = dg.AssetKey(["training", "fraud"])
CUTOFF = datetime(2024, 3, 13)
"""Labels known by then; events before 2024-03-06 (the label delay is 7 days) are in."""


def materialize(pipeline: Pipeline) -> dg.AssetMaterialization:
    job = pipeline.defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=pipeline.instance,
        asset_selection=[TRAINING],
        run_config={"ops": {"training__fraud": {"config": {"cutoff": CUTOFF.isoformat()}}}},
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("training__fraud")
    return materialization


def rebuild(pipeline: Pipeline, versions: dict[str, int] | None) -> pl.DataFrame:
    def scan(table: str) -> pl.LazyFrame:
        version = None if versions is None else versions[table]
        return pipeline.lakehouse.scan(table, version=version).drop(PARTITION_COLUMN)

    registry = discover()
    return build_training_set(
        FRAUD,
        scan(FRAUD.source),
        registry.views,
        scan,
        CUTOFF,
        request_features=registry.request_features,
    )


def test_the_training_set_is_rebuilt_exactly_from_its_recorded_versions(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    assert all(result.success for result in pipeline.results.values())
    metadata = materialize(pipeline).metadata
    versions = metadata["input_versions"].value
    assert set(versions) == {
        "gold/labeled_transactions",
        "features/customer_activity",
        "features/merchant_risk",
        "features/customer_profile",
        "features/merchant_profile",
    }
    assert metadata["cutoff"].value == CUTOFF.isoformat()
    rows = metadata["rows_per_split"].value
    stored = pipeline.table("training/fraud")
    assert sum(rows.values()) == stored.height > 0
    assert stored.columns[-2:] == ["is_fraud", SPLIT]
    assert stored["amount_to_mean_30d"].is_not_null().any()

    # One more landing day arrives and is ingested: gold and the features get new versions.
    day = "2024-03-05"
    more = tmp_path / "landing"
    generate(with_config(days=5), more)
    landing = Path(pipeline.settings.landing_uri)
    for table in ("customers", "merchants", "transactions", "chargebacks"):
        shutil.copytree(more / table / day, landing / table / day)
    assert day not in days_of(pipeline.summary.config)
    assert pipeline.run(day).success
    for table, version in versions.items():
        assert pipeline.lakehouse.version(table) > version, table

    again = rebuild(pipeline, versions)
    assert again.equals(stored)
    current = rebuild(pipeline, None)
    assert not current.equals(stored)  # the new day moves the split's cuts
