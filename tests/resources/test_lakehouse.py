"""The Delta lakehouse on a local folder: day partitions, versions, time travel, schema merge."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from resources.lakehouse import PARTITION_COLUMN, Lakehouse

DAY_1, DAY_2, DAY_3 = "2024-03-01", "2024-03-02", "2024-03-03"


@pytest.fixture
def lake(tmp_path: Path) -> Lakehouse:
    return Lakehouse(root_uri=str(tmp_path / "lake"))


def rows(*ids: str, amount: float = 1.0) -> pl.DataFrame:
    return pl.DataFrame({"id": list(ids), "amount": [amount] * len(ids)})


def read(lake: Lakehouse, table: str = "silver/t", **kwargs: object) -> dict[str, list[str]]:
    """Ids per day, sorted: what a reader of the table sees."""
    frame = lake.scan(table, **kwargs).collect()
    return {
        day: sorted(group["id"].to_list())
        for (day,), group in frame.group_by(PARTITION_COLUMN, maintain_order=True)
    }


def test_a_missing_table_does_not_exist_and_reads_as_empty(lake: Lakehouse) -> None:
    assert not lake.exists("silver/nothing")
    assert lake.version("silver/nothing") is None
    schema = pl.Schema({"id": pl.String, "amount": pl.Float64})
    empty = lake.scan_or_empty("silver/nothing", schema, partitions=[DAY_1]).collect()
    assert empty.is_empty()
    assert empty.schema == schema


def test_writing_a_day_replaces_only_that_day(lake: Lakehouse) -> None:
    lake.write_partition("silver/t", rows("a", "b"), DAY_1)
    lake.write_partition("silver/t", rows("c"), DAY_2)
    lake.write_partition("silver/t", rows("a", "b"), DAY_1)  # re-run: no duplicates
    assert read(lake) == {DAY_1: ["a", "b"], DAY_2: ["c"]}

    lake.write_partition("silver/t", rows("x", "y", "z"), DAY_2)
    assert read(lake) == {DAY_1: ["a", "b"], DAY_2: ["x", "y", "z"]}


def test_a_day_written_empty_is_emptied(lake: Lakehouse) -> None:
    lake.write_partition("silver/t", rows("a"), DAY_1)
    lake.write_partition("silver/t", rows("b"), DAY_2)
    lake.write_partition("silver/t", rows("gone").clear(), DAY_1)
    assert read(lake) == {DAY_2: ["b"]}


def test_each_write_commits_a_new_version_it_reports(lake: Lakehouse) -> None:
    first = lake.write_partition("silver/t", rows("a", "b"), DAY_1)
    second = lake.write_partition("silver/t", rows("c"), DAY_2)
    third = lake.write_partition("silver/t", rows("d"), DAY_1)

    assert first.version < second.version < third.version
    assert third.version == lake.version("silver/t")
    assert lake.exists("silver/t")
    assert (first.table, first.rows, second.rows) == ("silver/t", 2, 1)
    assert first.uri == lake.table_uri("silver/t")


def test_time_travel_reads_the_table_as_a_recorded_version(lake: Lakehouse) -> None:
    first = lake.write_partition("silver/t", rows("a", "b"), DAY_1)
    second = lake.write_partition("silver/t", rows("c"), DAY_2)
    lake.write_partition("silver/t", rows("z"), DAY_1)

    assert read(lake, version=first.version) == {DAY_1: ["a", "b"]}
    assert read(lake, version=second.version) == {DAY_1: ["a", "b"], DAY_2: ["c"]}
    assert read(lake) == {DAY_1: ["z"], DAY_2: ["c"]}


def test_partitions_select_days(lake: Lakehouse) -> None:
    for day, ids in ((DAY_1, ("a",)), (DAY_2, ("b", "c")), (DAY_3, ("d",))):
        lake.write_partition("silver/t", rows(*ids), day)

    assert read(lake, partitions=[DAY_1, DAY_3]) == {DAY_1: ["a"], DAY_3: ["d"]}
    assert read(lake, partitions=[]) == {}
    schema = pl.Schema({"id": pl.String})
    only = lake.scan_or_empty("silver/t", schema, partitions=[DAY_2]).collect()
    assert sorted(only["id"]) == ["b", "c"]


def test_a_new_column_is_merged_and_older_rows_read_it_as_null(lake: Lakehouse) -> None:
    lake.write_partition("silver/t", rows("a"), DAY_1)
    wider = rows("b").with_columns(pl.lit("mobile").alias("device"))
    lake.write_partition("silver/t", wider, DAY_2)

    frame = lake.scan("silver/t").collect().sort("id")
    assert frame.select("id", "amount", "device").rows() == [
        ("a", 1.0, None),
        ("b", 1.0, "mobile"),
    ]
    # A later write without the column keeps it in the schema, null for its rows.
    lake.write_partition("silver/t", rows("c"), DAY_3)
    assert lake.scan("silver/t", partitions=[DAY_3]).collect()["device"].to_list() == [None]


def test_values_and_types_round_trip(lake: Lakehouse) -> None:
    frame = pl.DataFrame(
        {
            "id": ["a", "b"],
            "n": pl.Series([1, None], dtype=pl.Int64),
            "at": pl.Series(["2024-03-01 10:00:00.000001", None]).str.to_datetime(time_unit="us"),
        }
    )
    lake.write_partition("silver/t", frame, DAY_1)
    back = lake.scan("silver/t").collect().sort("id")
    assert back.drop(PARTITION_COLUMN).equals(frame)
    assert back[PARTITION_COLUMN].to_list() == [DAY_1, DAY_1]
