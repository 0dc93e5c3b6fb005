"""The point-in-time join never leaks the future and keeps every entity row, as Feast defines it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_store.offline import get_historical_features, point_in_time_join
from feature_store.online import open_online_store
from feature_store.serving import get_online_features
from feature_store.views import CREATED_TIMESTAMP, EVENT_TIMESTAMP, Entity, Feature, FeatureView

T0 = datetime(2024, 1, 1)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def join(entities: pl.DataFrame, features: pl.DataFrame, ttl: timedelta | None) -> pl.DataFrame:
    return point_in_time_join(
        entities.lazy(), features.lazy(), join_key="k", feature_names=["f"], ttl=ttl
    ).collect()


def expected_value(row: dict, features: list[dict], ttl: timedelta | None) -> int | None:
    """The rule, written as plainly as possible."""
    if row["k"] is None or row[EVENT_TIMESTAMP] is None:
        return None
    candidates = [
        f
        for f in features
        if f["k"] == row["k"]
        and f[EVENT_TIMESTAMP] <= row[EVENT_TIMESTAMP]
        and (not ttl or f[EVENT_TIMESTAMP] >= row[EVENT_TIMESTAMP] - ttl)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda f: (f[EVENT_TIMESTAMP], f[CREATED_TIMESTAMP]))["f"]


keys = st.sampled_from(["a", "b", "c"])
hours = st.integers(min_value=0, max_value=48).map(at)
feature_rows = st.lists(
    st.fixed_dictionaries(
        {"k": keys, EVENT_TIMESTAMP: hours, CREATED_TIMESTAMP: hours, "f": st.integers(0, 10**6)}
    ),
    max_size=40,
    unique_by=lambda r: (r["k"], r[EVENT_TIMESTAMP], r[CREATED_TIMESTAMP]),
)
entity_rows = st.lists(
    st.fixed_dictionaries(
        {"k": st.one_of(keys, st.none()), EVENT_TIMESTAMP: st.one_of(hours, st.none())}
    ),
    min_size=1,
    max_size=40,
)
ttls = st.one_of(st.none(), st.integers(1, 24).map(lambda h: timedelta(hours=h)))

FEATURE_SCHEMA = {
    "k": pl.String,
    EVENT_TIMESTAMP: pl.Datetime("us"),
    CREATED_TIMESTAMP: pl.Datetime("us"),
    "f": pl.Int64,
}
ENTITY_SCHEMA = {"k": pl.String, EVENT_TIMESTAMP: pl.Datetime("us")}


@settings(max_examples=150, deadline=None)
@given(features=feature_rows, entities=entity_rows, ttl=ttls)
def test_matches_the_rule_row_for_row(
    features: list[dict], entities: list[dict], ttl: timedelta | None
) -> None:
    entity_df = pl.DataFrame(entities, schema=ENTITY_SCHEMA).with_row_index("order")
    result = join(entity_df, pl.DataFrame(features, schema=FEATURE_SCHEMA), ttl)

    assert result.height == entity_df.height
    assert result["order"].to_list() == list(range(entity_df.height))
    assert result.drop("f").equals(entity_df)
    assert result["f"].to_list() == [expected_value(r, features, ttl) for r in entities]


@settings(max_examples=100, deadline=None)
@given(features=feature_rows, entities=entity_rows, ttl=ttls)
def test_no_value_from_after_the_entity_time_or_outside_ttl(
    features: list[dict], entities: list[dict], ttl: timedelta | None
) -> None:
    tagged = pl.DataFrame(features, schema=FEATURE_SCHEMA).with_columns(
        pl.col(EVENT_TIMESTAMP).alias("f_time")
    )
    result = point_in_time_join(
        pl.LazyFrame(entities, schema=ENTITY_SCHEMA),
        tagged.lazy(),
        join_key="k",
        feature_names=["f_time"],
        ttl=ttl,
    ).collect()
    found = result.drop_nulls("f_time")
    assert (found["f_time"] <= found[EVENT_TIMESTAMP]).all()
    if ttl:
        assert (found["f_time"] >= found[EVENT_TIMESTAMP] - ttl).all()


def test_latest_event_wins() -> None:
    features = pl.DataFrame(
        {"k": ["a", "a", "a"], EVENT_TIMESTAMP: [at(1), at(3), at(5)], "f": [1, 3, 5]}
    )
    entities = pl.DataFrame({"k": ["a", "a", "a"], EVENT_TIMESTAMP: [at(4), at(3), at(0)]})
    assert join(entities, features, None)["f"].to_list() == [3, 3, None]


def test_ties_pick_the_latest_created_row() -> None:
    features = pl.DataFrame(
        {
            "k": ["a", "a", "a"],
            EVENT_TIMESTAMP: [at(2), at(2), at(2)],
            CREATED_TIMESTAMP: [at(3), at(9), at(5)],
            "f": [1, 2, 3],
        }
    )
    entities = pl.DataFrame({"k": ["a"], EVENT_TIMESTAMP: [at(4)]})
    assert join(entities, features, None)["f"].to_list() == [2]


def test_ttl_is_inclusive_and_nulls_beyond_it() -> None:
    features = pl.DataFrame({"k": ["a"], EVENT_TIMESTAMP: [at(0)], "f": [7]})
    entities = pl.DataFrame({"k": ["a", "a"], EVENT_TIMESTAMP: [at(2), at(2.5)]})
    assert join(entities, features, timedelta(hours=2))["f"].to_list() == [7, None]


def test_unknown_entities_and_null_keys_keep_their_rows() -> None:
    features = pl.DataFrame({"k": ["a"], EVENT_TIMESTAMP: [at(0)], "f": [7]})
    entities = pl.DataFrame(
        {"k": ["z", None, "a", "a"], EVENT_TIMESTAMP: [at(1), at(1), None, at(1)]}
    )
    assert join(entities, features, None)["f"].to_list() == [None, None, None, 7]


def test_other_keys_never_leak_across() -> None:
    features = pl.DataFrame({"k": ["b"], EVENT_TIMESTAMP: [at(0)], "f": [7]})
    entities = pl.DataFrame({"k": ["a"], EVENT_TIMESTAMP: [at(1)]})
    assert join(entities, features, None)["f"].to_list() == [None]


def make_view(name: str, key: str, feature: str) -> FeatureView:
    return FeatureView(
        name=name,
        entity=Entity(name, join_key=key),
        source=("gold", "x"),
        transform=lambda frame, window: frame,
        features=(Feature(feature, pl.Int64(), "test"),),
        ttl=timedelta(hours=10),
        owner="team:test",
        freshness_sla=timedelta(days=1),
        description="test view",
    )


def test_get_historical_features_joins_each_view_by_its_own_key() -> None:
    views = {"v1": make_view("v1", "customer_id", "x"), "v2": make_view("v2", "merchant_id", "y")}
    tables = {
        "features/v1": pl.LazyFrame({"customer_id": ["c"], EVENT_TIMESTAMP: [at(1)], "x": [1]}),
        "features/v2": pl.LazyFrame({"merchant_id": ["m"], EVENT_TIMESTAMP: [at(2)], "y": [2]}),
    }
    entity_df = pl.DataFrame(
        {"customer_id": ["c", "c"], "merchant_id": ["m", "m"], EVENT_TIMESTAMP: [at(3), at(1.5)]}
    )
    result = get_historical_features(
        entity_df,
        ["v1:x", "v2:y"],
        views=views,
        scan=tables.__getitem__,
        full_feature_names=True,
    )
    assert result.columns == [*entity_df.columns, "v1__x", "v2__y"]
    assert result["v1__x"].to_list() == [1, 1]
    assert result["v2__y"].to_list() == [2, None]


def test_bad_references_fail_clearly() -> None:
    views = {"v1": make_view("v1", "customer_id", "x")}
    entity_df = pl.DataFrame({"customer_id": ["c"], EVENT_TIMESTAMP: [at(1)]})
    with pytest.raises(ValueError, match="view:feature"):
        get_historical_features(entity_df, ["x"], views=views, scan={}.__getitem__)
    with pytest.raises(KeyError, match="unknown feature view"):
        get_historical_features(entity_df, ["nope:x"], views=views, scan={}.__getitem__)
    with pytest.raises(KeyError, match="no feature"):
        get_historical_features(entity_df, ["v1:nope"], views=views, scan={}.__getitem__)


def in_ns(base: datetime, offsets: list[int], zone: str | None = None) -> pl.Series:
    """``base`` (UTC) plus each offset in nanoseconds, as a nanosecond column in ``zone``."""
    times = pl.Series([base] * len(offsets)).cast(pl.Datetime("ns")) + pl.Series(
        offsets, dtype=pl.Duration("ns")
    )
    return times if zone is None else times.dt.replace_time_zone("UTC").dt.convert_time_zone(zone)


@pytest.mark.parametrize("base", [T0, datetime(1960, 1, 1)])
def test_nanosecond_entity_times_keep_the_ttl_bound_exact(base: datetime) -> None:
    features = pl.DataFrame({"k": ["a"], EVENT_TIMESTAMP: [base], "f": [7]})
    boundary = base + timedelta(hours=2)
    entities = pl.DataFrame({"k": "a", EVENT_TIMESTAMP: in_ns(boundary, [-1, 0, 1, 999, 1000])})
    assert join(entities, features, timedelta(hours=2))["f"].to_list() == [7, 7, None, None, None]


@pytest.mark.parametrize("base", [T0, datetime(1960, 1, 1)])
def test_nanosecond_entity_times_never_see_a_later_event(base: datetime) -> None:
    features = pl.DataFrame({"k": ["a"], EVENT_TIMESTAMP: [base], "f": [7]})
    entities = pl.DataFrame({"k": "a", EVENT_TIMESTAMP: in_ns(base, [-1000, -1, 0, 1])})
    for ttl in (None, timedelta(hours=2)):
        assert join(entities, features, ttl)["f"].to_list() == [None, None, 7, 7]


@pytest.mark.parametrize(
    ("entity_zone", "feature_zone"),
    [(None, None), ("UTC", None), (None, "UTC"), ("Europe/Amsterdam", "UTC")],
)
def test_nanosecond_bound_compares_instants_across_time_zones(
    entity_zone: str | None, feature_zone: str | None
) -> None:
    event = pl.Series([T0]).dt.replace_time_zone(feature_zone)
    features = pl.DataFrame({"k": ["a"], EVENT_TIMESTAMP: event, "f": [7]})
    entities = pl.DataFrame({"k": "a", EVENT_TIMESTAMP: in_ns(at(2), [0, 1], entity_zone)})
    assert join(entities, features, timedelta(hours=2))["f"].to_list() == [7, None]


def test_microsecond_entity_times_against_millisecond_features() -> None:
    features = pl.DataFrame(
        {"k": ["a"], EVENT_TIMESTAMP: pl.Series([T0], dtype=pl.Datetime("ms")), "f": [7]}
    )
    us = timedelta(microseconds=1)
    entities = pl.DataFrame({"k": "a", EVENT_TIMESTAMP: [T0 - us, T0, at(2), at(2) + us]})
    assert join(entities, features, timedelta(hours=2))["f"].to_list() == [None, 7, 7, None]


def test_millisecond_entity_times_against_microsecond_features() -> None:
    """A coarser entity time is exact too: 500 µs on either side of the bounds matters."""
    half = timedelta(microseconds=500)
    features = pl.DataFrame({"k": ["a"], EVENT_TIMESTAMP: [T0 + half], "f": [7]})
    ms = timedelta(milliseconds=1)
    entities = pl.DataFrame(
        {"k": "a", EVENT_TIMESTAMP: [T0, T0 + ms, at(2), at(2) + ms]},
        schema={"k": pl.String, EVENT_TIMESTAMP: pl.Datetime("ms")},
    )
    assert join(entities, features, timedelta(hours=2))["f"].to_list() == [None, 7, 7, None]


def test_an_entity_timestamp_that_is_no_time_fails_by_name() -> None:
    features = pl.DataFrame({"k": ["a"], EVENT_TIMESTAMP: [T0], "f": [7]})
    for stamp in (["2024-01-01"], [1]):
        with pytest.raises(TypeError, match=f"entity column '{EVENT_TIMESTAMP}' is"):
            join(pl.DataFrame({"k": ["a"], EVENT_TIMESTAMP: stamp}), features, None)


def test_pandas_entity_frames_and_online_reads_agree_at_the_ttl_bound(tmp_path: Path) -> None:
    """make_view's ttl is 10 hours: one nanosecond past it the value is gone, offline and online."""
    views = {"v1": make_view("v1", "customer_id", "x")}
    rows = pl.DataFrame({"customer_id": ["c"], EVENT_TIMESTAMP: [T0], "x": [7]})
    boundary = pd.Timestamp(at(10))
    times = [boundary - pd.Timedelta(1, "ns"), boundary, boundary + pd.Timedelta(1, "ns")]
    expected = [7, 7, None]

    entity_df = pl.from_pandas(pd.DataFrame({"customer_id": "c", EVENT_TIMESTAMP: times}))
    offline = get_historical_features(
        entity_df, ["v1:x"], views=views, scan={"features/v1": rows.lazy()}.__getitem__
    )
    assert offline["x"].to_list() == expected
    with open_online_store(f"sqlite:///{tmp_path}/online.db") as store:
        store.write("v1", rows, entity_key="customer_id", timestamp=EVENT_TIMESTAMP)
        keys = rows.select("customer_id")
        online = [
            get_online_features(store, keys, ["v1:x"], views=views, as_of=t)["x"].item()
            for t in times
        ]
        assert online == expected
        with pytest.raises(ValueError, match="time zone"):
            get_online_features(store, keys, ["v1:x"], views=views, as_of=T0.replace(tzinfo=UTC))


