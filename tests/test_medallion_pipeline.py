"""The daily ingest end to end on a small seeded run with bad records and schema drift."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl

from medallion.landing import read_landing_file
from resources.lakehouse import PARTITION_COLUMN
from tests.conftest import SMALL, SOURCES, Pipeline, days_of

RUN_SPECIFIC = ["_ingested_at", "_run_id"]


def checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def silver_metadata(result: dg.ExecuteInProcessResult, table: str) -> dict[str, object]:
    event = next(
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["silver", table])
    )
    return {k: v.value for k, v in event.materialization.metadata.items()}


def sortable(frame: pl.DataFrame) -> list[str]:
    return [name for name, dtype in frame.schema.items() if not isinstance(dtype, pl.List)]


def test_every_day_succeeds(pipeline: Pipeline) -> None:
    outcome = {day: r.success for day, r in pipeline.results.items()}
    assert outcome == dict.fromkeys(days_of(SMALL), True)


def test_bronze_holds_every_landing_row(pipeline: Pipeline) -> None:
    for file in pipeline.summary.files:
        bronze = pipeline.table(f"bronze/{file.table}", file.day.isoformat())
        assert bronze.height == file.rows, (file.table, file.day)
        assert set(bronze["_source_file"]) == {f"{file.table}/{file.day}/{file.path.name}"}


def test_row_accounting_on_every_partition(pipeline: Pipeline) -> None:
    for day, result in pipeline.results.items():
        for table in SOURCES:
            bronze = pipeline.table(f"bronze/{table}", day).height
            silver = pipeline.table(f"silver/{table}", day).height
            quarantined = pipeline.table(f"silver/{table}_quarantine", day).height
            duplicates = silver_metadata(result, table)["duplicates_removed"]
            assert bronze == silver + quarantined + duplicates, (table, day)
            file = pipeline.summary.file(table, date.fromisoformat(day))
            expected_duplicates = file.duplicates if file else 0
            assert duplicates == expected_duplicates, (table, day)
            assert quarantined >= sum(file.bad_records.values()) if file else quarantined == 0


def test_quarantine_says_why_and_keeps_original_values(pipeline: Pipeline) -> None:
    quarantine = pipeline.table("silver/transactions_quarantine")
    checks_failed = set(quarantine["failed_checks"].explode())
    assert "amount: greater_than_or_equal_to(0.01)" in checks_failed
    assert "event_time: unparseable" in checks_failed
    assert "transaction_id: not_nullable" in checks_failed
    bad_time = quarantine.filter(pl.col("failed_checks").list.contains("event_time: unparseable"))
    originals = bad_time["original"].str.json_decode()
    landed = pl.concat(
        [
            read_landing_file(f.path).frame.select(pl.all().cast(pl.String))
            for f in pipeline.summary.files
            if f.table == "transactions"
        ],
        how="diagonal_relaxed",
    )
    for original in originals.to_list():
        assert original["event_time"] in set(landed["event_time"])


def test_rematerializing_a_partition_is_idempotent(pipeline: Pipeline) -> None:
    day = days_of(SMALL)[1]
    tables = [
        *(f"bronze/{t}" for t in SOURCES),
        *(f"silver/{t}" for t in SOURCES),
        *(f"silver/{t}_quarantine" for t in SOURCES),
        "gold/labeled_transactions",
    ]

    def snapshot() -> dict[str, pl.DataFrame]:
        return {
            name: pipeline.table(name)
            .drop(RUN_SPECIFIC, strict=False)
            .pipe(lambda f: f.sort(sortable(f), nulls_last=True))
            for name in tables
        }

    before = snapshot()
    versions = {name: pipeline.lakehouse.version(name) for name in tables}
    assert pipeline.run(day).success
    after = snapshot()
    for name in tables:
        assert pipeline.lakehouse.version(name) == versions[name] + 1, name
        assert after[name].equals(before[name]), name


def test_time_travel_reads_a_recorded_version(pipeline: Pipeline) -> None:
    result = pipeline.results[days_of(SMALL)[0]]
    event = next(
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["bronze", "transactions"])
    )
    version = event.materialization.metadata["delta_version"].value
    as_of = pipeline.lakehouse.scan("bronze/transactions", version=version).collect()
    assert set(as_of[PARTITION_COLUMN]) == {days_of(SMALL)[0]}
    assert as_of.height == event.materialization.metadata["dagster/row_count"].value


def test_no_pii_leaves_bronze(pipeline: Pipeline) -> None:
    pii = set()
    for file in pipeline.summary.files:
        if file.table == "customers":
            frame = read_landing_file(file.path).frame
            pii |= set(frame["email"].drop_nulls()) | set(frame["card_number"].drop_nulls())
    assert len(pii) > 500
    names = [f"silver/{t}" for t in SOURCES]
    names += [f"silver/{t}_quarantine" for t in SOURCES] + ["gold/labeled_transactions"]
    for name in names:
        frame = pipeline.table(name)
        text = frame.select(pl.col(pl.String)).unpivot()["value"].drop_nulls()
        assert not text.is_in(list(pii)).any(), name
        assert not any(value in blob for blob in text for value in pii if "@" in blob), name


def test_schema_drift_is_reported_and_data_kept(pipeline: Pipeline) -> None:
    extra_day, renamed_day = days_of(SMALL)[1], days_of(SMALL)[2]
    extra = checks(pipeline.results[extra_day])[("bronze/transactions", "schema_drift")]
    assert not extra.passed
    assert extra.severity == dg.AssetCheckSeverity.WARN
    drift = next(iter(extra.metadata["drift"].value.values()))
    assert drift["added"] == ["promo_code"]
    assert "promo_code" in pipeline.table("bronze/transactions", extra_day).columns

    renamed = checks(pipeline.results[renamed_day])[("bronze/transactions", "schema_drift")]
    drift = next(iter(renamed.metadata["drift"].value.values()))
    assert drift["renamed"] == {"amount": "amount_eur"}
    file = pipeline.summary.file("transactions", date.fromisoformat(renamed_day))
    silver = pipeline.table("silver/transactions", renamed_day)
    assert silver["amount"].null_count() == 0
    assert silver.height >= file.rows - file.duplicates - sum(file.bad_records.values())

    normal = checks(pipeline.results[days_of(SMALL)[3]])[("bronze/transactions", "schema_drift")]
    assert normal.passed


def test_gold_uses_the_profile_valid_at_the_transaction(pipeline: Pipeline) -> None:
    gold = pipeline.table("gold/labeled_transactions")
    profiles = pipeline.table("silver/customers").select("customer_id", "updated_at", "segment")
    expected = (
        gold.select("transaction_id", "customer_id", "event_time")
        .join(profiles, on="customer_id")
        .filter(pl.col("updated_at") <= pl.col("event_time"))
        .sort("updated_at")
        .group_by("transaction_id")
        .agg(pl.col("updated_at").last(), pl.col("segment").last())
    )
    joined = gold.join(expected, on="transaction_id", how="left")
    assert joined["updated_at"].null_count() == 0
    assert (joined["customer_profile_valid_from"] == joined["updated_at"]).all()
    assert (joined["customer_segment"] == joined["segment"]).all()
    assert (gold["customer_profile_valid_from"] <= gold["event_time"]).all()
    assert gold.height == pipeline.table("silver/transactions").height


def test_labels_only_from_known_chargebacks(pipeline: Pipeline) -> None:
    for day in days_of(SMALL):
        assert pipeline.run(day, job="relabel_gold").success
    gold = pipeline.table("gold/labeled_transactions")
    chargebacks = pipeline.table("silver/chargebacks")
    labelled = gold.filter(pl.col("label_known_at").is_not_null())
    assert (
        labelled.height
        == chargebacks["transaction_id"].is_in(gold["transaction_id"].implode()).sum()
    )
    assert (labelled["label_known_at"] > labelled["event_time"]).all()
    assert gold.filter(pl.col("is_fraud"))["chargeback_reason"].eq("fraud").all()


def test_gold_and_feature_columns_read_in_the_catalog(pipeline: Pipeline) -> None:
    """Every column says what it is (gold: and where it came from) in a type a person reads."""
    result = pipeline.results[days_of(SMALL)[-1]]
    for key in (["gold", "labeled_transactions"], ["features", "customer_activity"]):
        event = next(
            e for e in result.get_asset_materialization_events() if e.asset_key.path == key
        )
        columns = event.materialization.metadata["dagster/column_schema"].value.columns
        assert all(c.description for c in columns), key
        assert not any("time_unit" in c.type for c in columns), key
    gold = next(
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == ["gold", "labeled_transactions"]
    )
    described = {
        c.name: c.description
        for c in gold.materialization.metadata["dagster/column_schema"].value.columns
    }
    assert described["is_foreign"].endswith(
        "From silver/customers.country, silver/merchants.country."
    )
