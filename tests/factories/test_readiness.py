"""Which upstream days an asset needs before it may be built: the rule, on a real instance.

Materializations are reported without runs, so each case states exactly which days exist.
"""

from __future__ import annotations

import dagster as dg
import pytest

from factories.readiness import unready_inputs

GOLD = dg.AssetKey(["gold", "labeled_transactions"])
CHARGEBACKS = dg.AssetKey(["silver", "chargebacks"])


@pytest.fixture
def customer_activity_asset(defs: dg.Definitions) -> dg.AssetsDefinition:
    return defs.resolve_assets_def(dg.AssetKey(["features", "customer_activity"]))


@pytest.fixture
def labeled_transactions(defs: dg.Definitions) -> dg.AssetsDefinition:
    return defs.resolve_assets_def(GOLD)


def built(instance: dg.DagsterInstance, key: dg.AssetKey, *days: str) -> None:
    for day in days:
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))


def test_a_lookback_needs_every_day_since_the_upstream_first_ran(
    instance: dg.DagsterInstance, customer_activity_asset: dg.AssetsDefinition
) -> None:
    built(instance, GOLD, "2024-03-01", "2024-03-03", "2024-03-04")
    # Days before gold's first day are history that never existed: not a gap.
    assert unready_inputs(instance, customer_activity_asset, "2024-03-01") == []
    # A day missing after it is a gap, for every feature day whose lookback spans it.
    gap = ["gold/labeled_transactions 2024-03-02 was never materialized"]
    assert unready_inputs(instance, customer_activity_asset, "2024-03-03") == gap
    assert unready_inputs(instance, customer_activity_asset, "2024-03-04") == gap
    built(instance, GOLD, "2024-03-02")
    assert unready_inputs(instance, customer_activity_asset, "2024-03-04") == []


def test_the_day_itself_is_always_needed(
    instance: dg.DagsterInstance, customer_activity_asset: dg.AssetsDefinition
) -> None:
    built(instance, GOLD, "2024-03-01")
    assert unready_inputs(instance, customer_activity_asset, "2024-03-02") == [
        "gold/labeled_transactions 2024-03-02 was never materialized"
    ]


def test_late_labels_are_needed_up_to_the_newest_day_that_arrived(
    instance: dg.DagsterInstance, labeled_transactions: dg.AssetsDefinition
) -> None:
    for key in ("transactions", "customers", "merchants"):
        built(instance, dg.AssetKey(["silver", key]), "2024-03-01")
    built(instance, CHARGEBACKS, "2024-03-01")
    # Chargebacks of later days have not landed yet: gold is built with what is known.
    assert unready_inputs(instance, labeled_transactions, "2024-03-01") == []
    # Once a later day arrived, every day up to it counts.
    built(instance, CHARGEBACKS, "2024-03-03")
    assert unready_inputs(instance, labeled_transactions, "2024-03-01") == [
        "silver/chargebacks 2024-03-02 was never materialized"
    ]