def test_strictly_before_excludes_a_feature_row_at_exactly_the_entity_time() -> None:
    """What the online store held when an event arrived that is not in it yet: the row at the
    event's own time is excluded with the option (the previous one is used), included without."""
    features = pl.DataFrame(
        {"k": ["a", "a", "a"], EVENT_TIMESTAMP: [at(1), at(3), at(5)], "f": [1, 3, 5]}
    )
    entities = pl.DataFrame({"k": ["a", "a", "a"], EVENT_TIMESTAMP: [at(3), at(4), at(1)]})

    def strict(ttl: timedelta | None) -> list[int | None]:
        return (
            point_in_time_join(
                entities.lazy(),
                features.lazy(),
                join_key="k",
                feature_names=["f"],
                ttl=ttl,
                strictly_before=True,
            )
            .collect()["f"]
            .to_list()
        )

    assert join(entities, features, None)["f"].to_list() == [3, 3, 1]
    assert strict(None) == [1, 3, None]
    assert strict(timedelta(hours=2)) == [1, 3, None]  # the ttl bound stays inclusive
    assert strict(timedelta(hours=1)) == [None, 3, None]
    views = {"v1": make_view("v1", "k", "f")}
    scan = {"features/v1": features.lazy()}.__getitem__
    historical = get_historical_features(
        entities, ["v1:f"], views=views, scan=scan, strictly_before=True
    )
    assert historical["f"].to_list() == [1, 3, None]
    assert get_historical_features(entities, ["v1:f"], views=views, scan=scan)["f"].to_list() == [
        3,
        3,
        1,
    ]


def test_strictly_before_holds_for_nanosecond_entity_times() -> None:
    """A finer entity time a nanosecond past a microsecond event sees it; one exactly at it not."""
    features = pl.DataFrame({"k": ["a", "a"], EVENT_TIMESTAMP: [at(1), at(2)], "f": [1, 2]})
    entities = pl.DataFrame({"k": "a", EVENT_TIMESTAMP: in_ns(at(2), [-1, 0, 1, 1000])})
    joined = point_in_time_join(
        entities.lazy(), features.lazy(), join_key="k", feature_names=["f"], strictly_before=True
    ).collect()
    assert joined["f"].to_list() == [1, 1, 2, 2]
