"""The online store contract, run against a real SQLite file and a real redis-server."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import polars as pl
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from pytest_redis import factories

from feature_store.online import OnlineStore, OnlineStoreResource, Read, open_online_store

redis_proc = factories.redis_proc(executable="/usr/bin/redis-server", port=None)
redisdb = factories.redisdb("redis_proc")

T0 = datetime(2024, 5, 1, 12, 0, 0)


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/online.db"
    request.getfixturevalue("redisdb")  # flushes the database after the test
    proc = request.getfixturevalue("redis_proc")
    return f"redis://{proc.host}:{proc.port}/0"


@pytest.fixture
def store(url: str) -> Iterator[OnlineStore]:
    with open_online_store(url) as opened:
        yield opened


def typed_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "name": ["ada", None, "ünï ☃"],
            "visits": pl.Series([2**62, None, -7], dtype=pl.Int64),
            "age": pl.Series([31, -1, None], dtype=pl.Int32),
            "score": [0.1, None, -1e-300],
            "ratio": pl.Series([0.1, float("inf"), None], dtype=pl.Float32),
            "active": [True, False, None],
            "last_seen": [datetime(1969, 12, 31, 23, 59, 59, 999_999), None, T0],
            "born": [date(1950, 1, 2), date(2030, 12, 31), None],
            "event_ts": [T0, T0 + timedelta(microseconds=1), T0 - timedelta(days=400)],
        }
    )


FEATURES = ["name", "visits", "age", "score", "ratio", "active", "last_seen", "born"]


def write_users(store: OnlineStore, frame: pl.DataFrame, view: str = "users") -> int:
    return store.write(view, frame, entity_key="user_id", timestamp="event_ts")


def test_typed_round_trip_of_every_dtype_with_nulls(store: OnlineStore) -> None:
    frame = typed_frame()
    assert write_users(store, frame) == 3
    expected = frame.select("user_id", *FEATURES, "event_ts")
    assert_frame_equal(store.read("users", ["u1", "u2", "u3"], FEATURES), expected)
    for i, user in enumerate(["u1", "u2", "u3"]):  # single-id reads take their own path
        assert_frame_equal(store.read("users", [user], FEATURES), expected.slice(i, 1))


def test_read_many_answers_each_read_as_read_does(store: OnlineStore, url: str) -> None:
    write_users(store, typed_frame())
    write_users(store, typed_frame().head(1), view="users_v2")
    reads = [
        Read("users", ["u2", "nobody"], ["visits", "name"]),
        Read("users_v2", ["u1"], ["score"]),
        Read("users", ["u3"], FEATURES),
    ]
    expected = [store.read(*read) for read in reads]
    if url.startswith("redis"):  # a restarted server has lost the script: loaded again
        redis.Redis.from_url(url).script_flush()
    for got, want in zip(store.read_many(reads), expected, strict=True):
        assert_frame_equal(got, want)


def test_nan_is_stored_as_null_and_datetimes_as_microseconds(store: OnlineStore) -> None:
    frame = pl.DataFrame(
        {
            "user_id": ["u1"],
            "score": [float("nan")],
            "seen": pl.Series([T0], dtype=pl.Datetime("ms")),
            "event_ts": pl.Series([T0], dtype=pl.Datetime("ns")),
        }
    )
    write_users(store, frame)
    got = store.read("users", ["u1"], ["score", "seen"])
    assert got.schema == pl.Schema(
        {
            "user_id": pl.String,
            "score": pl.Float64,
            "seen": pl.Datetime("us"),
            "event_ts": pl.Datetime("us"),
        }
    )
    assert got.row(0) == ("u1", None, T0, T0)


def test_request_order_and_duplicates_are_kept_and_unknown_ids_are_null(
    store: OnlineStore,
) -> None:
    write_users(store, typed_frame())
    got = store.read("users", ["u3", "nobody", "u1", "u3"], ["visits", "name"])
    assert got.columns == ["user_id", "visits", "name", "event_ts"]
    assert got.rows() == [
        ("u3", -7, "ünï ☃", T0 - timedelta(days=400)),
        ("nobody", None, None, None),
        ("u1", 2**62, "ada", T0),
        ("u3", -7, "ünï ☃", T0 - timedelta(days=400)),
    ]
    assert store.read("users", ["nobody"], ["visits"]).rows() == [("nobody", None, None)]
    assert store.read("users", [], ["visits"]).schema == got.select(pl.exclude("name")).schema


def test_older_write_never_overwrites_newer_and_equal_timestamp_overwrites(
    store: OnlineStore,
) -> None:
    def batch(value: int, ts: datetime) -> pl.DataFrame:
        return pl.DataFrame({"user_id": ["u1"], "visits": [value], "event_ts": [ts]})

    assert write_users(store, batch(2, T0)) == 1
    assert write_users(store, batch(1, T0 - timedelta(microseconds=1))) == 0
    assert store.read("users", ["u1"], ["visits"]).rows() == [("u1", 2, T0)]
    assert write_users(store, batch(3, T0)) == 1
    assert store.read("users", ["u1"], ["visits"]).rows() == [("u1", 3, T0)]
    # Within one frame only the latest row per entity is written; on a tie the last row wins.
    late = T0 + timedelta(hours=1)
    frame = pl.concat([batch(9, late), batch(4, T0), batch(5, late)])
    assert write_users(store, frame) == 1
    assert store.read("users", ["u1"], ["visits"]).rows() == [("u1", 5, late)]


def test_views_are_isolated(store: OnlineStore) -> None:
    write_users(store, typed_frame(), view="users")
    other = pl.DataFrame({"user_id": ["u1"], "visits": [-1.5], "event_ts": [T0]})
    write_users(store, other, view="users_v2")
    assert store.read("users", ["u1"], ["visits"]).rows() == [("u1", 2**62, T0)]
    assert store.read("users_v2", ["u1", "u2"], ["visits"]).rows() == [
        ("u1", -1.5, T0),
        ("u2", None, None),
    ]
    with pytest.raises(ValueError, match="has no features"):
        store.read("users_v2", ["u1"], ["name"])
    with pytest.raises(ValueError, match="unknown feature view"):
        store.read("items", ["u1"], ["name"])


def test_new_columns_extend_the_schema(store: OnlineStore, url: str) -> None:
    write_users(store, pl.DataFrame({"user_id": ["u1", "u2"], "visits": [1, 2], "event_ts": T0}))
    later = T0 + timedelta(days=1)
    extended = pl.DataFrame({"user_id": ["u2"], "visits": [5], "city": ["Oslo"], "event_ts": later})
    assert write_users(store, extended) == 1
    # A write of only some columns leaves the others as they were.
    assert write_users(
        store, pl.DataFrame({"user_id": ["u1"], "city": ["Rome"], "event_ts": later})
    )
    expected = [("u1", 1, "Rome", later), ("u2", 5, "Oslo", later)]
    assert store.read("users", ["u1", "u2"], ["visits", "city"]).rows() == expected
    with open_online_store(url) as fresh:
        assert fresh.read("users", ["u1", "u2"], ["visits", "city"]).rows() == expected


def test_a_dtype_change_raises_and_writes_nothing(store: OnlineStore) -> None:
    write_users(store, pl.DataFrame({"user_id": ["u1"], "visits": [1], "event_ts": [T0]}))
    later = T0 + timedelta(days=1)
    changed = pl.DataFrame(
        {"user_id": ["u1"], "visits": [1.5], "extra": [True], "event_ts": [later]}
    )
    with pytest.raises(ValueError, match="'visits' is stored as Int64, cannot write Float64"):
        write_users(store, changed)
    assert store.read("users", ["u1"], ["visits"]).rows() == [("u1", 1, T0)]
    with pytest.raises(ValueError, match="keyed by 'user_id'"):
        store.write(
            "users", changed.rename({"user_id": "uid"}), entity_key="uid", timestamp="event_ts"
        )


@pytest.mark.parametrize(
    "bad", ["x; DROP TABLE users", 'a"b', "1st", "with space", "a-b", "", "users--"]
)
def test_bad_view_and_feature_names_are_rejected(store: OnlineStore, bad: str) -> None:
    write_users(store, typed_frame())
    with pytest.raises(ValueError, match="invalid view name"):
        write_users(store, typed_frame(), view=bad)
    with pytest.raises(ValueError, match="invalid column name"):
        write_users(store, typed_frame().rename({"name": bad}))
    with pytest.raises(ValueError, match="invalid view name"):
        store.read(bad, ["u1"], ["name"])
    with pytest.raises(ValueError, match="invalid feature name"):
        store.read("users", ["u1"], [bad])
    assert store.read("users", ["u1"], ["name"]).rows() == [("u1", "ada", T0)]


def test_a_fresh_instance_reads_back_the_same_typed_frame(url: str) -> None:
    with OnlineStoreResource(url=url).open() as first:
        write_users(first, typed_frame())
        before = first.read("users", ["u2", "u1", "u3"], FEATURES)
    with OnlineStoreResource(url=url).open() as second:
        assert_frame_equal(second.read("users", ["u2", "u1", "u3"], FEATURES), before)


def test_sqlite_keeps_a_typed_table_per_view(tmp_path) -> None:
    with open_online_store(f"sqlite:///{tmp_path}/online.db") as store:
        write_users(store, typed_frame())
    with sqlite3.connect(tmp_path / "online.db") as conn:
        columns = {row[1]: row[2] for row in conn.execute('PRAGMA table_info("users")')}
        recorded = dict(conn.execute("SELECT name, dtype FROM _views WHERE view = 'users'"))
    assert columns == {
        "user_id": "TEXT",
        "event_ts": "INTEGER",
        "name": "TEXT",
        "visits": "INTEGER",
        "age": "INTEGER",
        "score": "REAL",
        "ratio": "REAL",
        "active": "INTEGER",
        "last_seen": "INTEGER",
        "born": "INTEGER",
    }
    assert recorded["ratio"] == "Float32"
    assert recorded["last_seen"] == "Datetime"


def test_unknown_url_schemes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"expected sqlite:///<path> or redis://"):
        open_online_store("postgres://localhost/features")


_views = itertools.count()
_rows = st.tuples(
    st.sampled_from(["a", "b", "c", "d"]),
    st.integers(min_value=0, max_value=5),
    st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(_rows, min_size=1, max_size=6), min_size=1, max_size=4))
def test_reads_return_the_newest_row_per_entity(
    store: OnlineStore, batches: list[list[tuple[str, int, int | None]]]
) -> None:
    view = f"prop_{next(_views)}"
    newest: dict[str, tuple[int, int | None]] = {}
    for batch in batches:
        ids, seconds, values = zip(*batch, strict=True)
        frame = pl.DataFrame(
            {
                "id": ids,
                "value": pl.Series(values, dtype=pl.Int64),
                "ts": [T0 + timedelta(seconds=s) for s in seconds],
            }
        )
        store.write(view, frame, entity_key="id", timestamp="ts")
        for entity, second, value in batch:
            if entity not in newest or second >= newest[entity][0]:
                newest[entity] = (second, value)
    wanted = ["a", "b", "c", "d"]
    expected = [
        (e, newest[e][1], T0 + timedelta(seconds=newest[e][0])) if e in newest else (e, None, None)
        for e in wanted
    ]
    assert store.read(view, wanted, ["value"]).rows() == expected
